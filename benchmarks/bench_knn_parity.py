"""How faithful the kNN graphs are across runtimes, with and without centred scores.

    python benchmarks/bench_knn_parity.py MODEL [--points 2048] [--calibrate]

MODEL: a shipped name or checkpoint (an official deep_gcns_torch file too). --calibrate resets
its BatchNorm statistics to those of synthetic room blocks (one train-mode pass, cumulative
average): random official-layout weights then behave like a trained model's layers instead of
exploding. For each scoring (naive: uncentred; centred: `graph.knn.centre`), on synthetic room
blocks of the model's kind:
  same features  per kNN layer, PyTorch's own input features: float32 picks equal to float64
                 ones, and eager picks equal to onnxruntime's (the kNN alone exported);
  end to end     eager vs onnxruntime on the whole model: per-layer shared neighbours (each
                 runtime on its own features) and per-point label agreement.
The naive scoring is this module patching `centre` to the identity; the library has one.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pointgcn.data.synthetic.check_clouds import synthetic_clouds  # noqa: E402
from pointgcn.export import open_model  # noqa: E402
from pointgcn.export.parity import graph_agreement, record_graphs  # noqa: E402
from pointgcn.export.runtime import OnnxPredictor  # noqa: E402
from pointgcn.export.tracing import trace_to_onnx  # noqa: E402
from pointgcn.graph import knn_modules  # noqa: E402

KNN = sys.modules["pointgcn.graph.knn"]
CENTRED = KNN.centre


def calibrate(model, x: np.ndarray) -> None:
    """BatchNorm running statistics := those of one train-mode pass over `x`."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    graphs = knn_modules(model)
    stochastic = [g.stochastic for g in graphs]
    for g in graphs:
        g.stochastic = False
    with torch.no_grad():
        model(torch.from_numpy(x))
    for g, s in zip(graphs, stochastic):
        g.stochastic = s
    model.eval()


def same_feature_rows(model, x: np.ndarray, tmp: Path) -> list[dict]:
    feats = []
    hooks = [g.register_forward_hook(lambda _m, i, o: feats.append((i[0], o)))
             for g in knn_modules(model)]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    rows = []
    for layer, (g, (f, idx)) in enumerate(zip(knn_modules(model), feats)):
        path = tmp / f"knn{layer}.onnx"
        trace_to_onnx(g, (f,), path, input_names=["features"], output_names=["logits"],
                      dynamic_axes={"features": {0: "b", 2: "n"}})
        sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ort = torch.from_numpy(sess.run(None, {"features": f.numpy()})[0])
        f64 = g(f.double())
        rows.append({"layer": layer, "kd": g.k * g.dilation,
                     "f32_vs_f64": float((idx == f64).float().mean()),
                     "eager_vs_ort": float((idx == ort).float().mean())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = open_model(args.model).module.eval()
    run = {"model": dict(model.cfg), "data": {"dataset": "s3dis", "n_points": args.points,
                                              "block": 1.0, "stride": 0.5}}
    if args.calibrate:
        calibrate(model, synthetic_clouds(run, 4, args.points // 2, seed=7)[0])
    x = synthetic_clouds(run, args.batch, args.points // 2, seed=0)[0]
    print(f"{args.model}: {len(knn_modules(model))} kNN graphs, N {args.points}, "
          f"B {args.batch}, synthetic room blocks, {args.threads} threads")
    for name, centre in (("naive", lambda xt: xt), ("centred", CENTRED)):
        KNN.centre = centre
        with tempfile.TemporaryDirectory() as tmp:
            same = same_feature_rows(model, x, Path(tmp))
            ends = graph_agreement(model, x, threads=args.threads, workdir=tmp)
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            path = Path(tmp) / "model.onnx"
            trace_to_onnx(model, (torch.from_numpy(x),), path, input_names=["features"],
                          output_names=["logits"],
                          dynamic_axes={"features": {0: "b", 2: "n"}, "logits": {0: "b", 2: "n"}})
            got = OnnxPredictor(path, threads=args.threads,
                                providers=["CPUExecutionProvider"])(x)
        labels = float((ref.argmax(1) == got.argmax(1)).mean())
        print(f"[{name}] labels eager = onnxruntime: {100 * labels:.2f}%")
        print("  layer  k·d  f32=f64 %  eager=ort (same features) %  "
              "shared neighbours end to end %")
        for s, e in zip(same, ends):
            print(f"  {s['layer']:5d} {s['kd']:4d}  {100 * s['f32_vs_f64']:9.2f}  "
                  f"{100 * s['eager_vs_ort']:28.2f}  {100 * e['sets']:29.2f}")
    KNN.centre = CENTRED


if __name__ == "__main__":
    main()
