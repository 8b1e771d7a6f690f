"""What every datamodule of lightning-sr shares: named evaluation sets with roles, the resumable stream, and the
dataloaders built from them (one implementation; a datamodule says only what differs: its batch sizes, workers and
collate function)."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from lightning_sr.data.datasets import TEST, VAL
from lightning_sr.data.samplers import ResumableSampler, ShardSampler


class EvalSetsMixin:
    """``eval_sets`` (datasets with ``.name`` and ``.role``): validation sets pick checkpoints, test sets do not.
    ``train_dataloader`` streams ``train_set`` from where training stands (:class:`ResumableSampler`, sharded over
    ranks); ``val_dataloader``/``test_dataloader`` give one loader per evaluation set of the stage, split over ranks
    without padding (:class:`ShardSampler`)."""

    eval_sets: list[Any]
    train_set: Any
    trainer: Any
    cfg: Any
    pin_memory_default = False  # data.pin_memory when it is not set

    def _loader_kwargs(self) -> dict:
        nw = int(self.cfg.get("num_workers", 0))
        return dict(num_workers=nw, pin_memory=bool(self.cfg.get("pin_memory", self.pin_memory_default)),
                    persistent_workers=nw > 0)

    def train_batch_size(self) -> int:
        return int(self.cfg["batch_size"])

    def eval_loader_kwargs(self) -> dict:
        """DataLoader arguments of the evaluation loaders (batch size included); default: one image per batch, no
        worker processes."""
        return {"batch_size": 1}

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        bs = self.train_batch_size()
        sampler = ResumableSampler(len(self.train_set), bs, self._batches_done, rank, world)
        return DataLoader(self.train_set, batch_size=bs, sampler=sampler, drop_last=True, **self._loader_kwargs())

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        rank, world = self._rank_world()
        kw = self.eval_loader_kwargs()
        return [DataLoader(d, sampler=ShardSampler(len(d), rank, world), **kw) for d in self.sets(stage)]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(VAL)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(TEST)

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
