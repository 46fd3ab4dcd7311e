"""Latency-bounded model choice: the most accurate candidate whose p95 fits the budget here.

Candidates come from a weights manifest (`{"models": [{"name", "file", "sha256", "task",
"accuracy": {"metric", "value", …}, …}]}`) or are given directly. Each is measured on the
device it will serve on (`device`: the CPU or a GPU) for (runtime, N, batch, threads) and the
p95 is cached in `$POINTGCN_CACHE/latency.json` (default `~/.cache/pointgcn`) under a key made
of the device fingerprint (CPU model, cores, the GPU's name and driver, torch/onnxruntime
versions, a hash of pointgcn's sources), the runtime, N, batch, threads and the file's sha256 —
a changed file, library, pointgcn version, GPU or machine is measured afresh.

On a GPU, runtime "onnx" runs onnxruntime's CUDA provider where onnxruntime-gpu is installed;
without it checkpoints are served eagerly on the GPU instead (`serving_runtime`), and .onnx
files, which only onnxruntime runs, are left out with the reason.

Ranking: higher accuracy first, then lower p95, then name; accuracies are only compared
within one metric (mixing mIoU and OA would be meaningless, so that is an error).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import cache_dir
from ..engine.device import device_name
from ..errors import FormatError, InputError, Setting
from ..io.atomic import atomic_path
from ..models.weights import MANIFEST, sha256, weights_dir
from .onnx_export import export_onnx
from .parity import random_clouds
from .runtime import has_cuda_provider
from .serve import LoadedModel, open_model
from .timing import device_fingerprint, latency_stats, time_interleaved

RUNTIMES = ("onnx", "torch")


@dataclass
class Candidate:
    name: str
    path: Path
    task: str | None = None
    metric: str | None = None
    accuracy: float | None = None
    sha256: str | None = None          # expected hash (manifest); verified before measuring
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: dict, base: Path = Path(".")) -> "Candidate":
        try:
            name = entry["name"]
            file = entry.get("file") or entry["path"]
        except KeyError as e:
            raise FormatError(f"candidate entry lacks {e.args[0]!r}: {entry}") from None
        acc = entry.get("accuracy") or {}
        if not isinstance(acc, dict):
            acc = {"metric": None, "value": acc}
        value = acc.get("value")
        return cls(name=name, path=(base / file) if not Path(file).is_absolute() else Path(file),
                   task=entry.get("task"), metric=acc.get("metric"),
                   accuracy=float(value) if value is not None else None,
                   sha256=entry.get("sha256"),
                   extra={k: v for k, v in entry.items()
                          if k not in ("name", "file", "path", "task", "accuracy", "sha256")})


def load_candidates(manifest: str | Path) -> list[Candidate]:
    """Candidates from a weights manifest; files are relative to the manifest's folder."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError(f"manifest not found: {manifest}")
    try:
        models = json.loads(manifest.read_text())["models"]
    except (ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{manifest}: not a weights manifest with a 'models' list ({e})") from e
    return [Candidate.from_entry(m, manifest.parent) for m in models]


class LatencyCache:
    """p95 latencies keyed by device + runtime + N + batch + threads + file hash."""

    def __init__(self, path: str | Path | None = None, fingerprint: dict | None = None,
                 device: str = "cpu"):
        self.path = Path(path) if path else cache_dir() / "latency.json"
        self.fingerprint = fingerprint or device_fingerprint(device)

    def key(self, sha: str, runtime: str, points: int, batch: int, threads: int | None) -> str:
        blob = json.dumps({"device": self.fingerprint, "runtime": runtime, "points": points,
                           "batch": batch, "threads": threads, "sha256": sha}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}  # no cache yet, or a damaged one: measure again

    def get(self, key: str) -> dict | None:
        return self._read().get(key)

    def put(self, key: str, value: dict) -> None:
        data = self._read()
        data[key] = value
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))


def serving_runtime(candidate: Candidate, runtime: str, device: str = "cpu") -> str | None:
    """The runtime `candidate` is measured and served with on `device`: "onnx" (onnxruntime;
    on a GPU its CUDA provider) or "torch" (eager); None when it cannot run there (an .onnx
    file on a GPU without onnxruntime-gpu)."""
    is_onnx = candidate.path.suffix.lower() == ".onnx"
    if is_onnx or runtime == "onnx":
        if device.startswith("cuda") and not has_cuda_provider():
            return None if is_onnx else "torch"  # eager CUDA serving is the fallback
        return "onnx"
    return runtime


