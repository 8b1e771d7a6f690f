"""Reading images robustly: grayscale, palette, RGBA and 16-bit files become 8-bit RGB arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lightning_sr.errors import DataError

IMG_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def list_images(folder: str | Path, what: str = "image folder", layout: str = "") -> list[Path]:
    """Sorted image files of ``folder``; a one-line :class:`DataError` when missing or empty."""
    p = Path(folder).expanduser()
    hint = f" (expected layout: {layout})" if layout else ""
    if not p.is_dir():
        raise DataError(f"{what} {p} does not exist{hint}")
    files = sorted(f for f in p.iterdir()  # hidden files (temporaries being written, ._ files) are not images
                   if f.suffix.lower() in IMG_EXTS and not f.name.startswith(".") and f.is_file())
    if not files:
        raise DataError(f"{what} {p} holds no images ({', '.join(IMG_EXTS)}){hint}")
    return files


def read_rgb(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 RGB. 16-bit images are scaled to 8 bit, alpha is dropped, gray is replicated."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = np.clip(np.round(arr / (65535.0 if arr.max() > 255 else 255.0) * 255.0), 0, 255)
                arr = np.repeat(arr.astype(np.uint8)[..., None], 3, axis=2)
            else:
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    im = im.convert("RGBA")
                    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(bg, im)
                arr = np.array(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e.__class__.__name__}: {e}; replace or remove the file") from e
    return np.ascontiguousarray(arr)


def write_rgb(path: str | Path, arr: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
