"""Image SR modules: :class:`SRBaseModule` (any SR generator with the SR evaluation path: ``model.module=eval``,
``evaluate.py``, and the base of every SR module) and :class:`SRModule` (PSNR-oriented training, SRResNet /
MSRResNet style: pixel loss, Adam, step-wise LR schedule)."""

from __future__ import annotations

from typing import Any

from lightning_sr.lit_modules.base import TaskModule
from lightning_sr.lit_modules.evaluation import SREvaluation
from lightning_sr.losses import pixel_loss
from lightning_sr.metrics import build_lpips


class SRBaseModule(SREvaluation, TaskModule):
    """A generator evaluated as SR (see :mod:`lightning_sr.lit_modules.evaluation`); trains nothing by itself."""

    def __init__(self, generator_spec: dict[str, Any], scale: int, **kwargs: Any):
        super().__init__(generator_spec, scale, **kwargs)
        # LPIPS is a metric, not part of the model: kept out of the state dict and parameter count.
        self._lpips = [build_lpips(self.metrics_cfg.get("lpips"))]


class SRModule(SRBaseModule):
    def __init__(self, generator_spec: dict[str, Any], scale: int, loss: str = "l1", **kwargs: Any):
        super().__init__(generator_spec, scale, loss=loss, **kwargs)
        self.pixel_loss = pixel_loss(loss)

    def training_step(self, batch, batch_idx):
        lr, hr = self._prep(batch["lr"]), batch["hr"]
        sr = self(lr)
        return self.compose_loss({"pixel": self.pixel_loss(sr, hr)}, lr=lr, hr=hr, outputs={"": sr})

    def configure_optimizers(self):
        opt = self.make_optimizer(self.generator_parameters())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.make_scheduler(opt), "interval": "step"}}
