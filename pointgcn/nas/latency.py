"""Latency data: sample cell architectures, measure real inference latency, grow a jsonl file.

Sampling: each of the 9 supernet edges gets one of the 10 ops uniformly (the space LC-NAS's
regressor reads, E(α) = the flattened 9×10 one-hot). A `none` edge is absent from the measured
network (it costs nothing, which is what the encoding says); a node whose edges are all `none`
outputs zeros, and an input state no kept edge reads is not preprocessed. Genotypes (two kept
edges per node) are points of this space, so the regressor prices them directly.

Timing is made robust for shared, noisy CPUs: a fixed intra-op thread count (1 by default)
timed by process CPU time (see `measure_group`), eval mode without autograd, warm-up runs,
and *interleaved* rounds — a group of architectures is built and, round after round, each
runs once in a shuffled order — so a burst of load from another process hits every
architecture of the group alike instead of biasing one. The row
stores the median (and min/quartiles) over the rounds. Every group also times one fixed
reference architecture (`REFERENCE_OPS`); its median is stored with each row, so the regressor
can divide out slow drifts of the machine between groups (measured here: the spread of
repeated medians of the same models drops from ≈ 2 % to ≈ 1 % after that normalisation).

On a GPU (`device="cuda"`): the models and input live on the GPU, warm-up runs end with a
synchronisation, and each run is timed by CUDA events recorded around it and synchronised
(the GPU's own clock: no host scheduling noise); onnxruntime runs its CUDA provider, timed by
the wall clock. Rows are keyed by the GPU's name and driver (the device fingerprint), so a
regressor, an LC-NAS target and a budget are in milliseconds of one device.

Rows go to a jsonl file (`latency_file`: its format, reading, and the checks before an
append).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..engine.device import describe_device, device_name, resolve_device, synchronize
from ..errors import ConfigError, InputError
from ..export.onnx_export import export_onnx
from ..export.runtime import make_session, providers_for
from ..export.timing import device_fingerprint as base_fingerprint
from .genotype import N_EDGES, Genotype, encode_ops
from .latency_file import CONFIG_DEFAULTS, append_row, prepare_append
from .network import NASNetwork
from .ops import PRIMITIVES

RUNTIMES = ("torch", "onnxruntime")
# A mid-cost cell timed in every group as the yardstick for machine drift.
REFERENCE_OPS = ["edge_conv", "conv_1x1", "mr_conv", "skip_connect", "none", "gat", "gin",
                 "none", "conv_1x1"]


def resolve_config(cfg: dict | None = None) -> dict:
    c = {**CONFIG_DEFAULTS, **(cfg or {})}
    unknown = set(c) - set(CONFIG_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown latency config keys: {sorted(unknown)}")
    for key in ("points", "width", "cells", "k", "in_channels", "n_classes", "batch",
                "stem_multiplier", "fusion_channels"):
        if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] < 1:
            raise ConfigError(f"latency config {key} must be a positive integer, got {c[key]!r}")
    c["prediction"] = list(c["prediction"])
    if not all(isinstance(v, int) and v >= 1 for v in c["prediction"]):
        raise ConfigError(f"latency config prediction must be positive widths, "
                          f"got {c['prediction']!r}")
    if c["k"] * c["cells"] > c["points"]:
        raise ConfigError(f"{c['cells']} cells with k={c['k']} need k·dilation ≤ points; "
                          f"{c['points']} points are too few")
    return c


SAMPLINGS = ("uniform", "stratified", "sparse")
GRAPH_FREE = ("none", "skip_connect", "conv_1x1")


def sample_edge_ops(rng: np.random.Generator, sampling: str = "uniform") -> list[str]:
    """One op per edge. `uniform`: each of the 10 ops with probability 1/10 (the space as
    LC-NAS samples it). `stratified`: the number of edges carrying a graph op is uniform in
    0…9, then ops are uniform within {graph ops} / {none, skip, 1×1} — uniform sampling almost
    never yields a cell without graph ops (0.3⁹ ≈ 2·10⁻⁵), yet those skip the kNN and are the
    fast cells a tight latency target needs, so a regressor needs examples of them.
    `sparse`: 0, 1 or 2 graph ops. The first graph op of a cell adds the cell's kNN (here ≈ 3×
    the whole cost of a graph-free cell), and an MLP only learns that step for an (edge, op)
    input it has seen as the lone graph op: 7 ops × 9 edges = 63 such inputs to cover."""
    if sampling == "uniform":
        return [PRIMITIVES[i] for i in rng.integers(0, len(PRIMITIVES), N_EDGES)]
    if sampling not in SAMPLINGS:
        raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    graph_ops = [p for p in PRIMITIVES if p not in GRAPH_FREE]
    n_graph = int(rng.integers(0, (N_EDGES if sampling == "stratified" else 2) + 1))
    on_graph = set(rng.choice(N_EDGES, n_graph, replace=False).tolist())
    return [str(rng.choice(graph_ops)) if e in on_graph else str(rng.choice(GRAPH_FREE))
            for e in range(N_EDGES)]


def build_network(ops_or_genotype, config: dict) -> torch.nn.Module:
    """The eval-mode stand-alone network of an edge assignment (or genotype) at `config`."""
    c = resolve_config(config)
    g = ops_or_genotype if isinstance(ops_or_genotype, Genotype) else \
        Genotype.from_edge_ops(list(ops_or_genotype))
    model = NASNetwork({"genotype": g.to_dict(), "cells": c["cells"], "channels": c["width"],
                        "k": c["k"], "in_channels": c["in_channels"],
                        "n_classes": c["n_classes"], "task": c["task"],
                        "stem_multiplier": c["stem_multiplier"],
                        "fusion_channels": c["fusion_channels"], "prediction": c["prediction"],
                        "dropout": 0.0})
    return model.eval()


def device_fingerprint(runtime: str, threads: int, device: str = "cpu") -> dict:
    """`pointgcn.export.timing.device_fingerprint` plus what a latency row needs: machine and
    OS, and an `id` over device, runtime and threads (the regressor fits one device at a time).
    A torch row leaves out the onnxruntime version, which cannot change its latency."""
    fp = base_fingerprint(device)
    if runtime != "onnxruntime":
        fp.pop("onnxruntime", None)
    fp.update(machine=platform.machine(), system=platform.system())
    fp["id"] = hashlib.sha1(json.dumps([fp, runtime, threads], sort_keys=True).encode()
                            ).hexdigest()[:12]
    return fp


# ---- runners: a callable that runs one inference ----------------------------------------
def _torch_runner(model: torch.nn.Module, x: torch.Tensor):
    def run():
        with torch.inference_mode():
            model(x)
    return run


def _onnx_runner(model: torch.nn.Module, x: torch.Tensor, threads: int, workdir: Path,
                 device: torch.device = torch.device("cpu")):
    path = export_onnx_file(model, x, workdir / f"m{id(model)}.onnx")
    sess = make_session(path, threads, providers=providers_for(device.type))
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return lambda: sess.run(None, feed)


def device_of(fingerprint: dict | None) -> str:
    """The device a latency fingerprint (a row's, a regressor's) was measured on: "cuda" or
    "cpu"."""
    return "cuda" if (fingerprint or {}).get("device", "cpu").startswith("cuda") else "cpu"


def check_same_gpu(fingerprint: dict | None) -> str:
    """The device to measure on so that latencies compare with `fingerprint`'s: its GPU must
    be this machine's GPU (one-line InputError otherwise)."""
    if device_of(fingerprint) == "cpu":
        return "cpu"
    want = fingerprint.get("cuda")
    if not torch.cuda.is_available():
        raise InputError(f"these latencies were measured on the GPU {want}; this machine has "
                         "no GPU to measure on")
    have = describe_device(device_name("cuda"))["name"]
    if have != want:
        raise InputError(f"these latencies were measured on {want}, this machine's GPU is "
                         f"{have}; milliseconds of different GPUs do not compare")
    return "cuda"


