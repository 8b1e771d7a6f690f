"""Tensor operations shared by data, models and metrics (no dependency on any of them)."""

from lightning_sr.ops.imresize import bicubic_downscale, bicubic_upscale, imresize

__all__ = ["bicubic_downscale", "bicubic_upscale", "imresize"]
