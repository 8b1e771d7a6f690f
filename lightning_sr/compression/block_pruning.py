"""Residual-block pruning as a callback (``compression=block_prune``): keep ``keep`` of the trained model's
residual blocks, chosen by ``criterion`` (``last``, ``l1``, ``output_delta``), once in ``setup(stage="fit")``, then
fine-tune. The scores and the removal are :mod:`lightning_sr.transforms.blocks`.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from lightning_sr.compression.base import StructuralCompression, calibration_batch
from lightning_sr.errors import check, check_choice, require
from lightning_sr.transforms.blocks import (
    CRITERIA,
    l1_scores,
    output_delta_scores,
    prune_blocks,
    residual_blocks,
    select_blocks,
)


class BlockPruning(StructuralCompression):
    """Keep ``keep`` residual blocks of the model chosen by ``criterion`` (then training fine-tunes it)."""

    name = "block_prune"

    def __init__(self, keep: int = 8, criterion: str = "last", calib_images: int = 1, calib_crop: int = 48,
                 evaluate: bool = True, eval_images: int | None = None):
        key = f"compression.{self.name}"
        check(isinstance(keep, int) and not isinstance(keep, bool) and keep >= 0, f"{key}.keep", keep,
              "is impossible; use the number of residual blocks to keep (an integer >= 0)")
        check_choice(f"{key}.criterion", criterion, CRITERIA)
        check(isinstance(calib_images, int) and calib_images > 0, f"{key}.calib_images", calib_images,
              "is impossible; use an integer > 0")
        check(isinstance(calib_crop, int) and calib_crop > 0, f"{key}.calib_crop", calib_crop,
              "is impossible; use an LR crop size > 0")
        super().__init__(evaluate, eval_images)
        self.keep, self.criterion = keep, criterion
        self.calib_images, self.calib_crop = calib_images, calib_crop

    def config(self) -> dict[str, Any]:
        return {"keep": self.keep, "criterion": self.criterion}

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = len(residual_blocks(pl_module.generator))
        key = f"compression.{self.name}.keep"
        require(n > 0, f"{key}={self.keep}: the model has no residual blocks to prune (res_blocks=0); "
                       f"start from a trained model with blocks (model.init_from=...)")
        require(self.keep <= n, f"{key}={self.keep} is more than the model's {n} residual blocks; "
                                f"use a value between 0 and {n}")

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        gen = pl_module.generator
        n = len(residual_blocks(gen))
        scores = None
        if self.criterion == "l1":
            scores = l1_scores(gen)
        elif self.criterion == "output_delta":
            lr, _ = calibration_batch(trainer, pl_module, self.calib_images, self.calib_crop)
            scores = output_delta_scores(gen, lr)
        kept = select_blocks(scores, n, self.keep)
        prune_blocks(gen, kept)
        pl_module.generator_spec = {**pl_module.generator_spec, "res_blocks": len(kept)}
        out: dict[str, Any] = {"blocks_before": n, "blocks_after": len(kept), "kept_blocks": kept,
                               "removed_blocks": [i for i in range(n) if i not in kept]}
        if scores is not None:
            out["scores"] = [round(s, 6) for s in scores]
        return out
