"""`pointgcn.graph.knn_graph` against torch_cluster's `knn_graph` (the backend PyG's own
`knn_graph` used before pyg-lib), on the same ragged batch, side by side in one run.

    PYTHONPATH=. python benchmarks/bench_knn_graph.py [--points 4096 --clouds 2 --k 16]

Synthetic data: Gaussian points, clouds of `points`, `points`·3/4, … (ragged). Rows: xyz and
64-d features, k and k·d = 4k (dilation 4); medians of interleaved repeats, the ratio
torch_cluster / ours, and whether the edge sets agree (a float32 near-tie may swap a
neighbour: the count of differing edges is printed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved, markdown  # noqa: E402

from pointgcn.graph import knn_graph  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=4096)
    ap.add_argument("--clouds", type=int, default=2)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    try:
        import torch_cluster
    except ImportError:
        sys.exit("torch_cluster is not installed (pip install --no-build-isolation torch-cluster)")
    g = torch.Generator().manual_seed(0)
    sizes = [max(1, args.points * (4 - i % 4) // 4) for i in range(args.clouds)]
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    rows = []
    for channels in (3, 64):
        x = torch.randn(sum(sizes), channels, generator=g)
        for k in (args.k, 4 * args.k):
            ours = lambda: knn_graph(x, k, batch)
            theirs = lambda: torch_cluster.knn_graph(x, k, batch)
            t = interleaved({"ours": ours, "torch_cluster": theirs}, repeats=args.repeats)
            a = set(map(tuple, ours().T.tolist()))
            b = set(map(tuple, theirs().T.tolist()))
            rows.append({"channels": channels, "k": k, "ours ms": 1e3 * t["ours"],
                         "torch_cluster ms": 1e3 * t["torch_cluster"],
                         "ratio": t["torch_cluster"] / t["ours"],
                         "edges differing": len(a ^ b) // 2, "edges": len(a)})
    print(f"clouds {sizes}; {environment()}")
    print(markdown(rows))


if __name__ == "__main__":
    main()
