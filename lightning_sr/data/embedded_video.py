"""The embedded video data set: short clips made from the photographs inside scikit-image, no download.

Each clip is a smooth camera move over one photograph: a sub-pixel pan (constant velocity plus a slow sway)
and a slow zoom, rendered with bicubic resampling. The motion is known and smooth, the texture is real. Training
clips come from six photographs, validation clips from two others (astronaut, coffee), so validation is on
held-out content. Frames are written once as PNGs (``<root>/{train,val}/<clip>/0000.png ...``, default root
``$LSR_CACHE/embedded_video``); a manifest lists what was written and only those files are ever replaced.
"""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lightning_sr.data.cache import cache_root
from lightning_sr.data.embedded import load_photo
from lightning_sr.fs import atomic_write

TRAIN_PHOTOS = ("rocket", "hubble_deep_field", "retina", "motorcycle_left", "immunohistochemistry", "chelsea")
VAL_PHOTOS = ("astronaut", "coffee")
CLIPS_PER_PHOTO = {"train": 2, "val": 1}
FRAMES = 12
SIZE = {"train": 128, "val": 128}
MANIFEST = ".lsr_embedded_video.json"
VERSION = 1


def render_clip(photo: np.ndarray, n_frames: int, size: int, seed: int) -> list[np.ndarray]:
    """``n_frames`` frames of ``size`` x ``size`` pixels: a smooth sub-pixel pan and zoom over ``photo``."""
    rng = random.Random(seed)
    img = torch.from_numpy(photo).permute(2, 0, 1).float().unsqueeze(0)  # (1, 3, H, W)
    h, w = img.shape[-2:]
    zoom0 = rng.uniform(0.9, 1.1)
    zoom_rate = rng.uniform(-0.008, 0.008)
    angle = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(0.6, 2.2)  # output pixels per frame
    vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    sway, period = rng.uniform(0.2, 1.0), rng.uniform(5, 9)
    margin = size * 0.75 + n_frames * (speed + 2)
    cx = rng.uniform(margin, max(margin + 1, w - margin))
    cy = rng.uniform(margin, max(margin + 1, h - margin))
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32) - (size - 1) / 2,
                            torch.arange(size, dtype=torch.float32) - (size - 1) / 2, indexing="ij")
    frames = []
    for t in range(n_frames):
        z = zoom0 * (1 + zoom_rate * t)
        px = cx + vx * t + sway * math.sin(2 * math.pi * t / period)
        py = cy + vy * t + sway * math.cos(2 * math.pi * t / period)
        sx, sy = px + xs * z, py + ys * z  # source pixel coordinates
        grid = torch.stack([(sx + 0.5) / w * 2 - 1, (sy + 0.5) / h * 2 - 1], dim=-1).unsqueeze(0)
        out = F.grid_sample(img, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
        frames.append(out[0].clamp(0, 255).round().byte().permute(1, 2, 0).numpy())
    return frames


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def materialize_clips(root: str | Path | None = None) -> dict[str, Path]:
    """Write the embedded clips (once) and return the train and val folders (``<folder>/<clip>/*.png``)."""
    root = Path(root).expanduser() if root else cache_root() / "embedded_video"
    out = {}
    for split, photos in (("train", TRAIN_PHOTOS), ("val", VAL_PHOTOS)):
        folder = root / split
        manifest = folder / MANIFEST
        try:
            written = json.loads(manifest.read_text())
        except (OSError, ValueError):
            written = {}
        wanted = [(f"{p}_{k}", p, k) for p in photos for k in range(CLIPS_PER_PHOTO[split])]
        if written.get("version") != VERSION or sorted(written.get("clips", [])) != sorted(c for c, _, _ in wanted):
            for old in written.get("files", []):  # only what an earlier version of this function wrote
                (folder / old).unlink(missing_ok=True)
            files = []
            for clip, photo, k in wanted:
                seed = sum(map(ord, clip)) * 7919 + k
                for t, frame in enumerate(render_clip(load_photo(photo), FRAMES, SIZE[split], seed)):
                    rel = f"{clip}/{t:04d}.png"
                    atomic_write(folder / rel, _png(frame))
                    files.append(rel)
            atomic_write(manifest, json.dumps({"version": VERSION, "clips": [c for c, _, _ in wanted],
                                               "files": files}) + "\n")
        out[split] = folder
    return out
