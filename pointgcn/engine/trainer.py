"""The training loop: one for training and for architecture search, on any device, resumable.

Run folder (run_folder.py makes it and removes a failed new run): config.yaml (resolved,
with the device), metrics.jsonl (one line per epoch and split), metrics.json (final, with
the device described), checkpoints/{last,best}.pt, tb/ (TensorBoard), and what hooks write.
`best.pt` is written whenever the validation key metric strictly improves on every earlier
validation, and stores that value, so "best" is the best validated checkpoint.

Devices: the model and every batch live on `dist.device` (engine/device.py); batches come
through pinned host memory on a GPU. Under torchrun each process has its own GPU (DDP, NCCL)
or CPU share (gloo); `train.sync_bn` synchronises BatchNorm across GPUs. Mixed precision:
`train.amp` none | bf16 | fp16 (fp16 with a gradient scaler).

Hooks (hooks.py) extend the loop: SGAS and LC-NAS are an α step before each weight step and
an edge decision after each epoch, on this same loop.

Exact resume: all randomness comes from torch's RNGs (model: stochastic dilation, dropout, on
the CPU and the model's GPU) and from numpy generators seeded by (seed, epoch, sample) (data
order, augmentation). A checkpoint stores model, optimiser, scheduler, gradient scaler, every
rank's RNG states and the epoch's running metrics, the position in the epoch, the batch size
and the hooks' states, so a run killed at any point and resumed from its last checkpoint
(same process count, thread count and kind of device) replays to the same numbers as an
uninterrupted run.

Extending: a resumed run may get more epochs (`train.epochs`, never fewer than it has done).
With step or none it then equals a run trained that long from the start. A cosine schedule
annealed to min_lr over the epochs it was planned for; it starts over at that old end (a warm
restart, SGDR-style, recorded as `train.restarts` in config.yaml), so the extended run equals
a run configured with those restarts from the start, not a single longer cosine. A stopped
run may also be shortened (no restart: its cosine anneals to the new end). The new length
reaches config.yaml with the first new checkpoint, so a resume killed before it leaves the
run as it was, and resuming again extends it the same way.
(With val_every > 1 the log keeps the validation of the old last epoch; weights are equal.)

The run config records the model as built (`model.cfg`: defaults filled, a genotype file's
content instead of its path), in config.yaml and in every checkpoint.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..config import dump_config
from ..errors import ConfigError, InputError
from ..io.atomic import atomic_path
from ..models import build_model
from ..models.checkpoint import FORMAT, read_checkpoint, save_checkpoint
from ..models.conventions import from_config
from ..seeds import loader_seed, rank_seed
from .batches import batch_loader, split_batches
from .device import autocast, describe_device, rng_state, set_rng_state, to_device
from .distributed import (Dist, broadcast_object, broadcast_tensors, epoch_order,
                          gather_objects, init_distributed)
from .optim import (extend_schedule, make_loss, make_optimizer, make_scheduler,
                    resolve_train, restore_scheduler)
from .run_folder import RunFolder, check_new, check_resume
from .task_metrics import KEY_METRIC, SELECTABLE, TaskMetrics

log = logging.getLogger(__name__)

# What a checkpoint's train_state must hold to resume from it.
TRAIN_STATE_KEYS = {"epoch", "batch", "step", "best", "best_epoch", "history", "running",
                    "optimizer", "scheduler", "rng", "world"}


class Trainer:
    def __init__(self, cfg: dict, run_dir: str | Path, data, *, resume: bool = False,
                 progress: bool = True, dist: Dist | None = None, hooks=(),
                 build=build_model, keep_best: bool = True):
        """`build(cfg)` makes the model (default: the registry's); `keep_best` writes best.pt."""
        self.data, self.progress, self.keep_best = data, progress, keep_best
        self.dist = dist or init_distributed(cfg.get("device", "auto"))
        self.device = self.dist.device
        self.settings = resolve_train(cfg.get("train"))
        self.seed = int(cfg.get("seed", 0))
        self.hooks = list(hooks)
        self.run = RunFolder(run_dir, [f for hook in self.hooks for f in hook.files])
        self.run_dir = self.run.path
        if not resume:
            check_new(self.run_dir)
        torch.manual_seed(self.seed)  # the same initial model on every rank
        self.model = build(cfg).to(self.device)
        torch.manual_seed(rank_seed(self.seed, self.dist.rank))  # per-rank dropout, dilation
        placed = self.device.type if self.dist.enabled else str(self.device)
        self.cfg = cfg = {**cfg, "model": dict(self.model.cfg), "device": placed}
        self.task = self.model.cfg["task"]
        self.key = self.settings["best_metric"] or KEY_METRIC[self.task]
        if self.key not in SELECTABLE[self.task]:
            raise ConfigError(f"train.best_metric must be one of {SELECTABLE[self.task]} for "
                              f"{self.task}, got {self.key!r}")
        self._check_batches()
        own = {id(p) for hook in self.hooks for p in hook.setup(self)}
        self.weights = [p for p in self.model.parameters() if id(p) not in own]
        self.net = self._parallel(own)
        self.optimizer = make_optimizer(self.weights, self.settings)
        self.scheduler = make_scheduler(self.optimizer, self.settings)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.settings["amp"] == "fp16")
        self.loss_fn = make_loss(self.settings)
        self.state = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_epoch": None,
                      "history": [], "running": None, "batch_size": self.settings["batch_size"]}
        self.resumed, self._config_pending = resume, False
        if resume:
            self._load(self.run_dir / "checkpoints" / "last.pt")
        self.writer = None

    def _check_batches(self) -> None:
        size, world = self.settings["batch_size"], self.dist.world
        if len(self.data.train) < size * world:
            raise ConfigError(f"the training split has {len(self.data.train)} samples, fewer "
                              f"than train.batch_size × processes = {size * world}")
        if self.task == "classification" and size < 2 and any(
                isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
            raise ConfigError("train.batch_size must be ≥ 2 per process: the classifier's "
                              "batch norm needs more than one shape per batch")

    def _parallel(self, own: set) -> torch.nn.Module:
        """The model as the weight step runs it: DDP across processes (hook-trained parameters
        left to their hook), SyncBatchNorm with train.sync_bn."""
        if not self.dist.enabled:
            return self.model
        if self.settings["sync_bn"]:
            if self.device.type != "cuda":
                raise ConfigError("train.sync_bn synchronises BatchNorm over NCCL on GPUs; "
                                  "on the CPU leave it false")
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        ignored = [name for name, p in self.model.named_parameters() if id(p) in own]
        # DDP's own (long-standing) switch for parameters another optimiser syncs itself
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, ignored)
        ids = [self.device] if self.device.type == "cuda" else None
        unused = any(hook.unused_parameters for hook in self.hooks)
        return DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=unused)

    # ---- loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        try:
            return self._fit()
        except BaseException:
            if self.dist.main and not self.resumed:
                if self.writer is not None:
                    self.writer.close()
                self.run.discard()
            raise

    def _fit(self) -> dict:
        if self.dist.main:
            if not self.resumed:
                self.run.create(self.cfg)
            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        if not self.resumed:
            for hook in self.hooks:
                hook.start(self)
        settings = self.settings
        while self.state["epoch"] < settings["epochs"]:
            epoch = self.state["epoch"]
            self.data.train.set_epoch(epoch)
            train = self._train_epoch(epoch)
            self._log(epoch, "train", train)
            val = None
            if (epoch + 1) % settings["val_every"] == 0 or epoch + 1 == settings["epochs"]:
                val = self.validate()
                self._log(epoch, "val", val)
                self._maybe_best(epoch, val)
            notes = "".join(hook.after_epoch(self, epoch, train, val) for hook in self.hooks)
            if val is not None and self.dist.main:  # one line per epoch, with or without bars
                log.info(f"epoch {epoch + 1}: val {self.key} "
                         f"{val.get(self.key, float('nan')):.4f}  loss "
                         f"{val.get('loss', float('nan')):.4f}{notes}")
            self.scheduler.step()
            self.state.update(epoch=epoch + 1, batch=0, running=None)
            self._save("last.pt")
        final = {"best": {"epoch": self.state["best_epoch"], self.key: self.state["best"]},
                 "last": self.state["history"][-1] if self.state["history"] else None,
                 "key_metric": self.key, "device": describe_device(self.device)}
        self._record_config()  # e.g. shortened to the epochs it has done: no new checkpoint
        if self.dist.main:
            (self.run_dir / "metrics.json").write_text(json.dumps(final, indent=2))
            self.writer.close()
        for hook in self.hooks:
            hook.finish(self, final)
        return final

    def batches(self, epoch: int) -> list:
        """This rank's training batches of `epoch` (index arrays into the training split)."""
        order = epoch_order(len(self.data.train), self.seed, epoch, True, self.dist)
        parts = split_batches(order, self.state["batch_size"], self.settings["last_batch"])
        return parts[:self.settings["max_batches"]] if self.settings["max_batches"] else parts

    def _loader(self, dataset, batches, seed: int):
        return batch_loader(dataset, batches, seed=seed, workers=self.settings["num_workers"],
                            pin_memory=self.device.type == "cuda")

    def _train_epoch(self, epoch: int) -> dict:
        self.net.train()
        metrics = self.metrics()
        if self.state["running"] is not None:  # one entry per rank
            metrics.load_state(self.state["running"][self.dist.rank])
        batches = self.batches(epoch)
        start, total = self.state["batch"], len(batches)
        loader = self._loader(self.data.train, batches[start:], loader_seed(self.seed, epoch))
        bar = _progress(loader, self.progress and self.dist.main, total, start,
                        f"epoch {epoch + 1}/{self.settings['epochs']}")
        every = self.settings["ckpt_every_steps"]
        for feats, labels in bar:
            feats, labels = to_device(feats, self.device), to_device(labels, self.device)
            for hook in self.hooks:
                hook.before_step(self, feats, labels)
            loss, logits = self._step(feats, labels)
            for hook in self.hooks:
                hook.after_step(self)
            metrics.update(logits, labels, loss)
            self.state["batch"] += 1
            self.state["step"] += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.3f}")
            if every and self.state["step"] % every == 0 and self.state["batch"] < total:
                self.state["running"] = gather_objects(self.dist, metrics.state())
                self._save("last.pt")
        out = metrics.result(self.dist)
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        return out

    def autocast(self):
        """Mixed precision as train.amp sets it, on this run's device (hooks use it too)."""
        return autocast(self.device, self.settings["amp"])

    def _step(self, feats, labels) -> tuple[float, torch.Tensor]:
        with self.autocast():
            logits = self.net(feats)
            loss = self.loss_fn(logits.float(), labels)
        if not torch.isfinite(loss):  # a setting to change, so one line and exit 2
            raise ConfigError(f"training diverged: loss is {loss.item()} at step "
                              f"{self.state['step']}; lower train.lr or set train.grad_clip")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.weights, self.settings["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item(), logits.detach()

    def metrics(self) -> TaskMetrics:
        return TaskMetrics(self.task, self.model.cfg["n_classes"], self.data.class_names,
                           self.settings["ignore_index"])

    @torch.no_grad()
    def validate(self) -> dict:
        """The validation split on every rank's share, with rank 0's BatchNorm statistics
        (those the checkpoint holds)."""
        broadcast_tensors(self.dist, self.model.buffers())
        self.model.eval()
        metrics = self.metrics()
        order = epoch_order(len(self.data.val), self.seed, 0, False, self.dist, pad=False)
        size = self.settings["eval_batch_size"] or self.state["batch_size"]
        for feats, labels in self._loader(self.data.val, split_batches(order, size), self.seed):
            feats, labels = to_device(feats, self.device), to_device(labels, self.device)
            logits = self.model(feats)
            metrics.update(logits, labels, self.loss_fn(logits.float(), labels).item())
        return metrics.result(self.dist)

    # ---- bookkeeping --------------------------------------------------------------------
    def _log(self, epoch: int, split: str, metrics: dict) -> None:
        row = {"epoch": epoch + 1, "step": self.state["step"], "split": split,
               **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        self.state["history"].append(row)
        if not self.dist.main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k not in ("epoch", "step", "split") and v is not None:
                self.writer.add_scalar(f"{split}/{k}", v, epoch + 1)

    def _maybe_best(self, epoch: int, val: dict) -> None:
        value = val.get(self.key)
        if value is None or (self.state["best"] is not None and value <= self.state["best"]):
            return
        self.state.update(best=value, best_epoch=epoch + 1)
        if self.keep_best:
            self._save("best.pt", metrics=val)

    def _save(self, name: str, metrics: dict | None = None) -> None:
        rng = gather_objects(self.dist, rng_state(self.device))
        if not self.dist.main:
            return
        device = describe_device(self.device)
        meta = {"epoch": self.state["epoch"], "step": self.state["step"],
                "metrics": {k: v for k, v in (metrics or {}).items() if k != "confusion"},
                "key_metric": self.key, "class_names": list(self.data.class_names),
                "device": device,
                "conventions": from_config(self.cfg, self.data.info.get("spacing"),
                                           self.data.info.get("layout")).to_dict()}
        self._record_config()  # before the checkpoint: a kill between them re-extends alike
        train_state = {**self.state, "optimizer": self.optimizer.state_dict(),
                       "scheduler": self.scheduler.state_dict(),
                       "scaler": self.scaler.state_dict(), "rng": rng,
                       "world": self.dist.world, "threads": torch.get_num_threads(),
                       "device": device, "hooks": [hook.state_dict() for hook in self.hooks]}
        save_checkpoint(self.run_dir / "checkpoints" / name, self.model, self.cfg, meta=meta,
                        train_state=train_state)

    def _record_config(self) -> None:
        """A resumed run writes config.yaml (which may have a new length) with its first
        checkpoint, and drops metrics.json, whose end may no longer be final."""
        if self._config_pending and self.dist.main:
            with atomic_path(self.run_dir / "config.yaml") as tmp:
                dump_config(self.cfg, tmp)
            (self.run_dir / "metrics.json").unlink(missing_ok=True)
        self._config_pending = False

    def _load(self, path: Path) -> None:
        ckpt = read_checkpoint(path)
        ts = ckpt.get("train_state") if ckpt.get("format") == FORMAT else None
        if not isinstance(ts, dict) or not TRAIN_STATE_KEYS <= set(ts):
            raise InputError(f"{path}: has no training state to resume from")
        check_resume(path, ts, ckpt.get("config") or {}, self.cfg, self.dist.world,
                     describe_device(self.device))
        started = ts["epoch"] + (1 if ts["batch"] else 0)  # stopped inside an epoch: begun
        self._check_extension(resolve_train(ckpt["config"].get("train")), started)
        try:
            self.model.load_state_dict(ckpt["state_dict"])
            self.optimizer.load_state_dict(ts["optimizer"])
            restore_scheduler(self.scheduler, ts["scheduler"])
            if ts.get("scaler"):
                self.scaler.load_state_dict(ts["scaler"])
            set_rng_state(ts["rng"][self.dist.rank], self.device)
            for hook, state in zip(self.hooks, ts.get("hooks") or [{}] * len(self.hooks),
                                   strict=True):
                hook.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as e:
            raise InputError(f"{path}: does not fit this run's model and optimiser "
                             f"({str(e).splitlines()[0][:200]})") from None
        self.state = {k: ts.get(k, self.state[k]) for k in self.state}
        self.state = broadcast_object(self.dist, self.state)
        if self.dist.main:  # drop log lines written after this checkpoint
            lines = [json.dumps(r) for r in self.state["history"]]
            (self.run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
        # the run's config (a new length, fewer restarts) is recorded with its first new
        # checkpoint (`_save`), not before, so a resume killed before that leaves the run as
        # it was
        self._config_pending = True

    def _check_extension(self, saved: dict, started: int) -> bool:
        """Whether this resume changes train.epochs, which is allowed only where the run then
        equals one trained that long from the start."""
        epochs = self.settings["epochs"]
        if epochs == saved["epochs"]:
            return False
        if epochs < started:
            raise ConfigError(f"train.epochs={epochs} is fewer than the {started} epochs this "
                              "run has already started")
        extend_schedule(self.settings, saved["epochs"])
        if self.settings["restarts"]:
            self.cfg.setdefault("train", {})["restarts"] = list(self.settings["restarts"])
        self.scheduler = make_scheduler(self.optimizer, self.settings)
        return True


def _progress(loader, enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return loader
    return tqdm(loader, total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)
