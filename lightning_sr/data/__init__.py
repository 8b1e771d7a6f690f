"""Data: MATLAB-compatible degradation, robust image reading, cached datasets, the datamodule."""

from lightning_sr.data.datamodule import SRDataModule, resolve_sets, validate_data_config
from lightning_sr.data.datasets import EvalImageDataset, ImageSet, TrainPatchDataset, load_pairs
from lightning_sr.data.degradation import degrade
from lightning_sr.data.io import list_images, read_rgb
from lightning_sr.ops.imresize import bicubic_downscale, bicubic_upscale, imresize

__all__ = [
    "EvalImageDataset", "ImageSet", "SRDataModule", "TrainPatchDataset", "bicubic_downscale", "bicubic_upscale",
    "degrade", "imresize", "list_images", "load_pairs", "read_rgb", "resolve_sets", "validate_data_config",
]
