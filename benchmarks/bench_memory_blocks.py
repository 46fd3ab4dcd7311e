"""Parameters, peak training memory and step time of res, rev, wt-rev and deq backbones.

    PYTHONPATH=. python benchmarks/bench_memory_blocks.py [--steps 2] [--threads 2] [--json F]

Each configuration runs in a fresh Python process (so one run's heap cannot hide in another's)
that builds a segmentation DeepGCN (N 1024, C 64, k 16, B 1, no dilation: k·d must stay ≤ N
at 1001 blocks) and takes `--steps` SGD training steps; the parent reads the child's peak RSS
from `os.wait4` (ru_maxrss of that child alone) — the memory a user of the Python API sees,
interpreter and torch included, with no allocator environment variables. The child also
reports its RSS before the first step, so "step MB" is what training adds. Step time is the
last step's (the first pays for first-touch allocation). "blocks" counts backbone blocks
(the model's n_blocks is one more: the head). Ratios are to the 7-block model of
the same kind (deq: to 10 iterations). Rows marked "glibc default" run with
POINTGCN_MALLOPT=0, i.e. without the mmap threshold `import pointgcn` sets, to show why it
is set. The CPU is shared: times are noisy, memory is not.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, markdown  # noqa: E402

CHILD = r"""
import json, sys, time, torch
from pointgcn.models import build_model

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

block, depth, iters, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = dict(task="segmentation", in_channels=9, n_classes=13, n_blocks=depth + 1, channels=64,
           k=16, block=block, use_dilation=False, stochastic=False, fusion_channels=64,
           prediction=[64], dropout=0.0, fusion_input="last")
if block == "deq":
    cfg["deq"] = dict(tol=0.0, max_iter=iters)  # tol 0: exactly `iters` iterations each way
model = build_model(cfg).train()
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x, y = torch.randn(1, 9, 1024), torch.randint(0, 13, (1, 1024))
before = rss_kb()
times = []
for _ in range(steps):
    t = time.perf_counter()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    times.append(time.perf_counter() - t)
print(json.dumps({"params": sum(p.numel() for p in model.parameters()),
                  "backbone_params": sum(p.numel() for p in model.backbone.parameters()),
                  "before_kb": before, "step_s": times[-1]}))
"""


def run(block: str, depth: int, iters: int, steps: int, threads: int,
        default_malloc: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_MMAP_THRESHOLD_", "POINTGCN_MALLOPT")}
    if default_malloc:
        env["POINTGCN_MALLOPT"] = "0"
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, block, str(depth), str(iters),
                                 str(steps), str(threads)], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not all children's
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode or not out.strip():
            err.seek(0)
            raise RuntimeError(f"{block}-{depth}: {err.read().strip().splitlines()[-1:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_kb": usage.ru_maxrss}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--depths", type=int, nargs="*", default=[7, 28, 112])
    p.add_argument("--iters", type=int, nargs="*", default=[10, 30])
    p.add_argument("--deep", type=int, default=1000, help="backbone blocks of the very deep runs "
                   "(1000 + the head: a 1001-layer model; 0: skip)")
    p.add_argument("--deep-blocks", nargs="+", default=["rev"], help="kinds run that deep")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    plan = [(b, d, 0, False) for b in ("res", "rev", "wt-rev") for d in args.depths]
    plan += [("deq", 1, i, False) for i in args.iters]
    if args.depths:
        plan += [("rev", d, 0, True) for d in sorted({min(args.depths), max(args.depths)})]
    if args.deep:
        plan += [(b, args.deep, 0, False) for b in args.deep_blocks]
    rows, base = [], {}
    for block, depth, iters, default in plan:
        r = run(block, depth, iters, args.steps, args.threads, default)
        key = (block, default)
        base.setdefault(key, r["peak_kb"])
        rows.append({"block": block, "blocks": depth if block != "deq" else "-",
                     "iters": iters or "-", "malloc": "glibc default" if default else "pointgcn",
                     "params": r["params"], "backbone params": r["backbone_params"],
                     "peak MB": r["peak_kb"] / 1024,
                     "step MB": (r["peak_kb"] - r["before_kb"]) / 1024,
                     "× first": r["peak_kb"] / base[key], "step s": r["step_s"]})
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
        if args.json:  # after every row: a long run stopped early keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{environment()}, {args.threads} threads, {args.steps} steps per configuration")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