def measure_candidate(candidate: Candidate, runtime: str, points: int, batch: int,
                      threads: int | None = None, runs: int = 10, device: str = "cpu") -> dict:
    """Latency stats of one candidate on random clouds (exports checkpoints for "onnx"); on a
    GPU each run includes copying the clouds there and the logits back, as serving does."""
    predictor = open_candidate(candidate, runtime, points, threads, device).predictor()
    least = getattr(predictor, "min_points", 1)
    if points < least:
        raise InputError(f"{candidate.name} needs ≥ {least} points, budget asks N={points}")
    x = random_clouds(batch, predictor.in_channels, points, seed=0)
    return latency_stats(time_interleaved({"m": lambda: predictor(x)}, runs, warmup=2)["m"])


def open_candidate(candidate: Candidate, runtime: str = "onnx", points: int = 4096,
                   threads: int | None = None, device: str = "cpu") -> LoadedModel:
    """A candidate opened the way it is measured and served on `device`: its .onnx file, its
    checkpoint in PyTorch, or (runtime "onnx") the checkpoint's export cached by file hash — a
    cache hit never opens the checkpoint."""
    provider = "cuda" if device.startswith("cuda") else "cpu"
    if candidate.path.suffix.lower() == ".onnx":
        return open_model(candidate.path, threads=threads, provider=provider)
    if runtime == "torch":
        return open_model(candidate.path, threads=threads, device=device)
    onnx_file = cache_dir() / "onnx" / f"{sha256(candidate.path)[:24]}.onnx"
    if not onnx_file.is_file():
        loaded = open_model(candidate.path)
        export_onnx(loaded.module, onnx_file, points=points, parity=False,
                    run_config=loaded.run_config, class_names=loaded.meta.get("class_names"))
    return open_model(onnx_file, threads=threads, provider=provider)


@dataclass
class Selection:
    choice: Candidate
    p95_ms: float
    budget_ms: float
    points: int
    batch: int
    runtime: str
    rows: list[dict]
    reason: str
    device: str = "cpu"

    def open(self, threads: int | None = None) -> LoadedModel:
        """The chosen model, opened the way it was measured."""
        return open_candidate(self.choice, self.runtime, self.points, threads, self.device)

    def to_dict(self) -> dict:
        return {"choice": self.choice.name, "path": str(self.choice.path),
                "p95_ms": self.p95_ms, "budget_ms": self.budget_ms, "points": self.points,
                "batch": self.batch, "runtime": self.runtime, "device": self.device,
                "candidates": self.rows, "reason": self.reason}


Measure = Callable[..., float]


def select_model(candidates: list[Candidate], budget_ms: float, *, points: int, batch: int = 1,
                 runtime: str = "onnx", task: str | None = None, in_channels: int | None = None,
                 threads: int | None = None, runs: int = 10, measure: Measure | None = None,
                 cache: LatencyCache | None | bool = None, device: str = "cpu") -> Selection:
    """Pick the most accurate candidate with p95 ≤ `budget_ms` on `device`; `InputError` if
    none fits.

    `task`/`in_channels` skip candidates that cannot serve the request (manifest fields).
    `measure(candidate, runtime=, points=, batch=, threads=)` → p95 ms replaces the real
    measurement (tests, or latency predicted by a regressor); `cache=False` disables caching.
    """
    device = device_name(device)
    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if not budget_ms > 0:
        raise InputError(f"the latency budget must be > 0 ms, got {budget_ms}")
    if not candidates:
        raise InputError("no candidate models to choose from")
    if cache is None or cache is True:
        cache = LatencyCache(device=device)
    rows, measured = [], []
    for cand in candidates:
        row = {"name": cand.name, "task": cand.task, "metric": cand.metric,
               "accuracy": cand.accuracy, "p95_ms": None, "cached": False}
        rows.append(row)
        if task and cand.task and cand.task != task:
            row["status"] = f"rejected: task {cand.task}, need {task}"
            continue
        channels = cand.extra.get("in_channels")
        if in_channels and channels and int(channels) != in_channels:
            row["status"] = f"rejected: takes {channels} channels, need {in_channels}"
            continue
        kind = serving_runtime(cand, runtime, device)
        if kind is None:
            row["status"] = "rejected: an .onnx file needs onnxruntime-gpu to run on the GPU"
            continue
        row["runtime"] = kind
        row["p95_ms"], row["cached"] = _p95(cand, kind, points, batch, threads, runs, measure,
                                            cache, device)
        measured.append((cand, row))
    if not measured:
        raise InputError(f"no candidate for task {task!r} with {in_channels or 'any'} input "
                         f"channels among {', '.join(c.name for c in candidates)}")
    fits = [(c, r) for c, r in measured if r["p95_ms"] <= budget_ms]
    for c, r in measured:
        if r["p95_ms"] > budget_ms:
            r["status"] = f"rejected: p95 {r['p95_ms']:.1f} ms > budget {budget_ms:g} ms"
    if not fits:
        c, r = min(measured, key=lambda t: t[1]["p95_ms"])
        raise InputError(f"no candidate meets {budget_ms:g} ms at N={points}; fastest is "
                         f"{c.name} at {r['p95_ms']:.1f} ms")
    metrics = sorted({c.metric for c, _ in fits if c.metric})
    if len(metrics) > 1:
        raise InputError(f"candidates report different accuracy metrics ({', '.join(metrics)}); "
                         "choose a task so that like is compared with like")
    ranked = sorted(fits, key=lambda t: (-(t[0].accuracy if t[0].accuracy is not None
                                           else float("-inf")), t[1]["p95_ms"], t[0].name))
    best, best_row = ranked[0]
    best_row["status"] = "picked"
    for c, r in ranked[1:]:
        if c.accuracy is None:
            r["status"] = "within budget, but no recorded accuracy"
        elif best.accuracy is not None and c.accuracy < best.accuracy:
            r["status"] = (f"within budget, less accurate ({c.accuracy:.4g} < "
                           f"{best.accuracy:.4g})")
        else:
            r["status"] = "within budget, equally accurate but slower or later by name"
    reason = (f"picked {best.name} ({best.metric or 'accuracy'} {_acc(best.accuracy)}, p95 "
              f"{best_row['p95_ms']:.1f} ms ≤ {budget_ms:g} ms at N={points}, batch {batch}, "
              f"{best_row['runtime']} on {device}): the most accurate of {len(fits)} "
              f"candidate(s) within budget\n" + _table(rows))
    return Selection(best, best_row["p95_ms"], budget_ms, points, batch, best_row["runtime"],
                     rows, reason, device)


