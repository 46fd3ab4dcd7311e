"""SGAS and LC-NAS on the engine's training loop: the bi-level search as a `Hook`.

The trainer (engine/trainer.py) trains the supernet's weights w exactly as it trains any model
— batching, validation, logging, seeding, devices, mixed precision, DDP, checkpoints, exact
resume, the run folder — with the SGAS code's settings (SGD, cosine LR, gradient clipping; a
short last batch kept unless it holds one sample). `ArchitectureSearch` adds, first-order as
in the SGAS code:
- before each weight step, one α step on the next batch of the held-out validation split
  (Adam; for LC-NAS plus the latency loss on E(α)); α is held constant in the weight step;
- after each epoch, the SGAS edge scores and, at a decision epoch, one edge decision, after
  which the batch size grows by `batch_increase`; a row per epoch in search_log.jsonl;
- at the end, the genotype (genotype.yaml) and the summary (search.json).
α's validation stream runs cycle after cycle over the split, each cycle in its own seeded
order and batched at the batch size of its start.

Distributed (`torchrun --nproc_per_node=P`): every rank holds the whole supernet; DDP averages
w's gradients and the hook α's (one all-reduce per step), so α, and hence every decision, is
the same on all ranks (a checksum of α is compared across ranks at each decision).

Config `search:` section (defaults = the SGAS point-cloud code); `device:` and `seed:` as for
training:
    method: sgas | lcnas     criterion: 1 | 2     epochs: null (= warmup + freq·5 + post + 1)
    warmup_epochs: 9   decision_freq: 7   post_epochs: 5   history_size: 4
    batch_size: 28   batch_increase: 4   lr: 0.005   lr_min: 0.0001   momentum: 0.9
    weight_decay: 0.0003   grad_clip: 5   arch_lr: 0.0003   arch_weight_decay: 0.001
    arch_betas: [0.5, 0.999]   max_batches: null (cap on training batches per epoch)
    amp: none | bf16 | fp16 (the trainer's train.amp)
    latreg: null   target_ms: null   lambda: 0.0   encoding: upper | derived | argmax   (LC-NAS)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..config import check_int, check_number
from ..engine.batches import collate, split_batches
from ..engine.device import describe_device, to_device
from ..engine.distributed import allreduce_mean, epoch_order, gather_objects
from ..engine.hooks import Hook
from ..engine.trainer import Trainer
from ..errors import ConfigError, Setting
from ..io.atomic import atomic_path
from .genotype import save_genotype
from .lcnas import ENCODINGS, latency_loss, search_encoding
from .network import SearchNetwork
from .sgas import DecisionState, is_decision_epoch, schedule_length

SEARCH_DEFAULTS = dict(
    method="sgas", criterion=1, epochs=None, warmup_epochs=9, decision_freq=7, post_epochs=5,
    history_size=4, batch_size=28, batch_increase=4, eval_batch_size=None, lr=0.005,
    lr_min=1e-4, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, arch_lr=3e-4,
    arch_weight_decay=1e-3, arch_betas=[0.5, 0.999], max_batches=None, amp="none",
    latreg=None, target_ms=None, encoding="upper", **{"lambda": 0.0},
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
    s["arch_betas"] = list(betas)
    if s["encoding"] not in ENCODINGS:
        raise ConfigError(f"search.encoding must be one of {ENCODINGS}, got {s['encoding']!r}")
    if s["method"] == "lcnas":
        if not s["latreg"]:
            raise ConfigError("LC-NAS needs a latency regressor: {latreg} FILE (from "
                              "`pointgcn latency fit`)", latreg=Setting("latreg", "search.latreg"))
        if s["target_ms"] is None and not s["lambda"]:
            raise ConfigError("LC-NAS needs {target} T and/or {lam} L > 0",
                              target=Setting("target_ms", "search.target_ms"),
                              lam=Setting("lambda", "search.lambda"))
        check_number(s, "target_ms", "search")
        if s["target_ms"] is not None and not s["target_ms"] > 0:
            raise ConfigError(f"target latency must be positive, got {s['target_ms']}")
        if s["target_ms"] is not None and not s["lambda"]:
            s["lambda"] = 1.0
    return s


def weight_training(s: dict) -> dict:
    """The trainer's `train:` section for the supernet's weights (the SGAS code's settings)."""
    return {"epochs": s["epochs"], "batch_size": s["batch_size"], "optimizer": "sgd",
            "lr": s["lr"], "momentum": s["momentum"], "weight_decay": s["weight_decay"],
            "scheduler": "cosine", "min_lr": s["lr_min"], "grad_clip": s["grad_clip"] or 0.0,
            "eval_batch_size": s["eval_batch_size"], "max_batches": s["max_batches"],
            "last_batch": "keep", "amp": s["amp"]}


def search_supernet(cfg: dict, out, data, dist=None, progress: bool = True, latreg=None,
                    deploy_config: dict | None = None, resume: bool = False
                    ) -> "ArchitectureSearch":
    """Run (or, with `resume`, continue) one search into `out`; the returned hook holds the
    genotype and summary."""
    trainer = supernet_trainer(cfg, out, data, dist, progress, latreg, deploy_config, resume)
    trainer.fit()
    return trainer.hooks[0]


def supernet_trainer(cfg: dict, out, data, dist=None, progress: bool = True, latreg=None,
                     deploy_config: dict | None = None, resume: bool = False) -> Trainer:
    """The engine's trainer for the supernet of `cfg`, with the `ArchitectureSearch` hook."""
    if cfg.get("train"):
        raise ConfigError("a search trains its supernet with the search: settings (lr, lr_min, "
                          "batch_size, …); the train: section is for `pointgcn train` (LC-NAS's "
                          "final model: final.train)")
    settings = resolve_search(cfg.get("search", {}))
    model_cfg = dict(cfg.get("model", {}))
    model_cfg.pop("name", None)
    data.complete_model_config(model_cfg)  # as train: refuse a supernet for other data
    hook = ArchitectureSearch(settings, latreg, deploy_config)
    run_cfg = {**cfg, "search": settings, "train": weight_training(settings)}
    return Trainer(run_cfg, out, data, resume=resume, progress=progress, dist=dist,
                   hooks=[hook], build=lambda _: SearchNetwork(model_cfg), keep_best=False)


class ArchitectureSearch(Hook):
    """α steps, SGAS decisions, the search log, the genotype (module doc)."""

    files = ("search_log.jsonl", "genotype.yaml", "search.json")
    unused_parameters = True  # ops of decided edges no longer run

    def __init__(self, settings: dict, latreg=None, deploy_config: dict | None = None):
        self.settings = settings
        self.decisions = DecisionState(settings["criterion"], settings["history_size"])
        self.latreg, self.deploy = latreg, deploy_config or {}
        self.lat_extras = latreg.extras_for(self.deploy) if latreg is not None else None
        # where α's validation stream stands: cycle (its seeded order), batch size, next batch
        self.val_stream = {"cycle": -1, "size": settings["batch_size"], "pos": 0}
        self.decision_log: list[dict] = []
        self.log_rows: list[dict] = []
        self.arch_losses: list[float] = []  # this epoch's
        self.last_val: dict = {}
        self.elapsed_s = 0.0
        self.frozen: list = []
        self.genotype = self.summary = None

    def setup(self, trainer) -> list:
        self.trainer, self.model = trainer, trainer.model
        s = self.settings
        self.arch_optimizer = torch.optim.Adam(self.model.arch_parameters(), s["arch_lr"],
                                               betas=tuple(s["arch_betas"]),
                                               weight_decay=s["arch_weight_decay"])
        self.clock = time.time()
        self.epoch_clock = time.time()
        return self.model.arch_parameters()

    @property
    def log_path(self) -> Path:
        return self.trainer.run_dir / "search_log.jsonl"

    def start(self, trainer) -> None:
        if trainer.dist.main:
            self.log_path.write_text("")

    # ---- α ------------------------------------------------------------------------------
    def _active_alphas(self) -> list[torch.nn.Parameter]:
        return [a for a in self.model.alphas if a.requires_grad]

    def before_step(self, trainer, feats, labels) -> None:
        loss = self.arch_step(*self._next_val_batch())
        if loss is not None:
            self.arch_losses.append(loss)
        self.frozen = self._active_alphas()
        for a in self.frozen:  # α is a constant in the weight step
            a.requires_grad_(False)

    def after_step(self, trainer) -> None:
        for a in self.frozen:
            a.requires_grad_(True)
        self.frozen = []

    def arch_step(self, feats, labels) -> float | None:
        active = self._active_alphas()
        if not active:
            return None
        with self.trainer.autocast():
            loss = self.trainer.loss_fn(self.model(feats).float(), labels)
        if self.latreg is not None:
            lat = latency_loss(self.predicted_latency(True), self.settings["lambda"],
                               self.settings["target_ms"])
            loss = loss + lat.to(loss.device)
        grads = [g.clone() for g in torch.autograd.grad(loss, active)]
        allreduce_mean(self.trainer.dist, grads)
        for a, g in zip(active, grads):
            a.grad = g
        self.arch_optimizer.step()
        for a in self.model.alphas:
            a.grad = None
        return loss.item()

    def _next_val_batch(self):
        v = self.val_stream
        if v["cycle"] < 0 or v["pos"] >= len(self._val_cycle(v)):
            v.update(cycle=v["cycle"] + 1, size=self.trainer.state["batch_size"], pos=0)
        v["pos"] += 1
        val = self.trainer.data.val
        feats, labels = collate([val[int(i)] for i in self._val_cycle(v)[v["pos"] - 1]])
        device = self.trainer.device
        return to_device(feats, device), to_device(labels, device)

    def _val_cycle(self, v: dict) -> list[np.ndarray]:
        t = self.trainer
        order = epoch_order(len(t.data.val), t.seed + 1, v["cycle"], True, t.dist)
        return split_batches(order, v["size"], "keep")

    def predicted_latency(self, with_grad: bool = False) -> torch.Tensor | None:
        """LatReg(E(α)) in ms (on the CPU, where the regressor lives)."""
        if self.latreg is None:
            return None
        with torch.set_grad_enabled(with_grad):
            enc = search_encoding(self.model.alpha_matrix().cpu(), self.model.selected,
                                  self.settings["encoding"])
            return self.latreg(enc, self.lat_extras)

    # ---- decisions ----------------------------------------------------------------------
    def after_epoch(self, trainer, epoch: int, train: dict, val: dict | None) -> str:
        s = self.settings
        probs = self.model.mixing_weights().detach().double().cpu().numpy()
        scores = self.decisions.observe(probs)
        decision = None
        if not self.decisions.done and is_decision_epoch(epoch, s["warmup_epochs"],
                                                         s["decision_freq"]):
            self._check_in_sync()
            decision = self.decisions.decide(probs, scores, epoch + 1).to_dict()
            self.decision_log.append(decision)
            self.apply_decisions()
            trainer.state["batch_size"] += s["batch_increase"]
        val = _plain(val or {})
        row = {"epoch": epoch + 1, "lr": train["lr"], "batch_size": trainer.state["batch_size"],
               "train": {**_plain(train), "arch_loss": float(np.mean(self.arch_losses))
                         if self.arch_losses else None}, "val": val,
               "alpha": self.model.alpha_matrix().detach().cpu().tolist(),
               "probs": probs.tolist(), "selected": list(self.model.selected),
               "score": [None if np.isnan(x) else float(x) for x in scores["score"]],
               "decision": decision, "time_s": round(time.time() - self.epoch_clock, 2)}
        lat = self.predicted_latency()
        if lat is not None:
            row["predicted_ms"] = float(lat)
        self.log_rows.append(row)
        self.arch_losses, self.last_val = [], val
        self.elapsed_s, self.epoch_clock = time.time() - self.clock, time.time()
        if trainer.dist.main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        note = (f"  decided edge {decision['edge']} (node {decision['node']} ← "
                f"{decision['input']}) = {decision['op']}"
                + (f", pruned {decision['pruned']}" if decision["pruned"] else "")
                ) if decision else ""
        return (f"  LatReg {row['predicted_ms']:.2f} ms" if lat is not None else "") + note

    def apply_decisions(self) -> None:
        self.model.selected = list(self.decisions.selected)
        for a, sel in zip(self.model.alphas, self.model.selected):
            if sel != -1:
                a.requires_grad_(False)
                a.grad = None

    def _check_in_sync(self) -> None:
        total = float(self.model.alpha_matrix().detach().double().sum())
        sums = gather_objects(self.trainer.dist, total)
        if len(set(sums)) > 1:
            raise RuntimeError(f"ranks disagree on α ({sums}); gradients were not averaged")

    def finish(self, trainer, final: dict) -> None:
        s = self.settings
        probs = self.model.mixing_weights().detach().double().cpu().numpy()
        self.genotype = genotype = self.decisions.genotype(
            probs, **self.model.genotype_config(), method=s["method"], criterion=s["criterion"])
        summary = {"method": s["method"], "criterion": s["criterion"], "epochs": s["epochs"],
                   "world": trainer.dist.world, "device": describe_device(trainer.device),
                   "genotype": genotype.to_dict(), "genotype_text": genotype.describe(),
                   "decisions": self.decision_log, "val": self.last_val,
                   "key_metric": trainer.key, "elapsed_s": round(self.elapsed_s, 1)}
        if self.latreg is not None:
            enc = torch.as_tensor(genotype.encoding())
            summary["latency"] = {"predicted_ms": float(self.latreg(enc, self.lat_extras)),
                                  "target_ms": s["target_ms"], "lambda": s["lambda"],
                                  "config": self.deploy}
        self.summary = summary
        if trainer.dist.main:
            save_genotype(genotype, trainer.run_dir / "genotype.yaml")
            with atomic_path(trainer.run_dir / "search.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2))

    # ---- resume -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"arch_optimizer": self.arch_optimizer.state_dict(),
                "selected": list(self.decisions.selected),
                "history": [h.tolist() for h in self.decisions.history],
                "decisions": self.decision_log, "val_stream": dict(self.val_stream),
                "log": self.log_rows, "val": self.last_val, "elapsed_s": self.elapsed_s,
                "arch_losses": list(self.arch_losses)}

    def load_state_dict(self, state: dict) -> None:
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.decisions.selected = [int(v) for v in state["selected"]]
        self.decisions.history = [np.asarray(h, np.float64) for h in state["history"]]
        self.val_stream = {k: int(state["val_stream"][k]) for k in ("cycle", "size", "pos")}
        self.decision_log, self.log_rows = list(state["decisions"]), list(state["log"])
        self.last_val, self.elapsed_s = dict(state["val"]), float(state["elapsed_s"])
        self.arch_losses = [float(v) for v in state["arch_losses"]]
        self.clock = time.time() - self.elapsed_s
        self.apply_decisions()
        if self.trainer.dist.main:  # the log as of the checkpoint: later lines go
            with atomic_path(self.log_path) as tmp:
                tmp.write_text("".join(json.dumps(row) + "\n" for row in self.log_rows))


def _plain(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
