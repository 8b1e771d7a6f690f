"""PSNR and SSIM as torchmetrics ``Metric`` objects (mean over images, DDP-synchronised by torchmetrics),
for use outside the LightningModules with the same conventions as the functional :func:`psnr`/:func:`ssim`::

    from lightning_sr.metrics import SRPSNR
    m = SRPSNR(crop=4)             # Y channel, 4-pixel border, 8-bit rounding
    for sr, hr in pairs: m.update(sr, hr)
    m.compute()                    # mean PSNR over the images seen (all ranks)
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from lightning_sr.metrics.sr_metrics import psnr, ssim


class _PerImageMean(Metric):
    full_state_update = False
    _fn = staticmethod(psnr)

    def __init__(self, crop: int = 0, y_channel: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.crop, self.y_channel = int(crop), bool(y_channel)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, sr: torch.Tensor, hr: torch.Tensor) -> None:  # type: ignore[override]
        vals = type(self)._fn(sr, hr, self.crop, self.y_channel)
        self.total += vals.sum().to(self.total)
        self.count += vals.numel()

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)


class SRPSNR(_PerImageMean):
    """Mean PSNR (dB) over images: Y channel (BT.601), ``crop`` border pixels removed, 8-bit rounding."""

    higher_is_better = True
    _fn = staticmethod(psnr)


class SRSSIM(_PerImageMean):
    """Mean SSIM over images: MATLAB 11x11 Gaussian window (sigma 1.5), Y channel, ``crop`` border removed."""

    higher_is_better = True
    _fn = staticmethod(ssim)
