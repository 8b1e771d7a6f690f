"""SRResNet generator (Ledig et al. 2017), the generator of SRGAN.

head (9x9 conv + act) -> ``body`` (an ``nn.ModuleList`` of residual blocks, indexable so that
block pruning and early exits address blocks by position) -> ``body_tail`` (conv + norm) with
the long skip from the head -> ``upsampler`` -> ``tail`` (9x9 conv to RGB), plus an optional
global skip that adds the bicubic/bilinear upscaled input (the SR layout, :mod:`lightning_sr.networks.layout`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_sr.errors import require
from lightning_sr.networks.blocks import SCALES, ResidualBlock, Upsampler, make_act, make_norm
from lightning_sr.networks.conv import conv_layers, make_conv
from lightning_sr.networks.recycle import check_scope, check_width, conv_choice
from lightning_sr.networks.registry import register
from lightning_sr.ops.imresize import bicubic_upscale

SKIPS = ("bicubic", "bilinear", "none")


def upscale_input(x: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    if mode == "bicubic":
        return bicubic_upscale(x, scale)
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def validate_srresnet_args(res_blocks: int, channels: int, scale: int, norm: str, skip: str) -> None:
    """One place for the checks that every SRResNet-shaped model shares."""
    require(isinstance(res_blocks, int) and res_blocks >= 0,
            f"model.res_blocks={res_blocks} is impossible; use an integer >= 0")
    require(isinstance(channels, int) and channels > 0, f"model.channels={channels} is impossible; use an integer > 0")
    require(scale in SCALES, f"scale={scale} is not supported; use one of {', '.join(map(str, SCALES))}")
    require(skip in SKIPS, f"model.skip={skip!r} is not supported; use one of {', '.join(SKIPS)}")
    make_norm(norm, 1)


def srresnet_convs(conv: str, conv_scope: str, recycle, res_blocks: int, channels: int) -> tuple[dict, dict]:
    """``model.conv`` of an SRResNet-shaped model as (residual blocks' conv, body_tail/upsampler conv): with
    ``conv_scope=residual`` only the blocks use it, with ``all`` every convolution but the 9x9 head and tail.
    A recycled layer of a width not divisible by 4 is one line naming it (before anything is built)."""
    blocks = conv_choice(conv, recycle)
    check_scope(conv_scope)
    first = "body.0.conv1" if res_blocks > 0 else "body_tail.0" if conv_scope == "all" else None
    if first:
        check_width(conv, first, channels)
    return blocks, blocks if conv_scope == "all" else {"kind": "normal"}


SRRESNET_KEYS = ("res_blocks", "channels", "scale", "norm", "act", "skip", "res_scale", "conv", "conv_scope", "recycle")


@register("srresnet", keys=SRRESNET_KEYS)
class SRResNet(nn.Module):
    """The SR layout (:mod:`lightning_sr.networks.layout`): head, body, body_tail, upsampler, tail."""

    default_protect = ("head", "tail")  # channel pruning keeps the image-facing layers unless told otherwise

    def __init__(self, res_blocks: int = 16, channels: int = 64, scale: int = 4, norm: str = "batch",
                 act: str = "prelu", skip: str = "none", in_channels: int = 3, res_scale: float = 1.0,
                 conv: str = "normal", conv_scope: str = "residual", recycle: dict | None = None):
        super().__init__()
        validate_srresnet_args(res_blocks, channels, scale, norm, skip)
        block_conv, inner_conv = srresnet_convs(conv, conv_scope, recycle, res_blocks, channels)
        self.scale, self.skip = scale, skip
        self.head = nn.Sequential(make_conv(in_channels, channels, 9), make_act(act, channels))
        self.body = nn.ModuleList(ResidualBlock(channels, norm, act, res_scale, conv=block_conv)
                                  for _ in range(res_blocks))
        self.body_tail = nn.Sequential(make_conv(channels, channels, 3, **inner_conv), make_norm(norm, channels))
        self.upsampler = Upsampler(scale, channels, act, conv=inner_conv)
        self.tail = make_conv(channels, in_channels, 9)
        self.init_weights()

    def init_weights(self) -> None:
        """BasicSR's MSRResNet initialisation: Kaiming-normal convolutions scaled by 0.1 (the trunk starts close
        to identity, which trains much faster than PyTorch's default), zero biases. With a global skip the output
        convolution starts at zero, so training starts exactly at the upscaled input."""
        for _, m in conv_layers(self):  # ordinary and recycled convolutions (a recycled one: its stored quarter)
            if getattr(m, "weight", None) is not None:
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                m.weight.data.mul_(0.1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.skip != "none":
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def trunk(self, feat: torch.Tensor, blocks=None) -> torch.Tensor:
        for block in self.body if blocks is None else blocks:
            feat = block(feat)
        return feat

    def reconstruct(self, head_feat: torch.Tensor, trunk_feat: torch.Tensor, x: torch.Tensor,
                    upsampler: nn.Module | None = None, body_tail: nn.Module | None = None,
                    tail: nn.Module | None = None) -> torch.Tensor:
        """Long skip + upsampling + output conv (+ global skip). Exits pass their own heads."""
        feat = (body_tail or self.body_tail)(trunk_feat) + head_feat
        out = (tail or self.tail)((upsampler or self.upsampler)(feat))
        if self.skip != "none":
            out = out + upscale_input(x, self.scale, self.skip)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return self.reconstruct(h, self.trunk(h), x)