def within_budget(budget_ms: float, *, task: str, points: int, runtime: str = "onnx",
                  threads: int | None = None, batch: int = 1, candidates=(),
                  device: str | None = "cpu") -> tuple[LoadedModel, str]:
    """(the model, the reason) of the most accurate shipped or given candidate whose p95
    latency at `points`, measured on `device` (the one it will serve on), fits `budget_ms`.
    `candidates` are extra manifests or candidates.json files (e.g. from a search)."""
    shipped = weights_dir() / MANIFEST
    pool = list(load_candidates(shipped)) if shipped.is_file() else []
    for extra in candidates:
        pool += load_candidates(extra)
    if not pool:
        raise InputError("no candidate models: no shipped weights and no {candidates} given",
                         candidates=Setting("candidates", "extra candidates"))
    sel = select_model(pool, budget_ms, points=points, batch=batch, runtime=runtime, task=task,
                       threads=threads, device=device)
    return sel.open(threads), sel.reason


def _p95(cand: Candidate, runtime: str, points: int, batch: int, threads: int | None,
         runs: int, measure: Measure | None, cache, device: str = "cpu") -> tuple[float, bool]:
    if not cand.path.is_file():
        raise InputError(f"candidate {cand.name}: file not found: {cand.path}")
    sha = sha256(cand.path)
    if cand.sha256 and cand.sha256 != sha:
        raise InputError(f"candidate {cand.name}: sha256 mismatch for {cand.path} "
                         f"(expected {cand.sha256[:12]}…, got {sha[:12]}…)")
    key = cache.key(sha, runtime, points, batch, threads) if cache else None
    hit = cache.get(key) if cache else None
    if hit is not None:
        return float(hit["p95_ms"]), True
    if measure is not None:
        p95, stats = float(measure(cand, runtime=runtime, points=points, batch=batch,
                                   threads=threads)), None
    else:
        stats = measure_candidate(cand, runtime, points, batch, threads, runs, device)
        p95 = stats["p95_ms"]
    if cache:
        cache.put(key, {"p95_ms": p95, "name": cand.name, "runtime": runtime, "points": points,
                        "batch": batch, "threads": threads, "stats": stats,
                        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return p95, False


def _acc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _table(rows: list[dict]) -> str:
    lines = [f"  {'candidate':20s} {'accuracy':>14s} {'p95 ms':>9s}  status"]
    for r in rows:
        acc = f"{r['metric'] or ''} {_acc(r['accuracy'])}".strip()
        p95 = "—" if r["p95_ms"] is None else f"{r['p95_ms']:.1f}" + ("*" if r["cached"] else "")
        lines.append(f"  {r['name']:20s} {acc:>14s} {p95:>9s}  {r.get('status', '')}")
    lines.append("  (* = cached measurement for this device, runtime, N and batch)")
    return "\n".join(lines)
