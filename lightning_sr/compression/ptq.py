"""Post-training quantization to a real int8 model (``compression=ptq``): no training.

At the start of training it stops the trainer; at the end of fit it captures the generator, calibrates it on
``calib_batches`` training batches (or whole validation images) and converts it; the int8 model is written and
measured as QAT's is (:meth:`~lightning_sr.compression.quantization.Quantization.finish`).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from lightning_sr.compression.quantization import Quantization, pt2e_quant
from lightning_sr.errors import check, require

log = logging.getLogger(__name__)


class PTQ(Quantization):
    """Post-training quantization: calibrate on ``calib_batches`` batches, convert; the run does not train."""

    name = "ptq"
    qat = False
    SOURCES = ("train", "val")

    def __init__(self, calib_batches: int = 32, calibrate: str = "train", **kwargs: Any):
        super().__init__(**kwargs)
        check(isinstance(calib_batches, int) and not isinstance(calib_batches, bool) and calib_batches >= 1,
              f"{self.key}.calib_batches", calib_batches,
              "is impossible; calibration needs at least one batch (e.g. 32)")
        check(calibrate in self.SOURCES, f"{self.key}.calibrate", calibrate,
              "is not supported; use train (training batches) or val (validation images)")
        self.calib_batches, self.calibrate = calib_batches, calibrate

    def config(self) -> dict[str, Any]:
        return {**super().config(), "calib_batches": self.calib_batches, "calibrate": self.calibrate}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.preflight(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.finished:
            trainer.should_stop = True  # post-training quantization: no training step
            log.info("%s: no training (post-training quantization at the end of fit)", self.name)

    def batches(self, trainer: L.Trainer):
        """LR batches for calibration: the first training batches, or whole validation images one at a time."""
        dm = trainer.datamodule
        if self.calibrate == "train":
            loader = dm.train_dataloader()
            for i, batch in enumerate(loader):
                if i >= self.calib_batches:
                    return
                yield batch["lr"]
        else:
            sets = dm.sets("val") if hasattr(dm, "sets") else []
            require(bool(sets), f"{self.key}.calibrate=val needs validation images; use calibrate=train")
            n = 0
            for ds in sets:
                for i in range(len(ds)):
                    if n >= self.calib_batches:
                        return
                    yield ds[i]["lr"].unsqueeze(0)
                    n += 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.finished:
            return
        gen = self.check_module(pl_module)
        self.open_entry(trainer, pl_module)
        device = next(gen.parameters()).device
        gm, outputs, _ = pt2e_quant.capture(gen.cpu(), training=False)
        gen.to(device)
        prepared = pt2e_quant.prepare(gm, self.settings, qat=False)
        missed = self.check_coverage(prepared, gen)
        n = 0
        with torch.no_grad():
            for lr in self.batches(trainer):
                prepared(lr.float().cpu())
                n += 1
        require(n > 0, f"{self.key}: no calibration batch could be read ({self.calibrate} data is empty)")
        self.entry["fp32_layers_left"] = missed
        self.finish(trainer, pl_module, prepared, outputs, {"calibration": {"source": self.calibrate,
                                                                             "batches": n}})



__all__ = ["PTQ"]
