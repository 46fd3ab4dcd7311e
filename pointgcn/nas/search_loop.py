"""The bi-level search loop shared by SGAS and LC-NAS (first-order, as in the SGAS code).

Per training batch: one α step on a batch of the held-out validation split (Adam; for LC-NAS
plus the latency loss on E(α)), then one weight step on the training batch (SGD, gradient
clipping). Per epoch: validation accuracy of the supernet, the SGAS edge scores, and at a
decision epoch one edge decision, after which the batch size grows by `batch_increase`.

Distributed (`torchrun --nproc_per_node=P`): every rank holds the whole supernet, takes its
shard of every epoch's order of both splits, and averages the gradients of w and α over ranks
before each step (one all-reduce of the flattened gradients per step), so α, and hence every
decision, is the same on all ranks; BatchNorm buffers are taken from rank 0 each epoch, and a
checksum of α is compared across ranks at each decision. Only rank 0 writes files.

After every epoch the state to resume from goes to `search_state.pt` (`search_state`).

Config `search:` section (defaults = the SGAS point-cloud code):
    method: sgas | lcnas     criterion: 1 | 2     epochs: null (= warmup + freq·5 + post + 1)
    warmup_epochs: 9   decision_freq: 7   post_epochs: 5   history_size: 4
    batch_size: 28   batch_increase: 4   lr: 0.005   lr_min: 0.0001   momentum: 0.9
    weight_decay: 0.0003   grad_clip: 5   arch_lr: 0.0003   arch_weight_decay: 0.001
    arch_betas: [0.5, 0.999]   max_batches: null (cap on training batches per epoch)
    latreg: null   target_ms: null   lambda: 0.0   encoding: upper | derived | argmax   (LC-NAS)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import check_int, check_number, dump_config
from ..engine.distributed import Dist, epoch_order, gather_objects
from ..engine.task_metrics import KEY_METRIC, TaskMetrics
from ..engine.batches import collate
from ..errors import ConfigError
from ..io.atomic import atomic_path
from .genotype import Genotype, save_genotype
from .lcnas import ENCODINGS, latency_loss, search_encoding
from .network import SearchNetwork
from .search_state import load_state, save_state
from .sgas import DecisionState, is_decision_epoch, schedule_length

SEARCH_DEFAULTS = dict(
    method="sgas", criterion=1, epochs=None, warmup_epochs=9, decision_freq=7, post_epochs=5,
    history_size=4, batch_size=28, batch_increase=4, eval_batch_size=None, lr=0.005,
    lr_min=1e-4, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, arch_lr=3e-4,
    arch_weight_decay=1e-3, arch_betas=[0.5, 0.999], max_batches=None, latreg=None,
    target_ms=None, encoding="upper", **{"lambda": 0.0},
)
METHODS = ("sgas", "lcnas")


def resolve_search(cfg: dict) -> dict:
    unknown = set(cfg) - set(SEARCH_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown search keys: {', '.join(sorted(unknown))}")
    s = {**SEARCH_DEFAULTS, **cfg}
    if s["method"] not in METHODS:
        raise ConfigError(f"search.method must be one of {METHODS}, got {s['method']!r}")
    if s["criterion"] not in (1, 2):
        raise ConfigError(f"search.criterion must be 1 or 2, got {s['criterion']!r}")
    for key in ("warmup_epochs", "post_epochs", "batch_increase"):
        if not isinstance(s[key], int) or s[key] < 0:
            raise ConfigError(f"search.{key} must be an integer ≥ 0, got {s[key]!r}")
    for key in ("decision_freq", "batch_size", "history_size"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise ConfigError(f"search.{key} must be an integer ≥ 1, got {s[key]!r}")
    if s["epochs"] is None:
        s["epochs"] = schedule_length(s["warmup_epochs"], s["decision_freq"], s["post_epochs"])
    if not isinstance(s["epochs"], int) or s["epochs"] < 1:
        raise ConfigError(f"search.epochs must be a positive integer, got {s['epochs']!r}")
    for key in ("lr", "lr_min", "momentum", "weight_decay", "grad_clip", "arch_lr",
                "arch_weight_decay", "lambda"):
        if s[key] is None and key != "grad_clip":
            raise ConfigError(f"search.{key} must be a number ≥ 0, got None")
        check_number(s, key, "search")
    for key in ("lr", "arch_lr"):
        if not s[key] > 0:
            raise ConfigError(f"search.{key} must be a number > 0, got {s[key]!r}")
    check_int(s, "max_batches", "search")
    check_int(s, "eval_batch_size", "search")
    betas = s["arch_betas"]
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                    for b in betas)):
        raise ConfigError(f"search.arch_betas must be two numbers in [0, 1), got {betas!r}")
    if s["encoding"] not in ENCODINGS:
        raise ConfigError(f"search.encoding must be one of {ENCODINGS}, got {s['encoding']!r}")
    if s["method"] == "lcnas":
        if not s["latreg"]:
            raise ConfigError("LC-NAS needs a latency regressor: --latreg FILE "
                              "(from `pointgcn latency fit`)")
        if s["target_ms"] is None and not s["lambda"]:
            raise ConfigError("LC-NAS needs --target-ms T and/or --lambda L > 0")
        check_number(s, "target_ms", "search")
        if s["target_ms"] is not None and not s["target_ms"] > 0:
            raise ConfigError(f"target latency must be positive, got {s['target_ms']}")
        if s["target_ms"] is not None and not s["lambda"]:
            s["lambda"] = 1.0
    return s


def allreduce_mean(d: Dist, tensors: list[torch.Tensor]) -> None:
    """Average tensors in place over ranks with one all-reduce of their concatenation."""
    if not d.enabled or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


class Searcher:
    def __init__(self, cfg: dict, out_dir, data, d: Dist | None = None, progress: bool = True,
                 latreg=None, deploy_config: dict | None = None, resume: bool = False):
        """`resume`: continue from `out_dir/search_state.pt` (see `search_state`)."""
        self.cfg, self.out, self.data, self.progress = cfg, Path(out_dir), data, progress
        self.d = d or Dist()
        self.s = resolve_search(cfg.get("search", {}))
        self.seed = int(cfg.get("seed", 0))
        model_cfg = dict(cfg.get("model", {}))
        model_cfg.pop("name", None)
        model_cfg.setdefault("in_channels", data.in_channels)
        model_cfg.setdefault("n_classes", len(data.class_names))
        model_cfg.setdefault("task", data.task)
        torch.manual_seed(self.seed)  # the same initial supernet on every rank
        self.model = SearchNetwork(model_cfg)
        self._broadcast(self.model.state_dict().values())
        torch.manual_seed(self.seed + 1000 * self.d.rank)  # per-rank stochastic dilation/dropout
        self.task = self.model.cfg["task"]
        self.key = KEY_METRIC[self.task]
        s = self.s
        self.w_opt = torch.optim.SGD(self.model.weight_parameters(), s["lr"],
                                     momentum=s["momentum"], weight_decay=s["weight_decay"])
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, s["epochs"],
                                                                eta_min=s["lr_min"])
        self.a_opt = torch.optim.Adam(self.model.arch_parameters(), s["arch_lr"],
                                      betas=tuple(s["arch_betas"]),
                                      weight_decay=s["arch_weight_decay"])
        self.decisions = DecisionState(s["criterion"], s["history_size"])
        self.latreg, self.deploy = latreg, deploy_config or {}
        self.lat_extras = latreg.extras_for(self.deploy) if latreg is not None else None
        self.batch_size = s["batch_size"]
        # where α's validation stream stands: cycle (its seeded order), batch size, next batch
        self.val_stream = {"cycle": -1, "size": self.batch_size, "pos": 0}
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.epoch, self.elapsed_s, self.last_val = 0, 0.0, {}
        self.decision_log: list[dict] = []
        self.log_rows: list[dict] = []
        self._files_started = False  # search_config.yaml / search_log.jsonl (`_start_files`)
        if resume:
            load_state(self)
            self._files_started = True

    # ---- helpers ------------------------------------------------------------------------
    def _broadcast(self, tensors) -> None:
        if self.d.enabled:
            for t in tensors:
                dist.broadcast(t.data if hasattr(t, "data") else t, src=0)

    @staticmethod
    def _split(order: np.ndarray, size: int, train: bool = False) -> list[np.ndarray]:
        """Index batches of `order`; in training a last batch of one sample is left out
        (BatchNorm cannot normalise one pooled vector per channel)."""
        parts = [order[s:s + size] for s in range(0, len(order), size)]
        if train and len(parts) > 1 and len(parts[-1]) < 2:
            parts.pop()
        return parts

    def _batches(self, dataset, order: np.ndarray, size: int, train: bool = False):
        for part in self._split(order, size, train):
            yield collate([dataset[int(i)] for i in part])

    def _next_val_batch(self):
        """α's next validation batch: cycle after cycle over the split, each cycle in its own
        seeded order and batched at the batch size of its start."""
        v = self.val_stream
        if v["cycle"] < 0 or v["pos"] >= len(self._val_cycle(v)):
            v.update(cycle=v["cycle"] + 1, size=self.batch_size, pos=0)
        v["pos"] += 1
        return collate([self.data.val[int(i)] for i in self._val_cycle(v)[v["pos"] - 1]])

    def _val_cycle(self, v: dict) -> list[np.ndarray]:
        order = epoch_order(len(self.data.val), self.seed + 1, v["cycle"], True, self.d)
        return self._split(order, v["size"], train=True)

    def _active_alphas(self) -> list[torch.nn.Parameter]:
        return [a for a in self.model.alphas if a.requires_grad]

    def predicted_latency(self, with_grad: bool = False) -> torch.Tensor | None:
        if self.latreg is None:
            return None
        with torch.set_grad_enabled(with_grad):
            enc = search_encoding(self.model.alpha_matrix(), self.model.selected,
                                  self.s["encoding"])
            return self.latreg(enc, self.lat_extras)

    # ---- steps --------------------------------------------------------------------------
    def _arch_step(self, feats, labels) -> float | None:
        active = self._active_alphas()
        if not active:
            return None
        loss = self.loss_fn(self.model(feats), labels)
        if self.latreg is not None:
            loss = loss + latency_loss(self.predicted_latency(True), self.s["lambda"],
                                       self.s["target_ms"])
        grads = torch.autograd.grad(loss, active)
        grads = [g.clone() for g in grads]
        allreduce_mean(self.d, grads)
        for a, g in zip(active, grads):
            a.grad = g
        self.a_opt.step()
        for a in self.model.alphas:
            a.grad = None
        return loss.item()

    def _weight_step(self, feats, labels):
        active = self._active_alphas()
        for a in active:  # α is a constant in the weight step
            a.requires_grad_(False)
        try:
            logits = self.model(feats)
            loss = self.loss_fn(logits, labels)
            self.w_opt.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            for a in active:
                a.requires_grad_(True)
        params = [p for p in self.model.weight_parameters() if p.grad is not None]
        allreduce_mean(self.d, [p.grad for p in params])
        if self.s["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, self.s["grad_clip"])
        self.w_opt.step()
        return loss.item(), logits.detach()

    def _metrics(self) -> TaskMetrics:
        return TaskMetrics(self.task, self.model.cfg["n_classes"], self.data.class_names)

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        if hasattr(self.data.train, "set_epoch"):
            self.data.train.set_epoch(epoch)
        order = epoch_order(len(self.data.train), self.seed, epoch, True, self.d)
        n_batches = len(self._split(order, self.batch_size, train=True))
        if self.s["max_batches"]:
            n_batches = min(n_batches, self.s["max_batches"])
        metrics, arch_losses = self._metrics(), []
        bar = self._bar(n_batches, f"search {epoch + 1}/{self.s['epochs']}")
        for b, (feats, labels) in enumerate(self._batches(self.data.train, order,
                                                          self.batch_size, train=True)):
            if b >= n_batches:
                break
            arch = self._arch_step(*self._next_val_batch())
            loss, logits = self._weight_step(feats, labels)
            self._start_files()
            metrics.update(logits, labels, loss)
            if arch is not None:
                arch_losses.append(arch)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", decided=self._n_decided())
        if bar is not None:
            bar.close()
        out = _plain(metrics.result(self.d))
        out["arch_loss"] = float(np.mean(arch_losses)) if arch_losses else None
        return out

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        metrics = self._metrics()
        order = epoch_order(len(self.data.val), self.seed, 0, False, self.d, pad=False)
        size = self.s["eval_batch_size"] or self.batch_size
        for feats, labels in self._batches(self.data.val, order, size):
            logits = self.model(feats)
            metrics.update(logits, labels, self.loss_fn(logits, labels).item())
        return _plain(metrics.result(self.d))

    def _bar(self, total: int, desc: str):
        if not (self.progress and self.d.main):
            return None
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def _n_decided(self) -> int:
        return sum(s > 0 for s in self.model.selected)

    def _check_in_sync(self) -> None:
        sums = gather_objects(self.d, float(self.model.alpha_matrix().detach().double().sum()))
        if len(set(sums)) > 1:
            raise RuntimeError(f"ranks disagree on α ({sums}); gradients were not averaged")

    # ---- the loop -----------------------------------------------------------------------
    def resolved_config(self) -> dict:
        """The config with every default spelled out (search_config.yaml; a resume compares it)."""
        return {**self.cfg, "search": dict(self.s), "model": dict(self.model.cfg)}

    def run(self) -> tuple[Genotype, dict]:
        s, started = self.s, time.time() - self.elapsed_s
        for epoch in range(self.epoch, s["epochs"]):
            t0 = time.time()
            train = self.train_epoch(epoch)
            self._broadcast(self.model.buffers())
            val = self.validate()
            probs = self.model.mixing_weights().detach().double().numpy()
            scores = self.decisions.observe(probs)
            decision = None
            if not self.decisions.done and is_decision_epoch(epoch, s["warmup_epochs"],
                                                             s["decision_freq"]):
                self._check_in_sync()
                decision = self.decisions.decide(probs, scores, epoch + 1).to_dict()
                self.decision_log.append(decision)
                self.apply_decisions()
                self.batch_size += s["batch_increase"]
            row = {"epoch": epoch + 1, "lr": self.w_opt.param_groups[0]["lr"],
                   "batch_size": self.batch_size, "train": train, "val": val,
                   "alpha": self.model.alpha_matrix().detach().tolist(),
                   "probs": probs.tolist(), "selected": list(self.model.selected),
                   "score": [None if np.isnan(x) else float(x) for x in scores["score"]],
                   "decision": decision, "time_s": round(time.time() - t0, 2)}
            lat = self.predicted_latency()
            if lat is not None:
                row["predicted_ms"] = float(lat)
            self._log(row)
            self.sched.step()
            self.epoch, self.last_val = epoch + 1, val
            self.elapsed_s = time.time() - started
            save_state(self)
        probs = self.model.mixing_weights().detach().double().numpy()
        genotype = self.decisions.genotype(
            probs, **self.model.genotype_config(), method=s["method"], criterion=s["criterion"])
        summary = {"method": s["method"], "criterion": s["criterion"], "epochs": s["epochs"],
                   "world": self.d.world, "genotype": genotype.to_dict(),
                   "genotype_text": genotype.describe(), "decisions": self.decision_log,
                   "val": {k: v for k, v in self.last_val.items() if k != "confusion"},
                   "key_metric": self.key, "elapsed_s": round(time.time() - started, 1)}
        if self.latreg is not None:
            enc = torch.as_tensor(genotype.encoding())
            summary["latency"] = {"predicted_ms": float(self.latreg(enc, self.lat_extras)),
                                  "target_ms": s["target_ms"], "lambda": s["lambda"],
                                  "config": self.deploy}
        if self.d.main:
            save_genotype(genotype, self.out / "genotype.yaml")
            with atomic_path(self.out / "search.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2))
        return genotype, summary

    def _start_files(self) -> None:
        """The resolved config and an empty log, written once the first step has run, so that
        a config the model cannot run (e.g. k > points) leaves no output folder behind."""
        if self._files_started or not self.d.main:
            return
        self._files_started = True
        self.out.mkdir(parents=True, exist_ok=True)
        dump_config(self.resolved_config(), self.out / "search_config.yaml")
        (self.out / "search_log.jsonl").write_text("")

    def apply_decisions(self) -> None:
        self.model.selected = list(self.decisions.selected)
        for a, sel in zip(self.model.alphas, self.model.selected):
            if sel != -1:
                a.requires_grad_(False)
                a.grad = None

    def _log(self, row: dict) -> None:
        self.log_rows.append(row)
        if not self.d.main:
            return
        self._start_files()
        with open(self.out / "search_log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        # one line per epoch, with or without progress bars
        dec = row["decision"]
        note = (f"  decided edge {dec['edge']} (node {dec['node']} ← {dec['input']}) = "
                f"{dec['op']}" + (f", pruned {dec['pruned']}" if dec["pruned"] else "")
                ) if dec else ""
        lat = f"  LatReg {row['predicted_ms']:.2f} ms" if "predicted_ms" in row else ""
        print(f"epoch {row['epoch']}: val {self.key} {row['val'].get(self.key, float('nan')):.4f}"
              f"  loss {row['val'].get('loss', float('nan')):.4f}{lat}{note}", flush=True)


def _plain(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}