def _timed(run, clock: str) -> tuple[float, float]:
    """(ms by `clock`, wall ms) of one run; "cuda": CUDA events around it, synchronised."""
    if clock == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        w0 = time.perf_counter_ns()
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end), (time.perf_counter_ns() - w0) / 1e6
    w0, c0 = time.perf_counter_ns(), time.process_time_ns()
    run()
    cpu, wall = (time.process_time_ns() - c0) / 1e6, (time.perf_counter_ns() - w0) / 1e6
    return (cpu if clock == "cpu" else wall), wall


def export_onnx_file(model: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """ONNX file of `model` traced at the shape of `x` (N and batch stay dynamic) by the
    project's exporter, without a parity run (timing only needs the graph)."""
    export_onnx(model, path, points=x.shape[2], batch=x.shape[0], parity=False)
    return path


@contextlib.contextmanager
def torch_threads(n: int):
    """Run with `n` intra-op threads (oversubscribed spin-waiting threads are slower on a
    busy machine than one thread), then restore."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def measure_group(models: list[torch.nn.Module], config: dict, runtime: str = "torch",
                  threads: int = 1, warmup: int = 3, rounds: int = 20,
                  seed: int = 0, device: str = "cpu") -> list[dict]:
    """Interleaved timing of several models on the same input: per model {median, min, …} ms.

    Clock: with one thread, the process CPU time of each run — on an idle core it equals the
    wall time, and unlike the wall time it leaves out the slices the scheduler gives other
    processes (measured here under load: spread of repeated medians ≈ 2 % vs 3–28 % for wall
    time). With more threads CPU time would add up the threads, so the wall clock is used.
    PyTorch on a GPU: CUDA events (module doc).
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if rounds < 1 or warmup < 0 or threads < 1:
        raise ConfigError("rounds and threads must be ≥ 1 and warmup ≥ 0")
    c = resolve_config(config)
    place = resolve_device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(c["batch"], c["in_channels"], c["points"], generator=gen) * 2 - 1
    rng = np.random.default_rng(seed)
    if place.type == "cuda":
        clock = "cuda" if runtime == "torch" else "wall"
    else:
        clock = "cpu" if threads == 1 else "wall"
    with torch_threads(threads), tempfile.TemporaryDirectory() as tmp:
        runners = [_torch_runner(m.to(place), x.to(place)) if runtime == "torch" else
                   _onnx_runner(m, x, threads, Path(tmp), place) for m in models]
        for run in runners:
            for _ in range(warmup):
                run()
        synchronize(place)
        main = np.zeros((rounds, len(runners)))
        wall = np.zeros((rounds, len(runners)))
        for r in range(rounds):
            for i in rng.permutation(len(runners)):
                main[r, i], wall[r, i] = _timed(runners[i], clock)
    return [{"median": float(np.median(t)), "min": float(t.min()),
             "p25": float(np.percentile(t, 25)), "p75": float(np.percentile(t, 75)),
             "wall_median": float(np.median(w)), "clock": clock, "rounds": rounds,
             "warmup": warmup} for t, w in zip(main.T, wall.T)]


def measure(ops_or_genotype, config: dict, runtime: str = "torch", threads: int = 1,
            warmup: int = 5, rounds: int = 30, seed: int = 0, device: str = "cpu") -> dict:
    """Latency stats (ms) of one architecture, interleaved with the reference architecture
    (its median is returned as `reference_ms`)."""
    torch.manual_seed(seed)
    models = [build_network(ops_or_genotype, config), build_network(REFERENCE_OPS, config)]
    stats, ref = measure_group(models, config, runtime, threads, warmup, rounds, seed, device)
    return {**stats, "reference_ms": ref["median"]}


def measure_model(model: torch.nn.Module, config: dict, runtime: str = "torch",
                  threads: int = 1, warmup: int = 5, rounds: int = 30, seed: int = 0,
                  device: str = "cpu") -> dict:
    """Latency stats (ms) of a built (e.g. trained) model, interleaved with the reference."""
    torch.manual_seed(seed)
    ref = build_network(REFERENCE_OPS, config)
    stats, ref_stats = measure_group([model.eval(), ref], config, runtime, threads, warmup,
                                     rounds, seed, device)
    return {**stats, "reference_ms": ref_stats["median"]}


def collect(out: str | Path, n: int, config: dict | None = None, runtime: str = "torch",
            threads: int = 1, warmup: int = 3, rounds: int = 20, group: int = 8,
            seed: int | None = None, progress: bool = True, archs: list | None = None,
            sampling: str = "uniform", device: str = "cpu") -> int:
    """Measure `n` sampled architectures (or the given `archs`) on `device` and append rows."""
    c = resolve_config(config)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if min(n, group, rounds, threads) < 1 or warmup < 0:  # before the file is touched
        raise ConfigError("n, group, rounds and threads must be ≥ 1 and warmup ≥ 0")
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    rng = np.random.default_rng(seed)
    archs_given = archs
    archs = [list(a) for a in archs] if archs is not None else \
        [sample_edge_ops(rng, sampling) for _ in range(n)]
    for ops in archs:  # an unknown op or a wrong edge count fails before the file is touched
        Genotype.from_edge_ops(ops)
    fingerprint = device_fingerprint(runtime, threads, device)
    prepare_append(Path(out), c, runtime, fingerprint)
    bar = None
    if progress:
        bar = tqdm(total=len(archs), desc=f"latency ({runtime})", unit="arch", dynamic_ncols=True)
    written = 0
    for start in range(0, len(archs), group):
        chunk = archs[start:start + group]
        torch.manual_seed(seed + start)
        models = [build_network(ops, c) for ops in chunk + [REFERENCE_OPS]]
        *stats, ref = measure_group(models, c, runtime, threads, warmup, rounds, seed + start,
                                    device)
        for ops, st in zip(chunk, stats):
            row = {"encoding": encode_ops(ops).astype(int).tolist(), "ops": ops, "config": c,
                   "device": fingerprint, "runtime": runtime, "threads": threads,
                   "sampling": sampling if archs_given is None else "given",
                   "latency_ms": st["median"], "stats": st, "reference_ms": ref["median"],
                   "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            append_row(out, row)
            written += 1
        if bar is not None:
            bar.update(len(chunk))
            bar.set_postfix(last_ms=f"{stats[-1]['median']:.2f}")
    if bar is not None:
        bar.close()
    return written
