"""LR images from HR ones: MATLAB bicubic (BI) or Gaussian blur + subsampling (BD)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lightning_sr.errors import require
from lightning_sr.ops.imresize import bicubic_downscale

DEGRADATIONS = ("bicubic", "bd")


def gaussian_kernel(sigma: float, size: int | None = None) -> torch.Tensor:
    size = size or 2 * math.ceil(3 * sigma) + 1
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return k / k.sum()


def degrade(hr: torch.Tensor, scale: int, kind: str = "bicubic", blur_sigma: float = 1.6) -> torch.Tensor:
    """``hr``: float (C, H, W) or (N, C, H, W) in [0, 255] with H, W multiples of ``scale``.

    Returns the LR image as float in [0, 255], not rounded (callers round to uint8).
    """
    require(kind in DEGRADATIONS, f"data.degradation={kind!r} is not supported; use one of {', '.join(DEGRADATIONS)}")
    if kind == "bicubic":
        return bicubic_downscale(hr, scale)
    x = hr.unsqueeze(0) if hr.dim() == 3 else hr
    k = gaussian_kernel(blur_sigma, 7 if blur_sigma <= 1.6 else None).to(x.dtype)
    pad = k.shape[-1] // 2
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), k.expand(c, 1, *k.shape).contiguous(), groups=c)
    x = x[..., scale // 2::scale, scale // 2::scale]
    return x.squeeze(0) if hr.dim() == 3 else x
