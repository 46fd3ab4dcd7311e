"""`export_onnx(model, "model.onnx")`: any eval-mode model with a `.cfg` → a checked ONNX file.

What the file holds: input `features (batch, C, points)` and output `logits` (`(batch, classes,
points)` or `(batch, classes)`), both axes dynamic; the dilated kNN (distance matmul, TopK,
Gather) inside the graph — export mode routes every kNN through the loop-free path, as a Python
loop over row chunks would freeze N; eval mode turns stochastic dilation and dropout off. The
`pointgcn.*` metadata (task, channels, classes, class names, run config, minimum points, the
calibration temperature, applied by the onnxruntime predictor rather than baked in) makes
the file usable on its own (see runtime.py).

Order of work, so a failure leaves no file behind: export to a temp file next to the target →
`onnx.checker` full check → metadata → parity check (parity.py) → rename. The parity report
(plus the export facts) is saved as `<stem>.parity.json` next to the model even when parity
fails, so the failure can be inspected; the model itself is then not written.

Equilibrium (deq) layers solve to a tolerance with Anderson acceleration, which ONNX cannot
express: they export as `model.deq.export_iters` Picard steps (metadata `deq_export_iters`),
parity compares the file with PyTorch running the same unrolled steps, and the report's
`deq` entry says how far the unrolled model is from the solved one on the check clouds.
"""
from __future__ import annotations

import collections
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import ExportError, Setting
from ..graph import min_points
from ..io.atomic import atomic_path
from ..nn import deq_layers, unrolled
from .custom_knn import CUSTOM, STANDARD, custom_knn_ops
from .parity import (MIN_AGREEMENT, REL_TOL, check_inputs, check_parity, format_parity,
                     random_clouds, unroll_gap)
from .quantize import quantize_and_compare
from .runtime import INPUT_NAME, OUTPUT_NAME, encode_metadata
from .tracing import MIN_OPSET, trace_to_onnx

FORMAT_VERSION = 1


@dataclass
class ExportReport:
    path: str
    exporter: str
    opset: int
    export_seconds: float
    size_bytes: int
    nodes: int
    ops: dict
    inputs: dict
    outputs: dict
    min_points: int
    metadata: dict
    parity: dict | None = None
    quantized: dict | None = None
    report_path: str | None = None
    notes: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.parity is None or bool(self.parity["passed"])

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        top = ", ".join(f"{op}×{n}" for op, n in sorted(self.ops.items(), key=lambda t: -t[1])[:6])
        lines = [f"exported {self.path} ({self.size_bytes / 1e6:.2f} MB, opset {self.opset}, "
                 f"{self.exporter} exporter, {self.export_seconds:.1f} s)",
                 f"graph         {self.nodes} nodes: {top}, …",
                 f"input         {_dims(self.inputs)}  → output {_dims(self.outputs)}",
                 f"points        any N ≥ {self.min_points} (k × largest dilation), any batch"]
        if self.parity:
            lines.append(format_parity(self.parity))
        if self.quantized:
            q = self.quantized
            lines.append(f"int8          {q['path']} ({q['size_bytes'] / 1e6:.2f} MB): labels "
                         f"{100 * q['agreement']:.2f}% equal to fp32, p50 {q['fp32_p50_ms']:.1f}"
                         f" → {q['int8_p50_ms']:.1f} ms ({q['speedup']:.2f}× at N={q['points']})")
        lines += self.notes
        return "\n".join(lines)


def export_onnx(model: nn.Module, out_path: str | Path, *, opset: int = MIN_OPSET,
                points: int = 1024, batch: int = 2, parity: bool = True,
                check_data: np.ndarray | None = None, check_data_name: str | None = None,
                min_agreement: float = MIN_AGREEMENT,
                rel_tol: float = REL_TOL, enforce: bool = True, quantize: bool = False,
                run_config: dict | None = None, class_names: list[str] | None = None,
                exporter: str = "legacy", threads: int | None = None,
                seed: int = 0, device: str | None = "cpu",
                provider: str | None = None, temperature: float | None = None,
                custom_knn: bool = False) -> ExportReport:
    """Export, check, (parity-check, quantise) and atomically write `out_path`.

    `points` is the nominal N (parity runs at ≈ N/2, N, 2N; N stays dynamic in the file either
    way). With `enforce`, failed parity raises `ExportError` (the report JSON is still saved).
    The parity run's PyTorch side runs on `device`, onnxruntime on `provider` (check_parity);
    it checks on `check_data` (described in the report as `check_data_name`, default "given"),
    else on random clouds, as does the int8 comparison. `temperature` (the checkpoint's
    calibration) is recorded in the metadata; the onnxruntime predictor divides by it.
    `custom_knn`: each kNN as one onnxruntime-extensions node running the eager kNN
    (custom_knn.py: no N×N TopK, eager's neighbours; the file then needs that package);
    recorded as metadata `knn` ("custom", else "standard").
    """
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ExportError(f"{out_path}: the output file must end in .onnx")
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, dict) or "in_channels" not in cfg:
        raise ExportError(f"{type(model).__name__} has no .cfg with in_channels; export needs "
                          "the model config (task, in_channels, n_classes)")
    was_training = model.training
    model.eval()
    try:
        # unrolled: what the file computes, for the trace and for parity
        with unrolled(model), custom_knn_ops(model, custom_knn):
            return _export(model, cfg, out_path, opset, points, batch, parity, check_data,
                           check_data_name, min_agreement, rel_tol, enforce, quantize,
                           run_config, class_names, exporter, threads, seed, device, provider,
                           temperature, custom_knn)
    finally:
        model.train(was_training)


