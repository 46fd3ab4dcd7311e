"""onnxruntime's kNN options at k·d = 16 … 432 on one N×C cloud, interleaved in one process.

    python benchmarks/bench_ort_knn.py [--points 4096] [--channels 64] [--runs 5] [--threads 2]

(a) On the N×N scores of the export's formulation (queries [x, 1] · keys [−2x, ‖x‖²] as one
    ONNX MatMul): MatMul alone; + TopK(sorted=1); + TopK(sorted=0) then ordering the k·d
    candidates (a second, small TopK over them + GatherElements). Issue 16 asked for this.
(b) One dilated kNN layer (k 16, dilation 1 … 27) end to end: eager PyTorch (graph/knn.py,
    worker threads + numpy selection), the portable export in onnxruntime, and the custom
    kNN operator (export/custom_knn.py, onnxruntime-extensions) in onnxruntime — and whether
    the custom operator's neighbours equal eager's exactly.
Prints a markdown table (ms, p50 of interleaved runs). Features: random normal (synthetic).
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from pointgcn.export.custom_knn import custom_knn_ops, extensions_available
from pointgcn.export.runtime import make_session
from pointgcn.export.timing import latency_stats, time_interleaved
from pointgcn.export.tracing import trace_to_onnx
from pointgcn.graph import DilatedKnn

K = 16
DILATIONS = (1, 2, 4, 8, 16, 27)


def topk_graph(path: Path, kd: int, sorted_topk: bool, with_topk: bool = True) -> None:
    """scores = q · kᵀ (B, N, N); indices of the kd smallest per row, ordered."""
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, "n", "c"])
    kt = helper.make_tensor_value_info("kt", TensorProto.FLOAT, [1, "c", "n"])
    kk = helper.make_tensor("kd", TensorProto.INT64, [1], [kd])
    nodes = [helper.make_node("MatMul", ["q", "kt"], ["d"])]
    if not with_topk:
        nodes.append(helper.make_node("ReduceMin", ["d"], ["idx"], keepdims=1))
        out_type = TensorProto.FLOAT
    elif sorted_topk:
        nodes.append(helper.make_node("TopK", ["d", "kd"], ["v", "idx"], largest=0, sorted=1))
        out_type = TensorProto.INT64
    else:
        nodes += [helper.make_node("TopK", ["d", "kd"], ["v0", "i0"], largest=0, sorted=0),
                  helper.make_node("TopK", ["v0", "kd"], ["v", "order"], largest=0, sorted=1),
                  helper.make_node("GatherElements", ["i0", "order"], ["idx"], axis=2)]
        out_type = TensorProto.INT64
    out = helper.make_tensor_value_info("idx", out_type, None)
    graph = helper.make_graph(nodes, "topk", [q, kt], [out], initializer=[kk])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


class OneLayer(nn.Module):
    def __init__(self, dilation: int):
        super().__init__()
        self.graph = DilatedKnn(K, dilation)

    def forward(self, x):
        return self.graph(x)


def knn_files(tmp: Path, dilation: int, x: torch.Tensor) -> dict[str, Path]:
    model = OneLayer(dilation).eval()
    files = {}
    for name, custom in (("portable", False), ("custom", True)):
        if custom and not extensions_available():
            continue
        path = tmp / f"knn_{dilation}_{name}.onnx"
        with custom_knn_ops(model, custom):
            trace_to_onnx(model, (x,), path, input_names=["features"], output_names=["idx"],
                          dynamic_axes={"features": {0: "b", 2: "n"}, "idx": {0: "b", 1: "n"}})
        files[name] = path
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=4096)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, args.channels, args.points)).astype(np.float32)
    xt = torch.from_numpy(x)
    feats = x[0].T
    q = np.concatenate([feats, np.ones((args.points, 1), np.float32)], 1)[None]
    kt = np.concatenate([-2 * feats, (feats ** 2).sum(1, keepdims=True)], 1).T[None].copy()
    print(f"N {args.points}, C {args.channels}, threads {args.threads}, load average "
          f"{os.getloadavg()[0]:.2f}; random normal features (synthetic); p50 ms of "
          f"{args.runs} interleaved runs\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("(a) | k·d | MatMul only | + TopK sorted | + TopK sorted=0 + order k·d | "
              "unsorted = sorted |")
        print("|---:|---:|---:|---:|---|")
        for d in DILATIONS:
            kd = K * d
            sessions = {}
            for name, s, t in (("matmul", True, False), ("sorted", True, True),
                               ("unsorted", False, True)):
                path = tmp / f"topk_{kd}_{name}.onnx"
                topk_graph(path, kd, s, t)
                sessions[name] = make_session(path, threads=args.threads, spin=False)
            feeds = {"q": q, "kt": kt}
            got = {n: s.run(None, feeds)[0] for n, s in sessions.items()}
            a, b = got["sorted"], got["unsorted"]  # ties (same score) may order apart
            same = (f"sets {np.mean(np.sort(a, -1) == np.sort(b, -1)):.4f}, "
                    f"order {np.mean(a == b):.4f}")
            t = time_interleaved({n: (lambda s=s: s.run(None, feeds)) for n, s in
                                  sessions.items()}, args.runs, 1)
            p = {n: latency_stats(v)["p50_ms"] for n, v in t.items()}
            print(f"| {kd} | {p['matmul']:.1f} | {p['sorted']:.1f} | {p['unsorted']:.1f} "
                  f"| {same} |")
        print("\n(b) | k·d | eager | ORT portable | ORT custom op | custom = eager |")
        print("|---:|---:|---:|---:|---|")
        for d in DILATIONS:
            kd = K * d
            files = knn_files(tmp, d, xt[:, :, :max(2 * kd, 64)])
            layer = OneLayer(d).eval()
            fns = {"eager": lambda: layer(xt)}
            sessions = {n: make_session(p, threads=args.threads, spin=False)
                        for n, p in files.items()}
            for n, s in sessions.items():
                fns[n] = lambda s=s: s.run(None, {"features": x})
            with torch.no_grad():
                ref = layer(xt).numpy()
                same = ("yes" if "custom" in sessions and np.array_equal(
                    sessions["custom"].run(None, {"features": x})[0], ref) else "no")
                t = time_interleaved(fns, args.runs, 1)
            p = {n: latency_stats(v)["p50_ms"] for n, v in t.items()}
            print(f"| {kd} | {p['eager']:.1f} | {p['portable']:.1f} | "
                  f"{p.get('custom', float('nan')):.1f} | {same} |")
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
