"""TecoGAN's spatio-temporal discriminator: it judges frame *triplets* with their motion and their LR input.

Input per triplet (27 channels): the three frames (real or generated), the same three frames warped to the
centre frame by the flow of the LR frames (a frame of zeros for the centre one's own flow; the border, 1 - 0.75 of
the side, zeroed: warping is unreliable there), and the bicubic-upsampled LR triplet as the condition.
Layers: 3x3 conv to ``channels`` + LeakyReLU, four 4x4 stride-2 convs (channels x1, x1, x2, x4) with BatchNorm and
LeakyReLU 0.2, and a linear layer to one logit (its size follows the HR patch, a multiple of 16).
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sr.errors import require
from lightning_sr.networks.conv import make_conv


class SpatioTemporalDiscriminator(nn.Module):
    def __init__(self, patch_size: int = 128, channels: int = 64, in_channels: int = 27):
        super().__init__()
        require(patch_size >= 16 and patch_size % 16 == 0,
                f"the video discriminator needs an HR patch that is a multiple of 16 (got data.patch_size={patch_size})")
        widths = [channels, channels, channels * 2, channels * 4]
        layers: list[nn.Module] = [make_conv(in_channels, channels, 3), nn.LeakyReLU(0.2, inplace=True)]
        c_in = channels
        for c_out in widths:
            layers += [make_conv(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in * (patch_size // 16) ** 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
