"""onnxruntime inference behind the `Predictor` interface, and the model's ONNX metadata.

The exporter writes what a runtime needs to use the file on its own (task, channel and class
counts, class names, the run config, the smallest usable point count, the calibration
temperature) into the model's `metadata_props` under the `pointgcn.` prefix, so an `.onnx` file is self-describing. Files
exported elsewhere still load: the counts then come from the graph's input/output shapes.

Execution providers (`--provider cpu|cuda`, `providers_for`): without `--provider` they follow
`--device` — CUDA for a GPU request when onnxruntime has its CUDA provider (the onnxruntime-gpu
package, `pip install 'pointgcn[gpu]'` in place of onnxruntime), else the CPU; asking for CUDA
where onnxruntime lacks it is a one-line error saying how to get it. Threads:
`intra_op_num_threads`.
Spinning: onnxruntime's pool threads busy-wait after each run by default (lower latency on an
idle machine, but they steal cores from anything else running, e.g. PyTorch in an interleaved
benchmark or other tenants); `spin=None` keeps onnxruntime's default, except for files with
the custom kNN operator, whose Python body runs its own worker threads: there it is off.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from ..data.classes import default_class_names
from ..engine.calibration import temperature_of
from ..engine.device import device_name
from ..engine.predictor import finite_logits
from ..errors import FormatError, InputError, Setting
from . import custom_knn

META_PREFIX = "pointgcn."
INPUT_NAME = "features"
OUTPUT_NAME = "logits"
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def _ort():
    # lazy: onnxruntime loads its native libraries (CUDA's too, with onnxruntime-gpu) on import;
    # only sessions need them
    import onnxruntime as ort
    ort.set_default_logger_severity(3)  # errors only: no per-node fallback chatter
    return ort


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
PROVIDER = Setting("provider")  # as errors name it (apps/ say their flag)
GPU_INSTALL = ("onnxruntime has no CUDA execution provider here (the CPU package is installed); "
               "install onnxruntime-gpu in its place (pip uninstall onnxruntime && pip install "
               "'pointgcn[gpu]') or use {provider} cpu")


def onnxruntime_version() -> str:
    return _ort().__version__


def has_cuda_provider() -> bool:
    return PROVIDERS["cuda"] in _ort().get_available_providers()


def resolve_provider(provider: str | None = None, device: str | None = None) -> str:
    """"cpu" or "cuda": `provider` if given, else following the `device` request (auto: CUDA
    when a GPU and onnxruntime's CUDA provider are both there)."""
    if provider is None:
        gpu = device_name(device).startswith("cuda")
        explicit = device is not None and str(device).strip().lower() != "auto"
        provider = "cuda" if gpu and (explicit or has_cuda_provider()) else "cpu"
    if provider not in PROVIDERS:
        raise InputError("{setting} must be cpu or cuda, got {provider!r}", setting=PROVIDER,
                         provider=provider)
    if provider == "cuda" and not has_cuda_provider():
        raise InputError(GPU_INSTALL, provider=PROVIDER)
    return provider


def providers_for(provider: str | None = None, device: str | None = None) -> list[str]:
    """The execution providers of a session (CUDA falls back to the CPU for unsupported ops)."""
    if resolve_provider(provider, device) == "cuda":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]]
    return [PROVIDERS["cpu"]]


def default_providers() -> list[str]:
    return providers_for(None, "auto")


