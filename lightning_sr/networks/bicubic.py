"""The bicubic baseline as a 'model' (MATLAB-compatible upscaling, no parameters)."""

from __future__ import annotations

from torch import nn

from lightning_sr.networks.registry import register
from lightning_sr.ops.imresize import bicubic_upscale


@register("bicubic", keys=("scale",))
class Bicubic(nn.Module):
    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return bicubic_upscale(x, self.scale).clamp(0, 1)
