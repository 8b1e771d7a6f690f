"""Clip folders on disk: a clip is a folder of frames named in time order (``0001.png, 0002.png, ...``).

A leaf module (no Lightning, no torch): ``lsr-data`` and ``lsr-upscale`` list frames without importing the
training stack.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from lightning_sr.errors import DataError
from lightning_sr.ops.image_io import IMG_EXTS

log = logging.getLogger(__name__)

LAYOUT = "<root>/<clip>/<frame>.png or <root>/<clip>/GT/<frame>.png"


def _number(name: str) -> int | None:
    m = re.findall(r"\d+", name)
    return int(m[-1]) if m else None


def list_frames(folder: Path, what: str) -> list[Path]:
    """Image files of a clip folder in time order (numeric); a one-line DataError when there are none."""
    if not folder.is_dir():
        raise DataError(f"{what} {folder} does not exist (expected layout: {LAYOUT})")
    files = [f for f in folder.iterdir() if f.suffix.lower() in IMG_EXTS and not f.name.startswith(".") and f.is_file()]
    if not files:
        raise DataError(f"{what} {folder} holds no frames ({', '.join(IMG_EXTS)}); remove the empty clip folder")
    nums = [_number(f.stem) for f in files]
    if any(n is None for n in nums):
        log.warning("%s %s: frame names without a number (%s...): using alphabetical order, which may not be time "
                    "order; name frames 0001.png, 0002.png...", what, folder, files[0].name)
        return sorted(files)
    return [f for _, f in sorted(zip(nums, files, strict=True), key=lambda t: (t[0], t[1].name))]
