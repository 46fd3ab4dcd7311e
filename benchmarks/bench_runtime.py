"""Runtime benchmark: eager PyTorch vs onnxruntime, ORT session options, op profiles, exporters.

    python benchmarks/bench_runtime.py [--quick] [--points 4096] [--threads 1 2] [--runs 5]
                                       [--options] [--static] [--profile] [--exporters]
                                       [--json OUT] [--md OUT]

models     the S3DIS ResGCN-28 (configs/s3dis_resgcn28.yaml, random weights; B=1) and a small
           ResGCN-7, through pointgcn.export.benchmark (same clouds, interleaved runs, peak
           memory per runtime in a subprocess), once per thread count.
--options  onnxruntime graph-optimisation levels × thread spinning on the same file, with eager
           interleaved as the reference.
--static   the network without its kNN: both runtimes get PyTorch's recorded neighbour graphs
           as inputs (parity.GivenGraphs), isolating the convs/blocks/head from the top-k.
--profile  where the time goes: share of each ONNX op type (onnxruntime profiler) and of each
           aten op (torch profiler), on the same cloud.
--exporters  legacy (TorchScript, opset 17) vs dynamo (torch.export, opset 18): export
           seconds and onnxruntime p50 of the two files, interleaved.
Everything in one process per section, ratios reported; the environment line records the
machine load, which on shared machines moves absolute numbers a lot.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pointgcn.config import load_config  # noqa: E402
from pointgcn.engine.predictor import TorchPredictor  # noqa: E402
from pointgcn.export.benchmark import bench_source, format_row, markdown_table  # noqa: E402
from pointgcn.export.onnx_export import export_onnx  # noqa: E402
from pointgcn.export.parity import GivenGraphs, random_clouds, record_graphs  # noqa: E402
from pointgcn.export.runtime import OnnxPredictor  # noqa: E402
from pointgcn.export.serve import LoadedModel  # noqa: E402
from pointgcn.export.timing import (environment, environment_line, latency_stats,  # noqa: E402
                                    time_interleaved)
from pointgcn.export.tracing import trace_to_onnx  # noqa: E402
from pointgcn.models import build_model  # noqa: E402

RESGCN28 = dict(n_blocks=28, channels=64, k=16, conv="edge", block="res", norm="batch",
                act="relu", in_channels=9, n_classes=13)


def resgcn28_config() -> dict:
    path = ROOT / "configs" / "s3dis_resgcn28.yaml"
    return load_config(path)["model"] if path.is_file() else dict(RESGCN28)


def model_sources(quick: bool) -> list[LoadedModel]:
    torch.manual_seed(0)
    small = {**resgcn28_config(), "n_blocks": 7, "k": 16}
    out = [LoadedModel("resgcn7", module=build_model(small).eval())]
    if not quick:
        out.append(LoadedModel("s3dis-resgcn28", module=build_model(resgcn28_config()).eval()))
    return out


def bench_models(sources, points, threads_list, runs) -> list[dict]:
    rows = []
    for threads in threads_list:
        for src in sources:
            row = bench_source(src, points=points, batch=1, runs=runs, warmup=1, threads=threads)
            print(format_row(row), flush=True)
            rows.append(row)
    return rows


def bench_options(src: LoadedModel, points: int, threads: int, runs: int) -> list[dict]:
    """Graph optimisation levels × spinning on one exported file, eager as the reference."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(src.module, path, points=points, parity=False)
        x = random_clouds(1, src.module.cfg["in_channels"], points)
        eager = TorchPredictor(src.module, threads=threads)
        fns = {"eager": lambda: eager(x)}
        for level in ("disable", "basic", "extended", "all"):
            for spin in (True, False):
                p = OnnxPredictor(path, threads=threads, optimization=level, spin=spin)
                fns[f"ort {level} spin={'on' if spin else 'off'}"] = lambda p=p: p(x)
        times = time_interleaved(fns, runs, warmup=1)
    base = latency_stats(times["eager"])["p50_ms"]
    rows = []
    for name, t in times.items():
        s = latency_stats(t)
        rows.append({"variant": name, "p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"],
                     "eager/variant": base / s["p50_ms"]})
        print(f"  {name:28s} p50 {s['p50_ms']:8.1f} ms  p95 {s['p95_ms']:8.1f} ms  "
              f"eager/this {base / s['p50_ms']:.2f}×", flush=True)
    return rows


