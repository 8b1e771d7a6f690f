"""MATLAB-compatible ``imresize`` (bicubic, antialiased when downscaling) in PyTorch.

The resize is separable: one dense weight matrix per axis, built exactly like MATLAB's
``contributions`` (cubic kernel a=-0.5, kernel widened by 1/scale when shrinking, symmetric
border handling), then applied with two matrix products. It is differentiable, runs on any
device, and the matrices are cached per (in, out, device, dtype).

:func:`bicubic_upscale` (integer factors, the global skip of the generators) is the same operation
written as a fixed 5-tap polyphase filter: symmetric 2-pixel padding, one depthwise convolution per
axis with ``factor`` phases, phases interleaved. Its taps are MATLAB's interior weights, so it equals
the matrix form to float rounding, and it is made of plain torch ops only (no numpy, no size-dependent
Python), so a generator that uses it can be captured by ``torch.export`` with dynamic height and width.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=256)
def _weight_matrix_np(in_len: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel = lambda x: scale * _cubic(scale * x)  # noqa: E731
        kernel_width = kernel_width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    ind = left[:, None] + np.arange(p)[None, :]  # 1-based source indices
    weights = kernel(u[:, None] - ind)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # symmetric padding, as MATLAB: mirror indices outside [1, in_len]
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    ind0 = aux[np.mod(ind.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), p)
    np.add.at(mat, (rows, ind0.reshape(-1)), weights.reshape(-1))
    return mat


def weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool, device, dtype) -> torch.Tensor:
    return torch.from_numpy(_weight_matrix_np(in_len, out_len, float(scale), antialias)).to(device, dtype)


def imresize(img: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None,
             antialias: bool = True) -> torch.Tensor:
    """Resize ``img`` (..., H, W) like MATLAB ``imresize(img, scale, 'bicubic')``.

    Give either ``scale`` (e.g. 1/4 to downscale by 4, 4 to upscale) or an output ``size``.
    Works in the input's floating dtype (uint8 input is computed in float32 and returned as
    float: round it yourself, as MATLAB does for uint8 output).
    """
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale or size")
    h, w = img.shape[-2:]
    if size is None:
        out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
        sh = sw = float(scale)
    else:
        out_h, out_w = size
        sh, sw = out_h / h, out_w / w
    x = img if img.is_floating_point() else img.float()
    wh = weight_matrix(h, out_h, sh, antialias, x.device, x.dtype)
    ww = weight_matrix(w, out_w, sw, antialias, x.device, x.dtype)
    # MATLAB resizes the dimension with the smaller scale first; the result is the same up to
    # float rounding, and H-then-W is what it does for equal scales.
    return torch.matmul(torch.matmul(wh, x), ww.t())


def bicubic_downscale(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Downscale (..., H, W) by an integer ``factor``; H and W must be multiples of it."""
    h, w = img.shape[-2:]
    return imresize(img, size=(h // factor, w // factor))


ALIGNS = ("center", "corner")


@lru_cache(maxsize=16)
def _upscale_taps(factor: int, align: str = "center") -> tuple[tuple[float, ...], ...]:
    """Per output phase r (0..factor-1): weights of source pixels i-2..i+2 for output pixel factor*i + r.

    ``center``: MATLAB's geometry (pixel centres aligned, output pixel x samples the input at x / factor + 0.5 (1 -
    1 / factor)). ``corner``: output pixel factor*i + r samples the input at i + r / factor (top-left aligned), the
    geometry of a degradation that keeps every factor-th pixel from the first one (TecoGAN's BD, ``[::4, ::4]``)."""
    if align == "corner":
        out = []
        for r in range(factor):
            t = r / factor
            w = [0.0] + [float(_cubic(np.array(d))) for d in (1 + t, t, 1 - t, 2 - t)]  # offsets -2..2
            out.append(tuple(w))
        return tuple(out)
    n = 16
    mat = _weight_matrix_np(n, n * factor, float(factor), True)
    i = n // 2
    return tuple(tuple(float(v) for v in mat[factor * i + r, i - 2:i + 3]) for r in range(factor))


def _symmetric_pad2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """MATLAB's symmetric border (edge pixel repeated): [x1, x0 | x0 .. xn-1 | xn-1, xn-2] along ``dim``."""
    n = x.shape[dim]
    first, last = x.narrow(dim, 0, 2).flip(dim), x.narrow(dim, n - 2, 2).flip(dim)
    return torch.cat([first, x, last], dim=dim)


def _upscale_axis(x: torch.Tensor, factor: int, dim: int, align: str = "center") -> torch.Tensor:
    c = x.shape[1]
    taps = torch.tensor(_upscale_taps(factor, align), dtype=x.dtype, device=x.device)  # (factor, 5)
    shape = (factor, 1, 5, 1) if dim == 2 else (factor, 1, 1, 5)
    weight = taps.reshape(shape).repeat(c, 1, 1, 1)  # (c * factor, 1, ...): every channel, every phase
    y = torch.nn.functional.conv2d(_symmetric_pad2(x, dim), weight, groups=c)  # (n, c * factor, h, w)
    n, _, h, w = y.shape  # read here: torch.compile resumes after the taps (a graph break) with symbolic sizes
    y = y.reshape(n, c, factor, h, w)
    if dim == 2:
        return y.permute(0, 1, 3, 2, 4).reshape(n, c, h * factor, w)
    return y.permute(0, 1, 3, 4, 2).reshape(n, c, h, w * factor)


def bicubic_upscale(img: torch.Tensor, factor: int, align: str = "center") -> torch.Tensor:
    """MATLAB ``imresize(img, factor, 'bicubic')`` for an integer ``factor`` on (..., H, W), H and W >= 2;
    pure torch ops (capturable by ``torch.export``, see the module docstring). ``align="corner"``: the same cubic
    kernel with top-left aligned sampling (see :func:`_upscale_taps`)."""
    factor = int(factor)
    lead = img.shape[:-2]
    x = img if img.is_floating_point() else img.float()
    x = x.reshape(-1, 1, *x.shape[-2:]) if x.dim() != 4 else x
    out = _upscale_axis(_upscale_axis(x, factor, 2, align), factor, 3, align)
    return out.reshape(*lead, *out.shape[-2:])
