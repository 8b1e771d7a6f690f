"""Physical channel pruning as a callback (``compression=channel_prune``): remove ``ratio`` of the prunable
channels once, in ``setup(stage="fit")``, then fine-tune.

What is removed and how (Torch-Pruning groups, protection, PixelShuffle stages, importance) is
:mod:`lightning_sr.transforms.channels`; this module only schedules it, measures before and after and logs it
(:class:`~lightning_sr.compression.base.StructuralCompression`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L

from lightning_sr.compression.base import (
    StructuralCompression,
    calibration_batch,
    generator_of,
    require_sr_module,
)
from lightning_sr.errors import check, require
from lightning_sr.transforms.channels import KEY, ChannelPlan, nothing_prunable_message, validate_args


class ChannelPruning(StructuralCompression):
    """Remove ``ratio`` of the prunable channels (Torch-Pruning + PixelShuffle-aware upsampler), then fine-tune."""

    name = "channel_prune"

    def __init__(self, ratio: float = 0.5, importance: str = "l2", global_pruning: bool = False,
                 protect: Sequence[str] | None = None, upsampler: str = "group", round_to: int | None = None,
                 calib_images: int = 1, calib_crop: int = 48, evaluate: bool = True, eval_images: int | None = None):
        protect = list(protect) if protect is not None and not isinstance(protect, str) else protect
        validate_args(ratio, importance, global_pruning, protect, upsampler, round_to)
        check(isinstance(calib_images, int) and calib_images > 0, f"{KEY}.calib_images", calib_images,
              "is impossible; use an integer > 0")
        check(isinstance(calib_crop, int) and calib_crop > 0, f"{KEY}.calib_crop", calib_crop,
              "is impossible; use an LR crop size > 0")
        super().__init__(evaluate, eval_images)
        self.ratio, self.importance, self.global_pruning = float(ratio), importance, global_pruning
        self.protect, self.upsampler, self.round_to = protect, upsampler, round_to
        self.calib_images, self.calib_crop = calib_images, calib_crop
        self._plan: ChannelPlan | None = None

    def config(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "importance": self.importance, "global_pruning": self.global_pruning,
                "protect": None if self.protect is None else list(self.protect), "upsampler": self.upsampler, "round_to": self.round_to}

    def preflight(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The module kind only: ``check`` traces the generator and draws random inputs (the global RNG), so it runs
        once, in ``setup``."""
        generator_of(pl_module, KEY)
        require_sr_module(pl_module, KEY)

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_sr_module(pl_module, KEY)
        gen = pl_module.generator
        self._plan = ChannelPlan(gen, self.ratio, self.importance, self.global_pruning, self.protect,
                                 self.upsampler, self.round_to)
        require(self._plan.prunable > 0, nothing_prunable_message(gen, self.protect, self.upsampler))

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        plan, self._plan = self._plan, None
        calib = calibration_batch(trainer, pl_module, self.calib_images, self.calib_crop) \
            if self.importance == "taylor" else None
        return plan.prune(calib)
