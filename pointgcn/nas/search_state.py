"""A search's resumable state, so that `pointgcn search CONFIG --resume RUN_DIR` continues a
stopped or killed search to exactly the result of an uninterrupted one.

Written atomically to `<out>/search_state.pt` after every epoch (so after every decision):
supernet weights and α, both optimisers and the learning-rate schedule, SGAS's decisions and
stability history, the batch size, the position in the validation stream α trains on, every
rank's torch RNG (dropout, stochastic dilation), the log so far and the last validation.
Everything else is a function of (seed, epoch). A killed epoch is run again from its start.

A resumed search must be the same search: the resolved config (data, supernet, search
settings, seed, LC-NAS `final:`) is stored, and a different one is refused before anything
is loaded, as are another process count or intra-op thread count (same seed, same result at
each thread count, but matmul and norm kernels split their sums by it). Loads with `weights_only=True`, like every checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..engine.distributed import gather_objects
from ..errors import FormatError, InputError
from ..io.atomic import atomic_path
from ..models.checkpoint import atomic_torch_save, read_checkpoint

STATE_FILE = "search_state.pt"
FORMAT = "pointgcn-search-state"


def state_path(out: str | Path) -> Path:
    return Path(out) / STATE_FILE


def save_state(searcher) -> None:
    """Every rank takes part (the RNG states are gathered); rank 0 writes."""
    rng = gather_objects(searcher.d, torch.get_rng_state())
    if not searcher.d.main:
        return
    s = searcher
    atomic_torch_save({
        "format": FORMAT, "version": 1, "config": plain(s.resolved_config()),
        "world": s.d.world, "threads": torch.get_num_threads(), "epoch": s.epoch,
        "model": s.model.state_dict(),
        "w_opt": s.w_opt.state_dict(), "a_opt": s.a_opt.state_dict(),
        "sched": s.sched.state_dict(), "selected": list(s.decisions.selected),
        "history": [h.tolist() for h in s.decisions.history], "decisions": s.decision_log,
        "batch_size": s.batch_size, "val_stream": dict(s.val_stream), "rng": rng,
        "log": s.log_rows, "val": s.last_val, "elapsed_s": s.elapsed_s,
    }, state_path(s.out))


def load_state(searcher) -> None:
    """Put `searcher` where the saved search stopped; refuse another config, process count or
    thread count, and a damaged file, before the run folder is touched."""
    s = searcher
    path = state_path(s.out)
    state = read_checkpoint(path)
    if state.get("format") != FORMAT:
        raise FormatError(f"{path}: not a search state (format {state.get('format')!r})")
    differ = differences(state.get("config") or {}, plain(s.resolved_config()))
    if differ:
        raise InputError(f"{s.out} was searched with another config ({'; '.join(differ[:3])}"
                         f"{'; …' if len(differ) > 3 else ''}); resume with the config, "
                         "overrides and options it started with")
    if state.get("world") != s.d.world:
        raise InputError(f"{path}: saved with {state.get('world')} processes, resuming with "
                         f"{s.d.world}; resume with the same process count")
    if state.get("threads") != torch.get_num_threads():  # kernels split sums by thread count
        raise InputError(f"{path}: saved with --threads {state.get('threads')}, resuming with "
                         f"{torch.get_num_threads()}; give --threads {state.get('threads')} "
                         "(results differ across thread counts)")
    try:
        s.model.load_state_dict(state["model"])
        s.w_opt.load_state_dict(state["w_opt"])
        s.a_opt.load_state_dict(state["a_opt"])
        s.sched.load_state_dict(state["sched"])
        s.decisions.selected = [int(v) for v in state["selected"]]
        s.decisions.history = [np.asarray(h, np.float64) for h in state["history"]]
        torch.set_rng_state(state["rng"][s.d.rank])
        s.epoch, s.batch_size = int(state["epoch"]), int(state["batch_size"])
        s.val_stream = {k: int(state["val_stream"][k]) for k in ("cycle", "size", "pos")}
        s.decision_log, s.log_rows = list(state["decisions"]), list(state["log"])
        s.last_val, s.elapsed_s = dict(state["val"]), float(state["elapsed_s"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise FormatError(f"{path}: a damaged search state ({type(e).__name__})") from None
    s.apply_decisions()
    if s.d.main:  # the log as of the state: lines of an epoch that was cut short go
        with atomic_path(s.out / "search_log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in s.log_rows))


def plain(obj):
    """JSON's view of a config (tuples → lists), the form stored and compared."""
    return json.loads(json.dumps(obj, default=str))


def differences(old, new, prefix: str = "") -> list[str]:
    """`key: old → new` for every dotted key whose value differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} → {new!r}"]
