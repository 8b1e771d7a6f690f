"""PSNR and SSIM as the SR literature computes them.

Defaults (the community convention, as in BasicSR and the MATLAB scripts behind the
published tables):

* images are rounded to 8 bit first (``round(x * 255)``),
* compared on the Y channel of ITU-R BT.601 YCbCr (``16 + 65.481 R + 128.553 G + 24.966 B``
  with RGB in [0, 1]), or on RGB with ``y_channel=False``,
* ``crop`` pixels (normally the scale) removed from each border,
* SSIM with an 11x11 Gaussian window of sigma 1.5, valid filtering, C1 = (0.01 * 255)^2,
  C2 = (0.03 * 255)^2, computed in float64, averaged over channels.

All functions take float tensors in [0, 1] of shape (N, C, H, W) or (C, H, W) and return one
value per image (shape (N,)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_Y_WEIGHTS = (65.481, 128.553, 24.966)

# which direction is better, per metric (checkpoint monitors, W&B summaries, Pareto fronts)
# (accuracy: top-1 in percent, of the classification task, model.module=classify)
METRIC_MODES = {"psnr": "max", "ssim": "max", "lpips": "min", "tof": "min", "tlp": "min", "accuracy": "max"}


def rgb_to_y(img255: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of an RGB image with values in [0, 255]; returns (N, 1, H, W) in [16, 235]."""
    w = torch.tensor(_Y_WEIGHTS, dtype=img255.dtype, device=img255.device).view(1, 3, 1, 1)
    return (img255 * w).sum(dim=1, keepdim=True) / 255.0 + 16.0


def to_eval_space(img: torch.Tensor, crop: int = 0, y_channel: bool = True) -> torch.Tensor:
    """[0, 1] image -> 8-bit-rounded float64 in [0, 255] (Y or RGB), border-cropped."""
    if img.dim() == 3:
        img = img.unsqueeze(0)
    x = (img.detach().to(torch.float64).clamp(0, 1) * 255.0).round()
    if y_channel and x.shape[1] == 3:
        x = rgb_to_y(x)
    if crop > 0:
        x = x[..., crop:-crop, crop:-crop]
    return x


def _check_pair(sr: torch.Tensor, hr: torch.Tensor) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"metric inputs differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")


def psnr(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, y_channel: bool = True) -> torch.Tensor:
    _check_pair(sr, hr)
    a, b = to_eval_space(sr, crop, y_channel), to_eval_space(hr, crop, y_channel)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def _gaussian_1d(size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, y_channel: bool = True) -> torch.Tensor:
    _check_pair(sr, hr)
    a, b = to_eval_space(sr, crop, y_channel), to_eval_space(hr, crop, y_channel)
    c = a.shape[1]
    g = _gaussian_1d(device=a.device)
    gh, gw = g.view(1, 1, 11, 1).expand(c, 1, 11, 1).contiguous(), g.view(1, 1, 1, 11).expand(c, 1, 1, 11).contiguous()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(x):  # the 11x11 Gaussian is separable: two 11-tap passes, 'valid' like MATLAB's filter2(..., 'valid')
        return F.conv2d(F.conv2d(x, gh, groups=c), gw, groups=c)

    mu_a, mu_b, e_aa, e_bb, e_ab = filt(a), filt(b), filt(a * a), filt(b * b), filt(a * b)
    s_aa = e_aa - mu_a**2
    s_bb = e_bb - mu_b**2
    s_ab = e_ab - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return m.flatten(1).mean(dim=1)
