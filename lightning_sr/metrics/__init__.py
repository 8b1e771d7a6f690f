"""Image-quality metrics with the SR community's conventions (see docs/metrics.md)."""

from lightning_sr.metrics.image import SRPSNR, SRSSIM
from lightning_sr.metrics.lpips import LPIPS, build_lpips
from lightning_sr.metrics.records import EvalRecords
from lightning_sr.metrics.sr_metrics import METRIC_MODES, psnr, rgb_to_y, ssim, to_eval_space
from lightning_sr.metrics.video import ClipScorer, VideoMetrics, centre_crop_box

__all__ = ["ClipScorer", "VideoMetrics", "centre_crop_box", "LPIPS", "METRIC_MODES", "SRPSNR", "SRSSIM", "EvalRecords", "build_lpips", "psnr", "rgb_to_y", "ssim",
           "to_eval_space"]
