"""int8 dynamic quantisation of an exported model (onnxruntime `quantize_dynamic`).

Dynamic quantisation stores the weights of MatMul/Gemm nodes with a constant weight as int8
and quantises their activations per run; the kNN distance products (both operands are
activations) stay float32, so neighbour search is unchanged up to the features it is built
on. The result is reported against the fp32 file on the same clouds: label agreement and the
p50 latency change (interleaved runs).
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import onnx

from ..errors import ExportError
from ..io.atomic import atomic_path
from .parity import check_inputs, random_clouds
from .runtime import META_PREFIX, OnnxPredictor
from .timing import latency_stats, time_interleaved


def int8_path(fp32_path: str | Path) -> Path:
    p = Path(fp32_path)
    return p.with_name(p.stem + ".int8.onnx")


@contextlib.contextmanager
def _quiet_root_logger():
    """quantize_dynamic logs a 'consider pre-processing' warning on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_model(src: str | Path, dst: str | Path | None = None) -> Path:
    """Write the int8 copy of `src` (default `<stem>.int8.onnx`) with `src`'s metadata."""
    # lazy: onnxruntime loads its native libraries on import (runtime._ort); only int8 needs this
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(src)
    dst = Path(dst) if dst else int8_path(src)
    meta = [(p.key, p.value) for p in onnx.load(str(src), load_external_data=False).metadata_props]
    with atomic_path(dst) as tmp:
        try:
            with _quiet_root_logger():
                quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
        except Exception as e:  # onnxruntime.quantization raises assorted types
            raise ExportError(f"int8 quantisation of {src.name} failed: {type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:200]}") from e
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        for key, value in meta + [(META_PREFIX + "quantized", '"int8 dynamic"')]:
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return dst


def quantize_and_compare(fp32_path: str | Path, *, points: int, batch: int = 2,
                         threads: int | None = None, seed: int = 0,
                         check_data: np.ndarray | None = None, runs: int | None = None) -> dict:
    """Quantise, then compare int8 with fp32 on the same clouds (labels and p50 latency)."""
    dst = quantize_model(fp32_path)
    fp32, int8 = OnnxPredictor(fp32_path, threads=threads), OnnxPredictor(dst, threads=threads)
    inputs = check_inputs(points, fp32.min_points, fp32.in_channels, batch, seed, check_data)
    agree, total, max_abs = 0, 0, 0.0
    for x in inputs:
        a, b = fp32(x), int8(x)
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        total += a.argmax(1).size
        max_abs = max(max_abs, float(np.abs(a - b).max()))
    x = random_clouds(batch, fp32.in_channels, max(points, fp32.min_points), seed)
    if runs is None:  # about two seconds of timing, between 3 and 20 runs each
        t = time.perf_counter()
        fp32(x)
        runs = int(min(20, max(3, 1.0 / max(time.perf_counter() - t, 1e-4))))
    times = time_interleaved({"fp32": lambda: fp32(x), "int8": lambda: int8(x)}, runs, 1)
    s32, s8 = latency_stats(times["fp32"]), latency_stats(times["int8"])
    return {"path": str(dst), "size_bytes": dst.stat().st_size,
            "fp32_size_bytes": Path(fp32_path).stat().st_size, "agreement": agree / total,
            "labels": total, "max_abs": max_abs, "points": int(x.shape[2]), "batch": batch,
            "runs": runs, "fp32_p50_ms": s32["p50_ms"], "int8_p50_ms": s8["p50_ms"],
            "speedup": s32["p50_ms"] / s8["p50_ms"]}
