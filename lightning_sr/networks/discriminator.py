"""SRGAN discriminator: VGG-style conv stack (stride-2 every other layer), sized from the HR patch."""

from __future__ import annotations

from torch import nn

from lightning_sr.errors import require
from lightning_sr.networks.conv import make_conv


class VGGDiscriminator(nn.Module):
    def __init__(self, patch_size: int = 96, channels: int = 64, in_channels: int = 3, norm: str = "batch",
                 fc_features: int = 1024):
        super().__init__()
        require(patch_size >= 16 and patch_size % 16 == 0,
                f"discriminator needs an HR patch that is a multiple of 16 (got data.patch_size={patch_size})")
        layers, c_in = [], in_channels
        widths = [channels, channels, channels * 2, channels * 2, channels * 4, channels * 4, channels * 8,
                  channels * 8]
        for i, c_out in enumerate(widths):
            stride = 1 if i % 2 == 0 else 2
            layers.append(make_conv(c_in, c_out, 3, stride, 1, bias=(i == 0 or norm == "none")))
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        spatial = patch_size // 16
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * spatial * spatial, fc_features), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(fc_features, 1),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
