"""PSNR-oriented training (SRResNet / MSRResNet style): pixel loss, Adam, step-wise LR schedule."""

from __future__ import annotations

from typing import Any

from lightning_sr.losses import pixel_loss
from lightning_sr.modules.base import SRBaseModule


class SRModule(SRBaseModule):
    def __init__(self, generator_spec: dict[str, Any], scale: int, loss: str = "l1", **kwargs: Any):
        super().__init__(generator_spec, scale, loss=loss, **kwargs)
        self.pixel_loss = pixel_loss(loss)

    def training_step(self, batch, batch_idx):
        sr = self(self._prep(batch["lr"]))
        loss = self.pixel_loss(sr, batch["hr"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = self.make_optimizer([p for p in self.generator.parameters() if p.requires_grad])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.make_scheduler(opt), "interval": "step"}}