def _export(model, cfg, out_path, opset, points, batch, parity, check_data, check_data_name,
            min_agreement, rel_tol, enforce, quantize, run_config, class_names, exporter,
            threads, seed, device, provider, temperature=None, custom_knn=False):
    least = min_points(model)
    # The graph is the same for any traced N (both axes are dynamic), but tracing runs the model
    # once: a small N keeps that cheap (ten times cheaper for ResGCN-28, docs/performance.md).
    n_trace = min(max(points, least), max(2 * least, 64))
    x = torch.from_numpy(random_clouds(batch, cfg["in_channels"], n_trace, seed))
    with torch.no_grad():
        out = model(x)
    out_axes = {0: "batch", 2: "points"} if out.dim() == 3 else {0: "batch"}
    meta = _metadata(model, cfg, least, points, run_config, class_names, out)
    if temperature is not None:
        meta["temperature"] = float(temperature)
    meta["knn"] = CUSTOM if custom_knn else STANDARD
    report_path = out_path.with_suffix(".parity.json")
    with atomic_path(out_path) as tmp:
        t0 = time.perf_counter()
        trace_to_onnx(model, (x,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes={INPUT_NAME: {0: "batch", 2: "points"}, OUTPUT_NAME: out_axes},
                      opset=opset, exporter=exporter)
        seconds = time.perf_counter() - t0
        proto = _finish(tmp, meta)
        report = ExportReport(
            path=str(out_path), exporter=exporter, opset=_opset(proto), export_seconds=seconds,
            size_bytes=tmp.stat().st_size, nodes=len(proto.graph.node),
            ops=dict(collections.Counter(n.op_type for n in proto.graph.node)),
            inputs=_io_dims(proto.graph.input), outputs=_io_dims(proto.graph.output),
            min_points=least, metadata={k: v for k, v in meta.items() if k != "config"})
        if parity:
            report.parity = check_parity(model, tmp, points=points, batch=batch,
                                         check_data=check_data, data_name=check_data_name,
                                         seed=seed, min_agreement=min_agreement, rel_tol=rel_tol,
                                         opset=opset, exporter=exporter, threads=threads,
                                         device=device, provider=provider)
            if deq_layers(model):
                report.parity["deq"] = unroll_gap(model, check_inputs(
                    points, least, cfg["in_channels"], batch, seed, check_data))
            if enforce and not report.parity["passed"]:
                report.report_path = str(report_path)
                _write_json(report, report_path)
                raise ExportError("parity check failed for {name}: {failures} on {data} "
                                  "(report: {report}; model not written; check on your own "
                                  "clouds with {check_data}, or accept less with {least})",
                                  name=out_path.name, data=report.parity["data"],
                                  failures="; ".join(report.parity["failures"]),
                                  report=report_path, check_data=Setting("check_data"),
                                  least=Setting("min_agreement"))
    if quantize:
        report.quantized = quantize_and_compare(out_path, points=points, batch=batch,
                                                threads=threads, seed=seed,
                                                check_data=check_data)
    report.report_path = str(report_path)
    _write_json(report, report_path)
    return report


def _metadata(model, cfg, least, points, run_config, class_names, out) -> dict:
    config = dict(run_config or {})
    config["model"] = dict(cfg)
    n_classes = int(cfg.get("n_classes", out.shape[1]))
    return {"format_version": FORMAT_VERSION, "name": cfg.get("name", type(model).__name__),
            "task": cfg.get("task", "classification" if out.dim() == 2 else "segmentation"),
            "in_channels": int(cfg["in_channels"]), "n_classes": n_classes,
            "class_names": list(class_names) if class_names else None,
            "min_points": least, "points": points, "config": config,
            "deq_export_iters": [m.options["export_iters"] for m in deq_layers(model)] or None,
            "torch": torch.__version__, "onnx": onnx.__version__}


def _finish(path: Path, meta: dict) -> onnx.ModelProto:
    """Add metadata, then run the full checker (with shape inference) on the written file."""
    proto = onnx.load(str(path))
    props = encode_metadata({k: v for k, v in meta.items() if v is not None})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "pointgcn"
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # onnx raises ValidationError / InferenceError
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ExportError(f"the exported graph fails onnx.checker: {first}") from e
    dims = _io_dims(proto.graph.input)[INPUT_NAME]
    if isinstance(dims[0], int) or isinstance(dims[2], int):
        raise ExportError(f"the exported input has fixed dimensions {dims}; batch and points "
                          "must stay dynamic")
    return proto


def _opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _io_dims(values) -> dict:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in values}


def _dims(io: dict) -> str:
    return ", ".join(f"{name} ({', '.join(map(str, dims))})" for name, dims in io.items())


def _write_json(report: ExportReport, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
