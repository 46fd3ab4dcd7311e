"""Extension points of the one training loop (`Trainer`), as Pointcept's `HookBase`.

Anything that trains *with* the loop instead of beside it is a hook: the architecture searches
(SGAS, LC-NAS: an α step before each weight step, an edge decision after each epoch) run on
the same batching, validation, logging, seeding, devices, checkpoints and exact resume as
ordinary training. The loop calls, in this order:

    setup(trainer)                  once the model is on its device; returns the parameters the
                                    hook trains itself (left out of the weight optimiser, DDP)
    start(trainer)                  a new run folder was made (rank 0)
    per batch: before_step(trainer, feats, labels), the weight step, after_step(trainer)
    after_epoch(trainer, epoch, train, val) → a note for the epoch's line (val None when the
                                    epoch was not validated)
    finish(trainer, final)          the loop is done; `final` is metrics.json's content

`state_dict`/`load_state_dict` go into every checkpoint, so a resumed run resumes the hook
too. `files`: what the hook writes in the run folder (removed with a failed new run);
`unused_parameters`: whether some weights may go unused in a step (DDP must then look for them).
"""
from __future__ import annotations


class Hook:
    files: tuple[str, ...] = ()
    unused_parameters = False

    def setup(self, trainer) -> list:
        return []

    def start(self, trainer) -> None:
        pass

    def before_step(self, trainer, feats, labels) -> None:
        pass

    def after_step(self, trainer) -> None:
        pass

    def after_epoch(self, trainer, epoch: int, train: dict, val: dict | None) -> str:
        return ""

    def finish(self, trainer, final: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
