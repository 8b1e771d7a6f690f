"""What every datamodule of lightning-sr shares: named evaluation sets with roles, and the resumable stream."""

from __future__ import annotations

from typing import Any

from lightning_sr.data.datasets import VAL


class EvalSetsMixin:
    """``eval_sets`` (datasets with ``.name`` and ``.role``): validation sets pick checkpoints, test sets do not."""

    eval_sets: list[Any]
    trainer: Any

    @property
    def eval_names(self) -> list[str]:
        return [d.name for d in self.eval_sets]

    def sets(self, stage: str) -> list[Any]:
        """``val``: the validation sets (checkpoint selection); ``test``: every set, validation and test."""
        return [d for d in self.eval_sets if d.role == VAL] if stage == VAL else list(self.eval_sets)

    def set_names(self, stage: str) -> list[str]:
        return [d.name for d in self.sets(stage)]

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _batches_done(self) -> int:
        """Training batches consumed so far (not optimiser steps): the data stream continues from here."""
        t = self.trainer
        if t is None:
            return 0
        fn = getattr(t.lightning_module, "batches_done", None)
        return int(fn()) if fn is not None else int(t.global_step)
