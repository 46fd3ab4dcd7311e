"""Latency and memory measurement shared by `bench`, `--quantize` and latency budgets.

Latency: runs interleaved across the runtimes being compared (runtime A, B, A, B, …) after
warm-up, so machine noise — these machines are shared — hits all of them alike; reported as
mean, p50, p95 (linear-interpolated percentiles) in milliseconds.

Peak memory: `tracemalloc` sees only Python allocations, not PyTorch's or onnxruntime's native
buffers, so memory is measured from the kernel's view instead: each runtime is loaded in a
fresh subprocess (memprobe.py), the resident-set high-water mark is reset after loading
(writing 5 to /proc/self/clear_refs, Linux ≥ 4.0), inference runs, and the peak RSS above the
loaded baseline is reported (the working memory of inference, not weights or libraries). Where
the reset is unavailable the peak includes loading and is labelled so.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..engine.device import cpu_model, describe_device, device_name
from .runtime import onnxruntime_version


def latency_stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"runs": int(ms.size), "mean_ms": float(ms.mean()),
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def time_interleaved(fns: dict[str, Callable[[], object]], runs: int = 10,
                     warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per run for each named function, runs interleaved after `warmup` each."""
    if runs < 1:
        raise ValueError("runs must be ≥ 1")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """Hash of pointgcn's own sources: a faster kNN makes cached eager timings stale too."""
    return sources_hash(Path(__file__).resolve().parents[1])


def sources_hash(root: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def device_fingerprint(device: str = "cpu") -> dict:
    """What makes a latency measurement valid elsewhere: CPU, cores, runtime versions and
    pointgcn's code; measured on a GPU, also the GPU's name (`cuda`), driver and CUDA version
    (a measurement on the CPU keeps `cuda` None, whatever GPU the machine has)."""
    fp = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
          "onnxruntime": onnxruntime_version(), "pointgcn": code_fingerprint(), "cuda": None}
    name = device_name(device)
    if name.startswith("cuda"):
        gpu = describe_device(name)
        fp.update(cuda=gpu["name"], driver=gpu["driver"], cuda_version=gpu["cuda"],
                  device=gpu["device"])
    return fp


def environment(threads: int | None = None, device: str = "cpu") -> dict:
    env = device_fingerprint(device)
    env.update(python=platform.python_version(), platform=platform.platform(),
               threads=threads or torch.get_num_threads(), load=_load())
    return env


def environment_line(env: dict) -> str:
    load = f", load avg {env['load']:.2f}" if env.get("load") is not None else ""
    gpu = f"{env['cuda']} (driver {env.get('driver')}), " if env.get("cuda") else ""
    return (f"{gpu}{env['cpu']}, {env['cores']} cores, {env['threads']} threads, torch "
            f"{env['torch']}, onnxruntime {env['onnxruntime']}, python {env['python']}{load}")


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def peak_memory(runtime: str, path: str | Path, points: int, batch: int,
                threads: int | None = None, runs: int = 2, timeout: float = 900) -> dict:
    """Peak RSS (MB) of `runs` inferences above the loaded baseline, in a fresh subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "peak.json"
        cmd = [sys.executable, "-m", "pointgcn.export.memprobe", runtime, str(path), str(result),
               "--points", str(points), "--batch", str(batch), "--runs", str(runs)]
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parents[2])
        if proc.returncode != 0 or not result.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"peak_mb": None, "error": tail[:200]}
        return json.loads(result.read_text())
