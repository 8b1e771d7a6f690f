"""Frame-recurrent video SR (FRVSR / TecoGAN's generator, "FRNet"): FNet + SRNet.

* **FNet** estimates the motion between two LR frames: encoder 32/64/128 channels (two 3x3 convs and a max-pool
  each), decoder 256/128/64 (two 3x3 convs then x2 bilinear upsampling each), LeakyReLU 0.2, flow = tanh * 24 LR
  pixels. ``flow = fnet(lr_curr, lr_prev)`` maps every pixel p of the current frame to p + flow(p) in the previous
  one: :func:`backward_warp` of the previous frame by it gives the current frame.
* **SRNet** super-resolves the current LR frame given the previous HR output warped to it (by the x``scale``
  upsampled flow) and folded to LR size by space-to-depth: a 3x3 conv + ReLU head on (3 + 3 scale^2) channels,
  ``res_blocks`` residual blocks (conv-ReLU-conv + identity, :class:`~lightning_sr.networks.blocks.ResidualBlock`) in
  ``body``, two x2 ``ConvTranspose2d`` upsamplers (x4), a 3x3 conv to RGB, plus the bicubic upsampling of the LR
  frame (MATLAB's cubic kernel; ``skip_align=corner``, the default, samples top-left aligned like TecoGAN's own
  upsampler, which matches the BD degradation that keeps pixels 0, 4, 8...; ``center`` for bicubic-degraded data).
* **Recurrence**: the first frame gets a zero previous output. Training runs :meth:`FRNet.forward_sequence` over a
  whole clip (back-propagating through every frame); inference runs :meth:`FRNet.infer_sequence`, which streams
  frames and holds only the previous LR frame and HR output: constant memory in the clip length.
* ``forward(lr)`` is one recurrent step on a single frame (previous frame = itself, zero previous output): the
  per-frame cost that ``cost.model_cost`` measures, FNet included.

``model.conv=recycle`` (Weight Recycle, :mod:`lightning_sr.networks.recycle`) recycles the residual blocks'
convolutions (SRNet's other convolutions between head and tail are transposed ones, which stay ordinary).

The SR layout (:mod:`lightning_sr.networks.layout`) lives in ``srnet`` (``blocks_owner``): block pruning acts on
``srnet.body``; channel pruning leaves FNet and the SRNet head and tail alone by default (``default_protect``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lightning_sr.errors import require
from lightning_sr.networks.blocks import ResidualBlock
from lightning_sr.networks.conv import is_conv, make_conv
from lightning_sr.networks.recycle import check_width, conv_choice
from lightning_sr.networks.registry import register
from lightning_sr.ops.imresize import ALIGNS, bicubic_upscale

VIDEO_SCALES = (2, 4, 8)


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` at p + flow(p) (flow in pixels, channel 0 = x): bilinear, border padding (kornia's remap)."""
    from kornia.geometry.transform import remap
    from kornia.utils import create_meshgrid

    h, w = x.shape[-2:]
    grid = create_meshgrid(h, w, normalized_coordinates=False, device=x.device, dtype=x.dtype)  # (1, H, W, 2)
    map_x = grid[..., 0] + flow[:, 0]
    map_y = grid[..., 1] + flow[:, 1]
    return remap(x, map_x, map_y, mode="bilinear", padding_mode="border", align_corners=True)


def upscale_flow(flow: torch.Tensor, scale: int) -> torch.Tensor:
    """LR flow -> HR flow: x ``scale`` bilinear, displacements x ``scale``."""
    return F.interpolate(flow, scale_factor=scale, mode="bilinear", align_corners=False) * scale


class FNet(nn.Module):
    def __init__(self, in_channels: int = 3):
        super().__init__()

        def double(cin, cout):
            return [make_conv(cin, cout, 3), nn.LeakyReLU(0.2, inplace=True), make_conv(cout, cout, 3),
                    nn.LeakyReLU(0.2, inplace=True)]

        self.encoder = nn.Sequential(*double(2 * in_channels, 32), nn.MaxPool2d(2), *double(32, 64), nn.MaxPool2d(2),
                                     *double(64, 128), nn.MaxPool2d(2))
        self.decoder = nn.ModuleList([nn.Sequential(*double(128, 256)), nn.Sequential(*double(256, 128)),
                                      nn.Sequential(*double(128, 64))])
        self.flow = nn.Sequential(make_conv(64, 32, 3), nn.LeakyReLU(0.2, inplace=True), make_conv(32, 2, 3))

    def forward(self, lr_curr: torch.Tensor, lr_prev: torch.Tensor) -> torch.Tensor:
        """Flow (N, 2, H, W) in LR pixels; any H, W (reflect-padded to a multiple of 8 inside)."""
        h, w = lr_curr.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        x = torch.cat([lr_curr, lr_prev], dim=1)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        out = self.encoder(x)
        for block in self.decoder:
            out = F.interpolate(block(out), scale_factor=2, mode="bilinear", align_corners=False)
        return (torch.tanh(self.flow(out)) * 24.0)[..., :h, :w]


