"""LR images from HR ones.

* ``bicubic`` (BI): MATLAB ``imresize(hr, 1/scale, 'bicubic')``.
* ``bd``: the image-SR BD of SRMD/RCAN: 7x7 Gaussian (``blur_sigma``, 1.6), replicate borders, then every
  ``scale``-th pixel starting at ``scale // 2``.
* ``gaussian``: the video-SR BD of TecoGAN/FRVSR: OpenCV's ``GaussianBlur(img, (0, 0), sigma)`` (``blur_sigma``,
  1.5) then every ``scale``-th pixel starting at 0, bit-exact for 8-bit images: OpenCV blurs 8-bit images in fixed
  point (kernel in 8 fractional bits, ``ksize = round(6 sigma + 1) | 1``, reflect-101 borders, one rounding at the
  end), which :func:`gaussian_bd` reproduces with integer-valued kernels (kornia's separable filter, exact in float).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lightning_sr.errors import require
from lightning_sr.ops.imresize import bicubic_downscale

DEGRADATIONS = ("bicubic", "bd", "gaussian")


def gaussian_kernel(sigma: float, size: int | None = None) -> torch.Tensor:
    size = size or 2 * math.ceil(3 * sigma) + 1
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return k / k.sum()


def opencv_fixed_kernel(sigma: float) -> list[int]:
    """OpenCV's bit-exact Gaussian kernel for 8-bit images: ``ksize = round(6 sigma + 1) | 1`` taps in units of 1/256,
    rounded with error diffusion from the outside in, the centre tap taking the rest (the taps sum to 256)."""
    n = int(round(sigma * 6 + 1)) | 1
    c = (n - 1) // 2
    vals = [math.exp(-((i - c) ** 2) / (2 * sigma * sigma)) for i in range(c)]
    total = 2 * sum(vals) + 1.0
    taps, err, acc = [0] * n, 0.0, 0
    for i in range(c):
        adj = vals[i] / total * 256 + err
        v = int(round(adj))  # cvRound: round half to even, as Python's round
        err = adj - v
        taps[i] = taps[n - 1 - i] = v
        acc += v
    taps[c] = 256 - 2 * acc
    return taps


def gaussian_bd(hr: torch.Tensor, scale: int, sigma: float = 1.5) -> torch.Tensor:
    """OpenCV ``GaussianBlur(hr, (0, 0), sigma)[::scale, ::scale]`` of an 8-bit image given as float (C, H, W) or
    (N, C, H, W) in [0, 255]; returns float LR values that are already whole numbers (exact for integer input)."""
    from kornia.filters import filter2d_separable

    x = hr.unsqueeze(0) if hr.dim() == 3 else hr
    k = torch.tensor([opencv_fixed_kernel(sigma)], dtype=torch.float64, device=x.device)
    y = filter2d_separable(x.round().double(), k, k, border_type="reflect")  # sums of integers: exact
    y = torch.floor((y + 32768.0) / 65536.0)  # OpenCV's single rounding: (v + 2^15) >> 16
    y = y[..., ::scale, ::scale].to(hr.dtype)
    return y.squeeze(0) if hr.dim() == 3 else y


def flip_shift(kind: str, scale: int) -> int:
    """HR pixels by which a flipped training patch's HR crop moves so that it stays aligned with its flipped LR crop.

    LR pixel j sits at HR ``s j + o`` (``o``: where the degradation samples); flipping a patch maps it to
    ``s j' + (s - 1 - o)``, so the HR crop must move by ``2 o + 1 - s``: 0 for ``bicubic`` (``o = (s - 1) / 2``,
    symmetric), 1 for ``bd`` with an even scale (``o = s // 2``), ``1 - s`` for ``gaussian`` (``o = 0``, TecoGAN's
    corner-aligned BD). Transposes (and so 90-degree rotations) need nothing: both axes have the same offset."""
    require(kind in DEGRADATIONS, f"data.degradation={kind!r} is not supported; use one of {', '.join(DEGRADATIONS)}")
    if kind == "bicubic":
        return 0
    offset = scale // 2 if kind == "bd" else 0
    return 2 * offset + 1 - scale


def degrade(hr: torch.Tensor, scale: int, kind: str = "bicubic", blur_sigma: float = 1.6) -> torch.Tensor:
    """``hr``: float (C, H, W) or (N, C, H, W) in [0, 255] with H, W multiples of ``scale``.

    Returns the LR image as float in [0, 255], not rounded (callers round to uint8).
    """
    require(kind in DEGRADATIONS, f"data.degradation={kind!r} is not supported; use one of {', '.join(DEGRADATIONS)}")
    if kind == "bicubic":
        return bicubic_downscale(hr, scale)
    if kind == "gaussian":
        return gaussian_bd(hr, scale, blur_sigma)
    x = hr.unsqueeze(0) if hr.dim() == 3 else hr
    k = gaussian_kernel(blur_sigma, 7 if blur_sigma <= 1.6 else None).to(x.dtype)
    pad = k.shape[-1] // 2
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), k.expand(c, 1, *k.shape).contiguous(), groups=c)
    x = x[..., scale // 2::scale, scale // 2::scale]
    return x.squeeze(0) if hr.dim() == 3 else x