def session_options(threads: int | None = None, optimization: str = "all",
                    spin: bool | None = None, profile_prefix: str | None = None):
    ort = _ort()
    if optimization not in OPTIMIZATION_LEVELS:
        raise InputError(f"graph optimisation must be one of {OPTIMIZATION_LEVELS}, "
                         f"got {optimization!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
    if threads:
        if threads < 1:
            raise InputError(f"threads must be ≥ 1, got {threads}")
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    if spin is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def make_session(path: str | Path, threads: int | None = None,
                 providers: list[str] | None = None, optimization: str = "all",
                 spin: bool | None = None, profile_prefix: str | None = None):
    """An `InferenceSession` on `path`; typed one-line errors for missing or broken files."""
    ort = _ort()
    path = Path(path)
    if path.suffix != ".onnx":
        raise InputError(f"{path}: expected an .onnx file")
    if not path.is_file():
        raise InputError(f"ONNX model not found: {path}")
    available = ort.get_available_providers()
    providers = list(providers) if providers else default_providers()
    unknown = [p for p in providers if p not in available]
    if unknown:
        raise InputError(f"execution provider(s) {', '.join(unknown)} not available here "
                         f"(available: {', '.join(available)})")
    custom = file_uses_custom_knn(path)
    if custom and spin is None:  # spinning pool threads would take the operator's cores
        spin = False             # (measured: docs/performance.md, "custom kNN operator")
    so = session_options(threads, optimization, spin, profile_prefix)
    if custom:
        custom_knn.register(so)  # or a one-line error naming the missing package
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types per failure kind
        raise FormatError(f"{path}: onnxruntime cannot load it "
                          f"({str(e).strip().splitlines()[0][:200]})") from e


def read_metadata(path: str | Path) -> dict:
    """The `pointgcn.*` metadata of an ONNX file (prefix stripped, JSON values decoded)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise FormatError(f"{path}: not a readable ONNX model ({type(e).__name__})") from e
    return decode_metadata({p.key: p.value for p in model.metadata_props})


def uses_custom_knn(meta: dict) -> bool:
    """Whether a file's metadata says its kNN is pointgcn's custom operator
    (export/custom_knn.py) rather than the standard-opset graph any runtime loads."""
    return meta.get("knn") == custom_knn.CUSTOM


def file_uses_custom_knn(path: str | Path) -> bool:
    """The metadata says so, or a node is the custom operator (the parity check's copies
    carry no metadata). False for an unreadable file (the session reports it)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx raises DecodeError & co: onnxruntime then says why it cannot load
        return False
    if uses_custom_knn(decode_metadata({p.key: p.value for p in model.metadata_props})):
        return True
    return any(n.domain == custom_knn.DOMAIN and n.op_type == custom_knn.OP_TYPE
               for n in model.graph.node)


def decode_metadata(props: dict) -> dict:
    out = {}
    for key, value in props.items():
        if key.startswith(META_PREFIX):
            try:
                out[key[len(META_PREFIX):]] = json.loads(value)
            except ValueError:
                out[key[len(META_PREFIX):]] = value
    return out


def encode_metadata(meta: dict) -> dict:
    """`{key: value}` → `{"pointgcn.key": JSON}` string pairs for `metadata_props`."""
    return {META_PREFIX + k: json.dumps(v, default=str) for k, v in meta.items()}


class OnnxPredictor:
    """`Predictor` on onnxruntime: features `(B, C, N)` float32 → logits numpy.

    Attributes as `TorchPredictor` (in_channels, n_classes, task, name, class_names) plus
    `config` (the run config recorded at export), `min_points` and `providers`.
    """

    def __init__(self, path: str | Path, threads: int | None = None,
                 providers: list[str] | None = None, optimization: str = "all",
                 spin: bool | None = None, name: str | None = None, calibrated: bool = True):
        """`providers`: see `providers_for` (default: CUDA when a GPU and onnxruntime-gpu are
        there, else the CPU). `calibrated`: divide the logits by the temperature the file
        records (`pointgcn.temperature`, as the eager predictor does); False gives the graph's
        own output (parity against the eager module)."""
        self.path = Path(path)
        self.session = make_session(self.path, threads, providers, optimization, spin)
        self.providers = self.session.get_providers()
        meta = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.in_channels = int(meta.get("in_channels") or _static_dim(inp.shape, 1, self.path))
        self.n_classes = int(meta.get("n_classes") or _static_dim(out.shape, 1, self.path))
        self.task = meta.get("task") or ("classification" if len(out.shape) == 2
                                         else "segmentation")
        self.min_points = int(meta.get("min_points", 1))
        self.config = meta.get("config") or {"model": {
            "task": self.task, "in_channels": self.in_channels, "n_classes": self.n_classes}}
        self.class_names = meta.get("class_names") or default_class_names(
            {"task": self.task, "n_classes": self.n_classes})
        self.name = name or self.path.name
        self.metadata = meta
        self.temperature = temperature_of(meta) if calibrated else 1.0
        self.custom_knn = uses_custom_knn(meta)
        self.threads = threads

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise InputError(f"{self.name} expects features (B, {self.in_channels}, N), "
                             f"got {tuple(x.shape)}")
        if x.shape[2] < self.min_points:
            raise InputError(f"{self.name} needs at least {self.min_points} points per cloud "
                             f"(k × largest dilation), got {x.shape[2]}")
        with custom_knn.knn_threads(self.threads):  # the custom kNN operator's threads
            logits = self.session.run([self.output_name], {self.input_name: x})[0]
        if self.temperature != 1.0:
            logits = logits / np.float32(self.temperature)
        return finite_logits(logits, self.name)


def _static_dim(shape, axis: int, path: Path) -> int:
    if len(shape) <= axis or not isinstance(shape[axis], int):
        raise FormatError(f"{path}: no pointgcn metadata and dimension {axis} of "
                          f"{list(shape)} is not fixed; export it with `pointgcn export`")
    return shape[axis]