class SRNet(nn.Module):
    """The SR layout (:mod:`lightning_sr.networks.layout`) of the video generator: head, body, upsampler, tail."""

    body_tail = None  # no long skip: the blocks feed the upsampler

    def __init__(self, res_blocks: int = 10, channels: int = 64, scale: int = 4, in_channels: int = 3,
                 conv: str = "normal", skip_align: str = "corner", recycle: dict | None = None):
        super().__init__()
        block_conv = conv_choice(conv, recycle)  # model.conv: the residual blocks' convolutions
        if res_blocks:
            check_width(conv, "srnet.body.0.conv1", channels)
        self.scale, self.skip_align = scale, skip_align
        self.head = nn.Sequential(make_conv(in_channels * (scale * scale + 1), channels, 3), nn.ReLU(inplace=True))
        self.body = nn.ModuleList(ResidualBlock(channels, "none", "relu", 1.0, conv=block_conv)
                                  for _ in range(res_blocks))
        ups: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            ups += [nn.ConvTranspose2d(channels, channels, 3, 2, 1, output_padding=1), nn.ReLU(inplace=True)]
        self.upsampler = nn.Sequential(*ups)
        self.tail = make_conv(channels, in_channels, 3)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal convolutions (fan-in, for the ReLUs), the residual blocks' scaled by 0.1 (each block starts
        close to identity, BasicSR's practice), zero biases, and a zero output conv: training starts exactly at the
        bicubic upsampling. (Scaling the head and upsamplers by 0.1 as well lets their ReLUs die in the first steps.)"""
        for name, m in self.named_modules():
            if is_conv(m):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                if name.startswith("body."):
                    m.weight.data.mul_(0.1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor, hr_prev_folded: torch.Tensor) -> torch.Tensor:
        feat = self.head(torch.cat([lr, hr_prev_folded], dim=1))
        for block in self.body:
            feat = block(feat)
        return self.tail(self.upsampler(feat)) + bicubic_upscale(lr, self.scale, self.skip_align)


@register("frnet", keys=("res_blocks", "channels", "scale", "conv", "skip_align", "recycle"))
class FRNet(nn.Module):
    """FNet + SRNet, frame-recurrent (see the module docstring)."""

    default_protect = ("fnet", "srnet.head", "srnet.tail")
    blocks_owner = "srnet"  # block pruning acts on srnet.body
    in_channels = 3

    def __init__(self, res_blocks: int = 10, channels: int = 64, scale: int = 4, conv: str = "normal",
                 skip_align: str = "corner", recycle: dict | None = None):
        super().__init__()
        require(skip_align in ALIGNS, f"model.skip_align={skip_align!r} is not supported; use one of {', '.join(ALIGNS)}")
        require(scale in VIDEO_SCALES, f"scale={scale} is not supported by the video generator (two-fold transposed "
                                       f"convolutions); use one of {', '.join(map(str, VIDEO_SCALES))}")
        require(isinstance(res_blocks, int) and res_blocks >= 0,
                f"model.res_blocks={res_blocks} is impossible; use an integer >= 0")
        require(isinstance(channels, int) and channels > 0, f"model.channels={channels} is impossible; use an integer > 0")
        self.scale, self.res_blocks = scale, res_blocks
        self.fnet = FNet()
        self.srnet = SRNet(res_blocks, channels, scale, conv=conv, skip_align=skip_align, recycle=recycle)

    def step(self, lr_curr: torch.Tensor, lr_prev: torch.Tensor, hr_prev: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: (HR output, LR flow)."""
        lr_flow = self.fnet(lr_curr, lr_prev)
        warped = backward_warp(hr_prev, upscale_flow(lr_flow, self.scale))
        return self.srnet(lr_curr, F.pixel_unshuffle(warped, self.scale)), lr_flow

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        n, c, h, w = lr.shape
        return self.step(lr, lr, lr.new_zeros(n, c, h * self.scale, w * self.scale))[0]

    def forward_sequence(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Whole clip (N, T, C, H, W) -> ``hr`` (N, T, C, sH, sW), ``lr_flow`` (N, T-1, 2, H, W) of frames 1..T-1,
        and the frames it relates (``lr_prev``, ``lr_curr``), for the warping loss."""
        n, t, c, h, w = lr.shape
        lr_prev = lr[:, :-1].reshape(n * (t - 1), c, h, w)
        lr_curr = lr[:, 1:].reshape(n * (t - 1), c, h, w)
        lr_flow = self.fnet(lr_curr, lr_prev)  # every flow of the clip in one batched call
        hr_flow = upscale_flow(lr_flow, self.scale).view(n, t - 1, 2, h * self.scale, w * self.scale)
        hr_prev = self.srnet(lr[:, 0], lr.new_zeros(n, c * self.scale ** 2, h, w))
        outs = [hr_prev]
        for i in range(1, t):
            warped = backward_warp(hr_prev, hr_flow[:, i - 1])
            hr_prev = self.srnet(lr[:, i], F.pixel_unshuffle(warped, self.scale))
            outs.append(hr_prev)
        return {"hr": torch.stack(outs, dim=1), "lr_flow": lr_flow, "lr_prev": lr_prev, "lr_curr": lr_curr}

    @torch.no_grad()
    def infer_sequence(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Stream LR frames (each (N, C, H, W)) -> HR frames, holding only the previous LR frame and HR output."""
        lr_prev = hr_prev = None
        for lr in frames:
            if hr_prev is None:
                n, c, h, w = lr.shape
                lr_prev, hr_prev = lr, lr.new_zeros(n, c, h * self.scale, w * self.scale)
            hr_prev, _ = self.step(lr, lr_prev, hr_prev)
            lr_prev = lr
            yield hr_prev
