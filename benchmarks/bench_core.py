"""Core benchmark: kNN (dense vs torch_cluster) and ResGCN-28 forward (ours vs naive vs floor).

    python benchmarks/bench_core.py [--quick] [--json OUT.json]

ResGCN-28 is the S3DIS config (k16, C64, edge, res, B1, N4096) in eval mode. "naive" is the
textbook formulation on the same weights: unchunked `torch.cdist` + top-k, and EdgeConv as a
1×1 convolution of the N×k×2C tensor [x_i, x_j − x_i] then BN/act and the max. "floor" is the
model's FLOPs (counted by torch's FlopCounterMode) ÷ a plain GEMM's GFLOP/s measured in the
same run. All ratios come from one process; runs are interleaved.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, gemm_gflops, interleaved, markdown  # noqa: E402

from pointgcn.graph import knn  # noqa: E402
from pointgcn.graph.knn import knn_cluster  # noqa: E402
from pointgcn.models import build_model  # noqa: E402


def bench_knn(sizes, repeats):
    rows = []
    try:
        import torch_cluster  # noqa: F401
        have_cluster = True
    except ImportError:
        have_cluster = False
    for n in sizes:
        for c in (3, 64):
            x = torch.randn(1, c, n)
            fns = {"dense": lambda: knn(x, 16)}
            if have_cluster:
                fns["cluster"] = lambda: knn_cluster(x, 16)
            t = interleaved(fns, repeats)
            row = {"N": n, "C": c, "dense ms": t["dense"] * 1e3}
            if have_cluster:
                row["cluster ms"] = t["cluster"] * 1e3
                row["cluster/dense"] = t["cluster"] / t["dense"]
            rows.append(row)
    return rows


def naive_forward(model, x):
    """Same weights, textbook formulation (see module docstring)."""
    k = model.cfg["k"]

    def graph(f, d):
        dist = torch.cdist(f.transpose(1, 2), f.transpose(1, 2))
        return dist.topk(k * d, dim=-1, largest=False)[1][:, :, ::d]

    def edge(conv, f, idx):
        b, c, n = f.shape
        xj = torch.stack([f[i][:, idx[i]] for i in range(b)])           # (B, C, N, k)
        xi = f.unsqueeze(-1).expand_as(xj)
        w = conv.lin.weight.view(*conv.lin.weight.shape, 1, 1)
        z = F.conv2d(torch.cat([xi, xj - xi], 1), w, conv.lin.bias)     # (B, C', N, k)
        z = z.permute(0, 2, 3, 1)
        return conv.post(z).amax(2).transpose(1, 2)

    feats = [edge(model.head, x, graph(x[:, :3], 1))]
    for i, block in enumerate(model.backbone):
        feats.append(edge(block.conv, feats[-1], graph(feats[-1], block.graph.dilation))
                     + feats[-1])
    f = torch.cat(feats, 1)
    fusion = model.fusion(f, None)
    glob = fusion.amax(-1, keepdim=True).expand(-1, -1, f.shape[-1])
    return model._run_mlp(torch.cat([glob, f], 1))


def count_flops(model, x):
    """Model FLOPs; one thread so the kNN products (run in worker threads otherwise) count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        torch.set_num_threads(threads)
    return counter.get_total_flops()


def bench_resgcn28(repeats):
    model = build_model({"n_blocks": 28}).eval()
    x = torch.rand(1, 9, 4096)
    with torch.no_grad():
        agree = (naive_forward(model, x).argmax(1) == model(x).argmax(1)).float().mean().item()
        flops = count_flops(model, x)
        t = interleaved({"ours": lambda: model(x), "naive": lambda: naive_forward(model, x)},
                        repeats, warmup=1)
    gflops = gemm_gflops()
    floor = flops / (gflops * 1e9)
    return {"ours s": t["ours"], "naive s": t["naive"], "naive/ours": t["naive"] / t["ours"],
            "floor s": floor, "ours/floor": t["ours"] / floor, "GFLOP": flops / 1e9,
            "GEMM GFLOP/s": gflops, "label agreement": agree}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N up to 4096, fewer repeats")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else 5
    sizes = (1024, 4096) if args.quick else (1024, 4096, 16384)
    print(f"environment: {environment()}\n")
    knn_rows = bench_knn(sizes, repeats)
    print("kNN, k=16, B=1\n" + markdown(knn_rows) + "\n")
    res = bench_resgcn28(repeats)
    print("ResGCN-28 S3DIS forward, B=1, N=4096, eval\n" + markdown([res]))
    if args.json:
        args.json.write_text(json.dumps({"environment": environment(), "knn": knn_rows,
                                         "resgcn28": res}, indent=2))


if __name__ == "__main__":
    main()
