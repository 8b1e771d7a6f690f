"""``last.ckpt``: written every N steps, at the end of training, and on SIGTERM / Ctrl-C / a crash.

With ``resume`` (the default) a run started again in the same run folder continues from it; the
checkpoint write goes through :class:`lightning_sr.checkpoint.AtomicCheckpointIO`, so a kill in the
middle of a write never leaves a truncated ``last.ckpt``.

It is a Lightning ``Checkpoint`` callback, so the Trainer runs it after every other callback (as it does with
``ModelCheckpoint``): a checkpoint written at a batch end holds what the other callbacks did at that batch end
(a channel-gate step, a channel removal), and a resumed run continues exactly where the uninterrupted one was.

Under DDP an exception may reach one rank only, while the others wait in a collective call; saving through
``trainer.save_checkpoint`` (which ends in a barrier) would then hang. So on an exception with several
processes, rank 0 writes its own state directly (no collective call) and the other ranks write nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    def __init__(self, dirpath: str, every_n_steps: int = 100, filename: str = "last.ckpt",
                 on_exception: bool = True):
        super().__init__()
        self.path = Path(dirpath) / filename
        self.dirpath = str(dirpath)  # as ModelCheckpoint has it (trainer.checkpoint_callback may be this callback)
        self.every_n_steps = max(1, int(every_n_steps))
        self.save_on_exception = on_exception
        self._saved_step: tuple[int, int] | None = None

    @staticmethod
    def _version(trainer: L.Trainer) -> tuple[int, int]:
        """(step, parameter count): a model changed at the same step (pruned at the last one) is saved again."""
        lm = trainer.lightning_module
        return trainer.global_step, sum(p.numel() for p in lm.parameters()) if lm is not None else 0

    def _save(self, trainer: L.Trainer, why: str) -> None:
        if self._version(trainer) == self._saved_step or trainer.sanity_checking:
            return
        trainer.save_checkpoint(str(self.path))
        self._saved_step = self._version(trainer)
        log.debug("saved %s at step %d (%s)", self.path, trainer.global_step, why)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._save(trainer, "periodic")

    def on_validation_end(self, trainer, pl_module) -> None:
        """A validation right after a periodic save (the same step) changes what a resumed run must know: the best
        score so far (ModelCheckpoint's state, updated just before this callback runs). The run resumed from the
        save before it would not validate that step again, so it would keep a worse later checkpoint as the best
        one. Write last.ckpt again, with the validation in it."""
        step = trainer.global_step
        if trainer.sanity_checking or trainer.state.fn != "fit" or step == 0:
            return
        if step % self.every_n_steps == 0 and self._saved_step is not None and self._saved_step[0] == step:
            self._saved_step = None
            self._save(trainer, "after validation")

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer, "end of training")

    def _save_local(self, trainer: L.Trainer) -> None:
        """Rank 0 writes its own state, without any collective call (DDP: optimiser states are local)."""
        if trainer.global_rank != 0 or self._version(trainer) == self._saved_step:
            return
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, str(self.path))
        self._saved_step = self._version(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not self.save_on_exception or trainer.global_step == 0:
            return
        try:
            if trainer.world_size > 1:
                self._save_local(trainer)
                if trainer.global_rank != 0:
                    return
            else:
                self._save(trainer, type(exception).__name__)
            log.warning("%s: saved %s at step %d; run the same command again to resume",
                        type(exception).__name__, self.path, trainer.global_step)
        except Exception as e:  # never mask the original exception
            log.error("could not save %s after %s: %s", self.path, type(exception).__name__, e)
