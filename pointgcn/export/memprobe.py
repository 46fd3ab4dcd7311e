"""Subprocess entry for timing.peak_memory:
`python -m pointgcn.export.memprobe RUNTIME PATH RESULT --points N …`.

Loads one runtime (`torch`: a checkpoint; `onnx`: an .onnx file), records the resident set,
resets the kernel's high-water mark, runs inference and writes RESULT, one JSON object:
{"peak_mb": peak RSS above the loaded baseline, "baseline_mb", "method"} (a file, not stdout,
which the runtimes may write to).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

from .parity import random_clouds
from .serve import open_model


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("runtime", choices=["torch", "onnx"])
    p.add_argument("path")
    p.add_argument("result")
    p.add_argument("--points", type=int, required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)

    device = "cpu" if args.runtime == "torch" else None  # onnxruntime: its default provider
    predictor = open_model(args.path, threads=args.threads, device=device).predictor()
    x = random_clouds(args.batch, predictor.in_channels, args.points, seed=0)
    baseline = _status_kb("VmRSS")
    reset = _reset_peak()
    for _ in range(args.runs):
        predictor(x)
    peak = _status_kb("VmHWM")
    if peak is None or baseline is None:  # not Linux: fall back to getrusage (includes load)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out = {"peak_mb": peak_mb, "baseline_mb": None, "method": "ru_maxrss (incl. load)"}
    else:
        out = {"peak_mb": (peak - baseline) / 1024 if reset else peak / 1024,
               "baseline_mb": baseline / 1024,
               "method": "VmHWM − loaded VmRSS" if reset else "VmHWM (incl. load)"}
    Path(args.result).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
