"""Image-quality metrics with the SR community's conventions (see docs/metrics.md)."""

from lightning_sr.metrics.lpips import LPIPS, build_lpips
from lightning_sr.metrics.sr_metrics import psnr, rgb_to_y, ssim, to_eval_space

__all__ = ["psnr", "ssim", "rgb_to_y", "to_eval_space", "LPIPS", "build_lpips"]
