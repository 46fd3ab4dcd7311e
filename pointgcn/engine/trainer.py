"""Training loop: one run folder, exact resume, DDP when launched by torchrun.

Run folder: config.yaml (resolved), metrics.jsonl (one line per epoch and split),
metrics.json (final), checkpoints/{last,best}.pt, tb/ (TensorBoard). `best.pt` is written
whenever the validation key metric strictly improves on every earlier validation, and stores
that value, so "best" is the best validated checkpoint.

Exact resume: all randomness comes from torch's RNG (model: stochastic dilation, dropout) and
from numpy generators seeded by (seed, epoch, sample) (data order, augmentation). A checkpoint
stores model, optimiser, scheduler, the torch RNG state and the epoch's running metrics of
every rank, and the position in the epoch, so a run killed at any point and resumed from its
last checkpoint (with the same process count) replays to the same numbers as an
uninterrupted run.

Extending: a resumed run may get more epochs (`train.epochs`, never fewer than it has done).
With step or none it then equals a run trained that long from the start. A cosine schedule
annealed to min_lr over the epochs it was planned for; it starts over at that old end (a warm
restart, SGDR-style, recorded as `train.restarts` in config.yaml), so the extended run equals
a run configured with those restarts from the start, not a single longer cosine.
(With val_every > 1 the log keeps the validation of the old last epoch; weights are equal.)

The run config records the model as built (`model.cfg`: defaults filled, a genotype file's
content instead of its path), in config.yaml and in every checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import dump_config
from ..errors import ConfigError, InputError
from ..io.atomic import atomic_path
from ..models import build_model
from ..models.checkpoint import FORMAT, read_checkpoint, save_checkpoint
from ..models.conventions import from_config
from ..seeds import loader_seed, rank_seed
from .distributed import Dist, broadcast_object, epoch_order, gather_objects, init_distributed
from .optim import (extend_schedule, make_loss, make_optimizer, make_scheduler,
                    resolve_train, restore_scheduler)
from .task_metrics import KEY_METRIC, SELECTABLE, TaskMetrics

# What a checkpoint's train_state must hold to resume from it.
TRAIN_STATE_KEYS = {"epoch", "batch", "step", "best", "best_epoch", "history", "running",
                    "optimizer", "scheduler", "rng", "world"}


def collate(items):
    feats = torch.stack([torch.as_tensor(f, dtype=torch.float32) for f, _ in items])
    labels = torch.stack([torch.as_tensor(y, dtype=torch.int64) for _, y in items])
    return feats, labels


class _EpochView(torch.utils.data.Dataset):
    """Samples in this rank's epoch order (datasets augment themselves, seeded by
    (seed, epoch, index), via their `set_epoch`)."""

    def __init__(self, dataset, order):
        self.dataset, self.order = dataset, order

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        return self.dataset[int(self.order[i])]


class Trainer:
    def __init__(self, cfg: dict, run_dir: str | Path, data, *, resume: bool = False,
                 progress: bool = True, dist: Dist | None = None):
        self.cfg, self.run_dir, self.data, self.progress = cfg, Path(run_dir), data, progress
        self.d = dist or init_distributed()
        self.t = resolve_train(cfg.get("train"))
        self.seed = int(cfg.get("seed", 0))
        torch.manual_seed(rank_seed(self.seed, self.d.rank))
        self.model = build_model(cfg)
        self.cfg = cfg = {**cfg, "model": dict(self.model.cfg)}  # the model as built
        self.task = self.model.cfg["task"]
        self.key = self.t["best_metric"] or KEY_METRIC[self.task]
        if self.key not in SELECTABLE[self.task]:
            raise ConfigError(f"train.best_metric must be one of {SELECTABLE[self.task]} for "
                              f"{self.task}, got {self.key!r}")
        self.net = DistributedDataParallel(self.model) if self.d.enabled else self.model
        self.opt = make_optimizer(self.model.parameters(), self.t)
        self.sched = make_scheduler(self.opt, self.t)
        self.loss_fn = make_loss(self.t)
        self.state = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_epoch": None,
                      "history": [], "running": None}
        if len(data.train) < self.t["batch_size"] * self.d.world:
            raise ConfigError(f"the training split has {len(data.train)} samples, fewer than "
                              f"train.batch_size × processes = {self.t['batch_size'] * self.d.world}")
        if self.task == "classification" and self.t["batch_size"] < 2 and any(
                isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
            raise ConfigError("train.batch_size must be ≥ 2 per process: the classifier's "
                              "batch norm needs more than one shape per batch")
        self.ckpt_dir = self.run_dir / "checkpoints"
        if resume:
            self._load(self.ckpt_dir / "last.pt")
        elif self.d.main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.run_dir / "config.yaml")
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)  # a new run's log only
        self.writer = None
        if self.d.main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.run_dir / "tb"))

    # ---- loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        while self.state["epoch"] < self.t["epochs"]:
            epoch = self.state["epoch"]
            self.data.train.set_epoch(epoch)
            train = self._train_epoch(epoch)
            self._log(epoch, "train", train)
            if (epoch + 1) % self.t["val_every"] == 0 or epoch + 1 == self.t["epochs"]:
                val = self.validate()
                self._log(epoch, "val", val)
                self._maybe_best(epoch, val)
            self.sched.step()
            self.state.update(epoch=epoch + 1, batch=0, running=None)
            self._save("last.pt")
        final = {"best": {"epoch": self.state["best_epoch"], self.key: self.state["best"]},
                 "last": self.state["history"][-1] if self.state["history"] else None,
                 "key_metric": self.key}
        if self.d.main:
            (self.run_dir / "metrics.json").write_text(json.dumps(final, indent=2))
            self.writer.close()
        return final

    def _loader(self, dataset, order, epoch, batch_size, skip_batches=0, drop_last=False):
        """Batches of the epoch order; training drops an incomplete last batch (as the
        official code) so BatchNorm never sees a batch of one."""
        view = _EpochView(dataset, order)
        end = len(view) - len(view) % batch_size if drop_last else len(view)
        batches = [list(range(i, min(end, i + batch_size)))
                   for i in range(0, end, batch_size)][skip_batches:]
        # Its own generator: creating an iterator must not draw from the global RNG, or a
        # resumed run (which creates one more iterator) would drift from an uninterrupted one.
        gen = torch.Generator().manual_seed(loader_seed(self.seed, epoch))
        return torch.utils.data.DataLoader(view, batch_sampler=batches, collate_fn=collate,
                                           num_workers=self.t["num_workers"], generator=gen)

    def _train_epoch(self, epoch: int) -> dict:
        self.net.train()
        metrics = TaskMetrics(self.task, self.model.cfg["n_classes"], self.data.class_names,
                              self.t["ignore_index"])
        if self.state["running"] is not None:  # one entry per rank
            metrics.load_state(self.state["running"][self.d.rank])
        order = epoch_order(len(self.data.train), self.seed, epoch, True, self.d)
        start = self.state["batch"]
        loader = self._loader(self.data.train, order, epoch, self.t["batch_size"],
                              skip_batches=start, drop_last=True)
        total = len(order) // self.t["batch_size"]
        bar = _progress(loader, self.progress and self.d.main, total, start,
                        f"epoch {epoch + 1}/{self.t['epochs']}")
        every = self.t["ckpt_every_steps"]
        for feats, labels in bar:
            loss, logits = self._step(feats, labels)
            metrics.update(logits, labels, loss)
            self.state["batch"] += 1
            self.state["step"] += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.3f}")
            if every and self.state["step"] % every == 0 and self.state["batch"] < total:
                self.state["running"] = gather_objects(self.d, metrics.state())
                self._save("last.pt")
        out = metrics.result(self.d)
        out["lr"] = self.opt.param_groups[0]["lr"]
        return out

    def _step(self, feats, labels) -> tuple[float, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(self.t["amp"])):
            logits = self.net(feats)
            loss = self.loss_fn(logits.float(), labels)
        if not torch.isfinite(loss):  # a setting to change, so one line and exit 2
            raise ConfigError(f"training diverged: loss is {loss.item()} at step "
                              f"{self.state['step']}; lower train.lr or set train.grad_clip")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.t["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t["grad_clip"])
        self.opt.step()
        return loss.item(), logits.detach()

    @torch.no_grad()
    def validate(self) -> dict:
        self.net.eval()
        metrics = TaskMetrics(self.task, self.model.cfg["n_classes"], self.data.class_names,
                              self.t["ignore_index"])
        order = epoch_order(len(self.data.val), self.seed, 0, False, self.d, pad=False)
        bs = self.t["eval_batch_size"] or self.t["batch_size"]
        for feats, labels in self._loader(self.data.val, order, 0, bs):
            logits = self.model(feats)
            metrics.update(logits, labels, self.loss_fn(logits, labels).item())
        return metrics.result(self.d)

    # ---- bookkeeping --------------------------------------------------------------------
    def _log(self, epoch: int, split: str, metrics: dict) -> None:
        row = {"epoch": epoch + 1, "step": self.state["step"], "split": split,
               **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        self.state["history"].append(row)
        if not self.d.main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k not in ("epoch", "step", "split") and v is not None:
                self.writer.add_scalar(f"{split}/{k}", v, epoch + 1)
        if split == "val":
            print(f"epoch {epoch + 1}: val {self.key} {metrics.get(self.key, float('nan')):.4f}"
                  f"  loss {metrics.get('loss', float('nan')):.4f}", flush=True)

    def _maybe_best(self, epoch: int, val: dict) -> None:
        value = val.get(self.key)
        if value is None or (self.state["best"] is not None and value <= self.state["best"]):
            return
        self.state.update(best=value, best_epoch=epoch + 1)
        self._save("best.pt", metrics=val)

    def _save(self, name: str, metrics: dict | None = None) -> None:
        rng = gather_objects(self.d, torch.get_rng_state())
        if not self.d.main:
            return
        meta = {"epoch": self.state["epoch"], "step": self.state["step"],
                "metrics": {k: v for k, v in (metrics or {}).items() if k != "confusion"},
                "key_metric": self.key, "class_names": list(self.data.class_names),
                "conventions": from_config(self.cfg, self.data.info.get("spacing"),
                                           self.data.info.get("layout")).to_dict()}
        train_state = {**self.state, "optimizer": self.opt.state_dict(),
                       "scheduler": self.sched.state_dict(), "rng": rng, "world": self.d.world}
        save_checkpoint(self.ckpt_dir / name, self.model, self.cfg, meta=meta,
                        train_state=train_state)

    def _load(self, path: Path) -> None:
        ckpt = read_checkpoint(path)
        ts = ckpt.get("train_state") if ckpt.get("format") == FORMAT else None
        if not isinstance(ts, dict) or not TRAIN_STATE_KEYS <= set(ts):
            raise InputError(f"{path}: has no training state to resume from")
        if ts["world"] != self.d.world:
            raise InputError(f"{path}: saved with {ts['world']} processes, resuming with "
                             f"{self.d.world}; resume with the same process count")
        started = ts["epoch"] + (1 if ts["batch"] else 0)  # stopped inside an epoch: begun
        extended = self._check_extension(resolve_train(ckpt["config"].get("train")), started)
        try:
            self.model.load_state_dict(ckpt["state_dict"])
            self.opt.load_state_dict(ts["optimizer"])
            restore_scheduler(self.sched, ts["scheduler"])
            torch.set_rng_state(ts["rng"][self.d.rank])
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as e:
            raise InputError(f"{path}: does not fit this run's model and optimiser "
                             f"({str(e).splitlines()[0][:200]})") from None
        self.state = {k: ts[k] for k in self.state}
        self.state = broadcast_object(self.d, self.state)
        if self.d.main:  # drop log lines written after this checkpoint
            lines = [json.dumps(r) for r in self.state["history"]]
            (self.run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
        if self.d.main and extended:  # the run's new length; its old end is no longer final
            with atomic_path(self.run_dir / "config.yaml") as tmp:
                dump_config(self.cfg, tmp)
            (self.run_dir / "metrics.json").unlink(missing_ok=True)

    def _check_extension(self, saved: dict, started: int) -> bool:
        """Whether this resume changes train.epochs, which is allowed only where the run then
        equals one trained that long from the start."""
        epochs = self.t["epochs"]
        if epochs == saved["epochs"]:
            return False
        if epochs < started:
            raise ConfigError(f"train.epochs={epochs} is fewer than the {started} epochs this "
                              "run has already started")
        extend_schedule(self.t, saved["epochs"])
        if self.t["restarts"]:
            self.cfg.setdefault("train", {})["restarts"] = list(self.t["restarts"])
        self.sched = make_scheduler(self.opt, self.t)
        return True


def _progress(loader, enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return loader
    from tqdm import tqdm
    return tqdm(loader, total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)