def without_knn(src: LoadedModel, points: int, threads: int, runs: int) -> dict:
    """Eager vs onnxruntime on the network with its kNN graphs given as inputs."""
    torch.set_num_threads(threads)
    x = random_clouds(1, src.module.cfg["in_channels"], points)
    xt = torch.from_numpy(x)
    _, graphs = record_graphs(src.module, xt)
    wrapped = GivenGraphs(src.module)
    names = [f"graph_{i}" for i in range(len(graphs))]
    axes = {"features": {0: "b", 2: "n"}, "logits": {0: "b", 2: "n"},
            **{n: {0: "b", 1: "n"} for n in names}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "given_graphs.onnx"
        trace_to_onnx(wrapped, (xt, *graphs), path, input_names=["features", *names],
                      output_names=["logits"], dynamic_axes=axes)
        sess = OnnxPredictor(path, threads=threads).session
        feeds = {"features": x, **{n: g.numpy() for n, g in zip(names, graphs)}}

        def eager():
            with torch.no_grad():
                wrapped(xt, *graphs)
        times = time_interleaved({"eager": eager, "onnxruntime": lambda: sess.run(None, feeds)},
                                 runs, 1)
    out = {name: latency_stats(t)["p50_ms"] for name, t in times.items()}
    out["speedup_p50"] = out["eager"] / out["onnxruntime"]
    print(f"  without kNN: eager p50 {out['eager']:.1f} ms, onnxruntime p50 "
          f"{out['onnxruntime']:.1f} ms → {out['speedup_p50']:.2f}×", flush=True)
    return out


def profile(src: LoadedModel, points: int, threads: int) -> dict:
    """Share of time per ONNX op type (onnxruntime) and per aten op (torch)."""
    x = random_clouds(1, src.module.cfg["in_channels"], points)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(src.module, path, points=points, parity=False)
        pred = OnnxPredictor(path, threads=threads)
        pred(x)
        from pointgcn.export.runtime import make_session
        sess = make_session(path, threads=threads, profile_prefix=str(Path(tmp) / "prof"))
        sess.run(None, {"features": x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    ort_ops = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            ort_ops[e["args"]["op_name"]] += e["dur"]
    torch.set_num_threads(threads)
    with torch.no_grad():
        src.module(torch.from_numpy(x))
        with torch.profiler.profile() as prof:
            src.module(torch.from_numpy(x))
    aten = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    out = {"onnxruntime": _shares(ort_ops), "torch": _shares(aten)}
    for runtime, shares in out.items():
        print(f"  {runtime}: " + ", ".join(f"{op} {100 * s:.1f}%" for op, s in
                                           list(shares.items())[:6]), flush=True)
    return out


def _shares(times: dict) -> dict:
    total = sum(times.values()) or 1
    return {op: t / total for op, t in sorted(times.items(), key=lambda t: -t[1])[:10]}


def exporters(src: LoadedModel, points: int, threads: int, runs: int) -> list[dict]:
    rows, preds = [], {}
    x = random_clouds(1, src.module.cfg["in_channels"], points)
    with tempfile.TemporaryDirectory() as tmp:
        for exporter, opset in (("legacy", 17), ("dynamo", 18)):
            path = Path(tmp) / f"{exporter}.onnx"
            report = export_onnx(src.module, path, points=points, parity=False, opset=opset,
                                 exporter=exporter)
            preds[exporter] = OnnxPredictor(path, threads=threads)
            rows.append({"exporter": exporter, "opset": opset, "export_s": report.export_seconds,
                         "nodes": report.nodes})
        times = time_interleaved({e: (lambda p=p: p(x)) for e, p in preds.items()}, runs, 1)
    for row in rows:
        row["ort_p50_ms"] = latency_stats(times[row["exporter"]])["p50_ms"]
        print(f"  {row['exporter']:7s} opset {row['opset']}: export {row['export_s']:.1f} s, "
              f"{row['nodes']} nodes, onnxruntime p50 {row['ort_p50_ms']:.1f} ms", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small model only")
    ap.add_argument("--points", type=int, default=4096)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--options", action="store_true")
    ap.add_argument("--static", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--exporters", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()
    sources = model_sources(args.quick)
    env = environment(args.threads[-1])
    print(environment_line(env), flush=True)
    result = {"environment": env, "models": bench_models(sources, args.points, args.threads,
                                                          args.runs)}
    target = sources[-1]
    if args.options:
        print(f"session options ({target.label}, N={args.points}, {args.threads[-1]} threads)")
        result["options"] = bench_options(target, args.points, args.threads[-1], args.runs)
    if args.static:
        print(f"network without kNN ({target.label}, N={args.points}, {args.threads[-1]} threads)")
        result["without_knn"] = without_knn(target, args.points, args.threads[-1], args.runs)
    if args.profile:
        print(f"profile ({target.label}, N={args.points}, {args.threads[-1]} threads)")
        result["profile"] = profile(target, args.points, args.threads[-1])
    if args.exporters:
        print(f"exporters ({target.label}, N={args.points})")
        result["exporters"] = exporters(target, args.points, args.threads[-1], args.runs)
    result["environment_after"] = environment(args.threads[-1])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown_table(result["models"], env)
    print(table)
    if args.md:
        args.md.write_text(table + "\n")


if __name__ == "__main__":
    main()
