"""The embedded default data set: colour photographs that ship inside scikit-image.

No download: the images are written once as PNGs into a cache folder and then read like any
other image folder. Train and validation images are disjoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lightning_sr.data.io import write_rgb

TRAIN_IMAGES = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "motorcycle_left")
VAL_IMAGES = ("astronaut", "coffee")


def _load(name: str) -> np.ndarray:
    import skimage.data as skd

    if name == "motorcycle_left":
        return skd.stereo_motorcycle()[0]
    return getattr(skd, name)()


def default_cache_dir() -> Path:
    return Path(os.environ.get("LSR_CACHE", Path.home() / ".cache" / "lightning_sr")).expanduser()


def materialize(root: str | Path | None = None) -> dict[str, Path]:
    """Write the embedded photos to ``root/{train,val}/NAME.png`` (once) and return both folders."""
    root = Path(root).expanduser() if root else default_cache_dir() / "embedded"
    out = {}
    for split, names in (("train", TRAIN_IMAGES), ("val", VAL_IMAGES)):
        folder = root / split
        for n in names:
            f = folder / f"{n}.png"
            if not f.exists():
                tmp = folder / f".{n}.{os.getpid()}.tmp.png"  # per process: parallel jobs may write at once
                write_rgb(tmp, _load(n))
                os.replace(tmp, f)
        for stale in folder.glob("*.png"):  # a file from an older image list must not leak into this split
            if stale.stem not in names:
                stale.unlink(missing_ok=True)
        out[split] = folder
    return out
