"""Building blocks shared by every generator (SRResNet, multi-exit, pruned variants)."""

from __future__ import annotations

import math

from torch import nn

from lightning_sr.errors import require

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

    def __init__(self, channels: int, norm: str = "batch", act: str = "prelu", res_scale: float = 1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = make_norm(norm, channels)
        self.act = make_act(act, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
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

    def __init__(self, scale: int, channels: int, act: str = "prelu"):
        require(scale in SCALES, f"scale={scale} is not supported; use one of {', '.join(map(str, SCALES))}")
        stages = []
        if scale == 3:
            stages.append(nn.Sequential(nn.Conv2d(channels, channels * 9, 3, padding=1), nn.PixelShuffle(3),
                                        make_act(act, channels)))
        else:
            for _ in range(int(math.log2(scale))):
                stages.append(nn.Sequential(nn.Conv2d(channels, channels * 4, 3, padding=1), nn.PixelShuffle(2),
                                            make_act(act, channels)))
        super().__init__(*stages)
        self.scale = scale
