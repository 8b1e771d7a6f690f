"""Data: MATLAB-compatible degradation, robust image reading, cached datasets, the datamodule.

The names below are imported on first use (PEP 562), so that light tools in this package (``python -m
lightning_sr.data.prepare``) start without importing Lightning.
"""

from importlib import import_module

_WHERE = {
    "SRDataModule": "datamodule", "resolve_sets": "datamodule", "validate_data_config": "datamodule",
    "EvalImageDataset": "datasets", "ImageSet": "datasets", "TrainPatchDataset": "datasets", "load_pairs": "datasets",
    "degrade": "degradation",
}
# leaves of lightning_sr.ops, also reachable from here
_OPS = {"bicubic_downscale": "imresize", "bicubic_upscale": "imresize", "imresize": "imresize",
        "list_images": "image_io", "read_rgb": "image_io"}

__all__ = sorted([*_WHERE, *_OPS])


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"lightning_sr.data.{_WHERE[name]}"), name)
    if name in _OPS:
        return getattr(import_module(f"lightning_sr.ops.{_OPS[name]}"), name)
    raise AttributeError(f"module 'lightning_sr.data' has no attribute {name!r}")
