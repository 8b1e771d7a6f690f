"""Building blocks shared by every generator (SRResNet, multi-exit, pruned variants)."""

from __future__ import annotations

import math

from torch import nn

from lightning_sr.errors import require
from lightning_sr.networks.conv import conv_kwargs, make_conv

SCALES = (2, 3, 4, 8)
NORMS = ("batch", "none")
ACTS = ("prelu", "relu", "lrelu")


def make_act(name: str, channels: int = 1) -> nn.Module:
    require(name in ACTS, f"model.act={name!r} is not supported; use one of {', '.join(ACTS)}")
    if name == "prelu":
        return nn.PReLU()
    if name == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(0.2, inplace=True)


def make_norm(name: str, channels: int) -> nn.Module:
    require(name in NORMS, f"model.norm={name!r} is not supported; use one of {', '.join(NORMS)}")
    return nn.BatchNorm2d(channels) if name == "batch" else nn.Identity()


class ResidualBlock(nn.Module):
    """conv-norm-act-conv-norm + identity (SRGAN); with norm='none' it is BasicSR's ResidualBlockNoBN."""

    def __init__(self, channels: int, norm: str = "batch", act: str = "prelu", res_scale: float = 1.0,
                 conv: str | dict = "normal"):
        super().__init__()
        self.conv1 = make_conv(channels, channels, 3, **conv_kwargs(conv))
        self.norm1 = make_norm(norm, channels)
        self.act = make_act(act, channels)
        self.conv2 = make_conv(channels, channels, 3, **conv_kwargs(conv))
        self.norm2 = make_norm(norm, channels)
        self.res_scale = res_scale

    def residual(self, x):
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))

    def forward(self, x):
        return x + self.res_scale * self.residual(x)


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling: log2(scale) x (conv to 4C, PixelShuffle(2), act), or one x3 stage.

    Each stage is ``Sequential(conv, PixelShuffle, act)`` so that pruning code can find the
    convolution that feeds a PixelShuffle (its output channels go in groups of r^2).
    """

    def __init__(self, scale: int, channels: int, act: str = "prelu", conv: str | dict = "normal"):
        require(scale in SCALES, f"scale={scale} is not supported; use one of {', '.join(map(str, SCALES))}")
        factors = [3] if scale == 3 else [2] * int(math.log2(scale))
        stages = [nn.Sequential(make_conv(channels, channels * f * f, 3, **conv_kwargs(conv)), nn.PixelShuffle(f),
                                make_act(act, channels)) for f in factors]
        super().__init__(*stages)
        self.scale = scale
