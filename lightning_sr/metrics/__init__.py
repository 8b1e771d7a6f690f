"""Image-quality metrics with the SR community's conventions (see docs/metrics.md)."""

from lightning_sr.metrics.lpips import LPIPS, build_lpips
from lightning_sr.metrics.sr_metrics import psnr, rgb_to_y, ssim, to_eval_space

# which direction is better, per metric (checkpoint monitors, W&B summaries, Pareto fronts)
METRIC_MODES = {"psnr": "max", "ssim": "max", "lpips": "min"}

__all__ = ["METRIC_MODES", "psnr", "ssim", "rgb_to_y", "to_eval_space", "LPIPS", "build_lpips"]
