"""Where a model runs: `--device auto|cpu|cuda|cuda:N` and `device:` in configs.

`auto` is CUDA when torch sees a GPU, else the CPU. A device the machine lacks is a one-line
`InputError` (exit 2), never a traceback from deep inside torch. `describe_device` is what
run folders, metrics, model cards and latency rows record: the resolved device and, for a
GPU, its name, driver and CUDA version, so numbers are never compared across machines unawares.

Mixed precision (`train.amp`): none | bf16 | fp16. bf16 needs no loss scaling and works on
the CPU too; fp16 trains with a gradient scaler. kNN distances stay float32 under autocast
(graph/knn.py).
"""
from __future__ import annotations

import contextlib
import functools
import platform
import re
import subprocess
from pathlib import Path

import torch

from ..errors import ConfigError, InputError, Setting

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
DEVICE = Setting("device")  # as errors name it (apps/ say their flag)
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def device_name(spec: str | None = "auto") -> str:
    """The device a request names, checked against this machine: "cpu", "cuda" (the process's
    GPU; under torchrun cuda:LOCAL_RANK) or "cuda:N". This string is what configs record."""
    spec = "auto" if spec is None else str(spec).strip().lower()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return spec
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise InputError("{device} must be {choices}, got {spec!r}", device=DEVICE,
                         choices=DEVICE_CHOICES, spec=spec)
    if not torch.cuda.is_available():
        raise InputError("{device} {spec}: no CUDA GPU is available to torch here (torch "
                         "{torch}); use {device} cpu or auto", device=DEVICE, spec=spec,
                         torch=torch.__version__)
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise InputError("{device} {spec}: this machine has {n} GPU(s), cuda:0 … cuda:{last}",
                         device=DEVICE, spec=spec, n=n, last=n - 1)
    return spec


def resolve_device(spec: str | None = "auto", local_rank: int | None = None) -> torch.device:
    """`torch.device` of a request; plain "cuda" is cuda:`local_rank` (default the current GPU)."""
    name = device_name(spec)
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device() if local_rank is None
                            else local_rank)
    return torch.device(name)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def _driver_version() -> str | None:
    """The NVIDIA driver version (torch does not expose it); None without nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def describe_device(device: torch.device | str) -> dict:
    """{"device", "type", "name"} and, on a GPU, driver, CUDA runtime and memory."""
    device = torch.device(device)
    if device.type != "cuda":
        return {"device": "cpu", "type": "cpu", "name": cpu_model()}
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {"device": f"cuda:{index}", "type": "cuda", "name": props.name,
            "driver": _driver_version(), "cuda": torch.version.cuda,
            "memory_gb": round(props.total_memory / 2 ** 30, 1),
            "capability": f"{props.major}.{props.minor}"}


def device_line(device: torch.device | str) -> str:
    """One line naming a device for people: `cuda:0 (NVIDIA H100, driver 550.54, CUDA 12.4)`."""
    d = describe_device(device)
    extra = [d["name"]] + ([f"driver {d['driver']}"] if d.get("driver") else []) + \
        ([f"CUDA {d['cuda']}"] if d.get("cuda") else [])
    return f"{d['device']} ({', '.join(extra)})"


def same_kind(a: dict | None, b: dict | None) -> bool:
    """Whether two `describe_device` records are the same kind of device (CPU, or the same GPU
    model), where the same seed gives the same numbers."""
    if not a or not b:
        return True  # runs recorded before devices were: nothing to compare
    return a.get("type") == b.get("type") and (a.get("type") != "cuda"
                                               or a.get("name") == b.get("name"))


def amp_dtype(amp) -> torch.dtype | None:
    """`train.amp` → autocast dtype (None: full precision). true/false of older configs mean
    bf16/none (the CPU autocast they ran)."""
    amp = {True: "bf16", False: "none", None: "none"}.get(amp, amp) if isinstance(
        amp, (bool, type(None))) else amp
    if amp not in AMP_DTYPES:
        raise ConfigError(f"train.amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    return AMP_DTYPES[amp]


def amp_name(amp) -> str:
    dtype = amp_dtype(amp)
    return next(k for k, v in AMP_DTYPES.items() if v == dtype)


def autocast(device: torch.device, amp) -> contextlib.AbstractContextManager:
    dtype = amp_dtype(amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def rng_state(device: torch.device) -> dict:
    """The torch RNG streams a run draws from: the CPU's and, on a GPU, that GPU's (stochastic
    dilation and dropout draw on the model's device)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device: torch.device) -> None:
    """Restore `rng_state`'s record (a bare tensor is a CPU state of older checkpoints)."""
    if isinstance(state, torch.Tensor):
        state = {"cpu": state}
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`: through pinned memory and without waiting, for a GPU."""
    if device.type != "cuda" or tensor.device == device:
        return tensor.to(device)
    if not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
