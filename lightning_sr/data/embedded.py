"""The embedded default data set: colour photographs that ship inside scikit-image.

No download: the images are written once as PNGs into a cache folder and then read like any
other image folder. Train and validation images are disjoint. Only files this module wrote (listed in
the folder's manifest, ``.lsr_embedded.json``) are ever replaced or removed, so ``data.root`` may point
at a folder that holds other files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from lightning_sr.data.cache import cache_root
from lightning_sr.fs import atomic_write

TRAIN_IMAGES = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "motorcycle_left")
VAL_IMAGES = ("astronaut", "coffee")
MANIFEST = ".lsr_embedded.json"


def load_photo(name: str) -> np.ndarray:
    import skimage.data as skd

    if name == "motorcycle_left":
        return skd.stereo_motorcycle()[0]
    return getattr(skd, name)()


def default_cache_dir() -> Path:
    return cache_root()


def png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _read_manifest(folder: Path) -> set[str]:
    try:
        return set(json.loads((folder / MANIFEST).read_text()).get("written", []))
    except (OSError, ValueError):
        return set()


def materialize(root: str | Path | None = None) -> dict[str, Path]:
    """Write the embedded photos to ``root/{train,val}/NAME.png`` (once) and return both folders."""
    root = Path(root).expanduser() if root else default_cache_dir() / "embedded"
    out = {}
    for split, names in (("train", TRAIN_IMAGES), ("val", VAL_IMAGES)):
        folder = root / split
        ours = _read_manifest(folder)
        wanted = {f"{n}.png" for n in names}
        keep = ours & wanted
        for n in names:
            f = folder / f"{n}.png"
            if not f.exists():
                atomic_write(f, png_bytes(load_photo(n)))
                keep.add(f.name)
        for stale in sorted(ours - wanted):  # an image we wrote for an older image list leaves this split
            (folder / stale).unlink(missing_ok=True)
        if keep != ours:
            atomic_write(folder / MANIFEST, json.dumps({"written": sorted(keep)}) + "\n")
        out[split] = folder
    return out
