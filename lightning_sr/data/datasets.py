"""Datasets. Every image is decoded once (at set-up, in parallel threads) into the decoded-image cache
(:mod:`lightning_sr.data.cache`) and used as memory-mapped uint8 tensors; LR images are made once per
image (or read from an LR folder), never per sample.
"""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sr.data.cache import cached_pair, entry_key, lr_file_source
from lightning_sr.data.degradation import degrade
from lightning_sr.errors import DataError
from lightning_sr.ops.image_io import list_images, read_rgb

log = logging.getLogger(__name__)


VAL, TEST = "val", "test"  # roles of evaluation sets: validation (checkpoint selection) or test (reported only)


@dataclass
class ImageSet:
    """A named folder of HR images, optionally with a matching LR folder.

    ``only``/``exclude``: file names to keep / leave out (a held-out split of one folder);
    ``role``: ``val`` (validated during training, picks checkpoints) or ``test`` (evaluated at the end only)."""

    name: str
    hr_dir: str
    lr_dir: str | None = None
    layout: str = "<dir>/*.png"
    only: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    role: str = VAL
    max_images: int | None = None

    def files(self) -> list[Path]:
        files = list_images(self.hr_dir, f"HR folder of {self.name!r}", self.layout)
        if self.only is not None:
            files = [f for f in files if f.name in self.only]
        files = [f for f in files if f.name not in self.exclude]
        return files[: self.max_images] if self.max_images else files


@dataclass
class Pair:
    name: str
    hr: torch.Tensor  # uint8 (3, H, W), H and W multiples of scale
    lr: torch.Tensor  # uint8 (3, H/scale, W/scale)


def _find_lr(lr_files: dict[str, Path], stem: str, scale: int) -> Path | None:
    for key in (stem, f"{stem}x{scale}", f"{stem}_x{scale}", f"{stem}_LR", f"{stem}_lr"):
        if key in lr_files:
            return lr_files[key]
    return None


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_pairs(image_set: ImageSet, scale: int, degradation: str = "bicubic", blur_sigma: float = 1.6,
               min_hr_size: int = 0, workers: int = 4, cache: str = "disk") -> list[Pair]:
    """Every image of ``image_set`` paired with its LR image, decoded once into the cache (``cache``:
    ``disk``, memory-mapped and shared, or ``memory``).

    Images smaller than ``min_hr_size`` (after cropping to a multiple of ``scale``) are skipped
    with one warning that counts them; if none are left, a :class:`DataError` says so.
    """
    hr_files = image_set.files()
    if not hr_files:
        raise DataError(f"{image_set.name}: no image left in {image_set.hr_dir} after the split "
                        f"(only={image_set.only}, exclude={list(image_set.exclude)})")
    lr_files = None
    if image_set.lr_dir:
        lr_files = {p.stem: p for p in list_images(image_set.lr_dir, f"LR folder of {image_set.name!r}",
                                                   image_set.layout)}

    def load(path: Path) -> Pair | None:
        lr_path = None
        if lr_files is not None:
            lr_path = _find_lr(lr_files, path.stem, scale)
            if lr_path is None:
                raise DataError(f"no LR image for {path} in {image_set.lr_dir} (looked for {path.stem}.* and "
                                f"{path.stem}x{scale}.*)")
        source = lr_file_source(lr_path) if lr_path else f"degrade:{degradation}:{blur_sigma}"

        def make() -> tuple[torch.Tensor, torch.Tensor]:
            hr = read_rgb(path)
            h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
            hr = hr[:h, :w]
            if lr_path is not None:
                lr = read_rgb(lr_path)
                if lr.shape[0] * scale != h or lr.shape[1] * scale != w:
                    raise DataError(f"LR/HR size mismatch for pair {lr_path} {lr.shape[1]}x{lr.shape[0]} and {path} "
                                    f"{w}x{h} at scale {scale}: the LR image must be the HR size / {scale}")
                return _to_tensor(hr), _to_tensor(lr)
            if min(h, w) < scale:  # nothing to degrade: an empty pair, skipped below
                return torch.zeros(3, h, w, dtype=torch.uint8), torch.zeros(3, h // scale, w // scale,
                                                                             dtype=torch.uint8)
            lr = degrade(_to_tensor(hr).double(), scale, degradation, blur_sigma)
            return _to_tensor(hr), lr.round().clamp(0, 255).to(torch.uint8)

        hr, lr = cached_pair(entry_key(path, scale, source), make, cache)
        if min(hr.shape[-2:]) < max(min_hr_size, scale):
            return None
        return Pair(path.stem, hr, lr)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(load, hr_files))
    pairs = [p for p in results if p is not None]
    skipped = len(results) - len(pairs)
    if skipped:
        log.warning("%s: skipped %d of %d images smaller than %d px (patch size / scale)", image_set.name, skipped,
                    len(results), max(min_hr_size, scale))
    if not pairs:
        raise DataError(f"{image_set.name}: none of the {len(results)} images in {image_set.hr_dir} is at least "
                        f"{max(min_hr_size, scale)} px on each side; lower data.patch_size or use larger images")
    return pairs


class TrainPatchDataset(Dataset):
    """Random aligned LR/HR patches with flips and 90-degree rotations, from cached pairs.

    Sample number ``i`` (any non-negative integer; ``length`` of them make an epoch) determines
    everything about the sample: image ``i % len(pairs)``, crop and augmentation drawn from a
    generator seeded with (``seed``, ``i``). No global random state is involved, so runs are
    reproducible across workers, ranks and resumes.
    """

    def __init__(self, pairs: list[Pair], scale: int, patch_size: int, length: int, augment: bool = True,
                 seed: int = 0, flip_shift: int = 0):
        self.pairs, self.scale, self.patch, self.length, self.augment = pairs, scale, patch_size, length, augment
        self.seed, self.flip_shift = seed, flip_shift  # degradation.flip_shift: keeps flipped patches aligned

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        rng = random.Random(self.seed * 1_000_003 + int(i))
        pair = self.pairs[i % len(self.pairs)]
        lp, s = self.patch // self.scale, self.scale
        _, lh, lw = pair.lr.shape
        top, left = rng.randint(0, lh - lp), rng.randint(0, lw - lp)
        flip_w, flip_h, swap = (self.augment and rng.random() < 0.5 for _ in range(3))
        top, dh, flip_h = self._aligned(top, lh, lp, flip_h)
        left, dw, flip_w = self._aligned(left, lw, lp, flip_w)
        lr = pair.lr[:, top:top + lp, left:left + lp]
        hr = pair.hr[:, top * s + dh:(top + lp) * s + dh, left * s + dw:(left + lp) * s + dw]
        if flip_w:
            lr, hr = lr.flip(-1), hr.flip(-1)
        if flip_h:
            lr, hr = lr.flip(-2), hr.flip(-2)
        if swap:
            lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
        return {"lr": lr.float().div_(255), "hr": hr.float().div_(255)}

    def _aligned(self, start: int, size: int, lp: int, flip: bool) -> tuple[int, int, bool]:
        """(LR crop start, HR shift, flip) of one axis: a flipped patch's HR crop moves by ``flip_shift``; where that
        would leave the image the LR crop moves one pixel inward, and an image no larger than the patch is not
        flipped (|flip_shift| < scale, so one LR pixel is always enough)."""
        d = self.flip_shift if flip else 0
        if not d:
            return start, 0, flip
        if size == lp:
            return start, 0, False
        if d > 0 and start + lp == size:
            start -= 1
        elif d < 0 and start == 0:
            start += 1
        return start, d, flip


class EvalImageDataset(Dataset):
    """Whole images of one named set, for validation and testing (batch size 1)."""

    def __init__(self, name: str, pairs: list[Pair], role: str = VAL):
        self.name, self.pairs, self.role = name, pairs, role

    def __len__(self) -> int:
        return len(self.pairs)

    def item_name(self, i: int) -> str:
        return self.pairs[i].name

    def __getitem__(self, i: int):
        p = self.pairs[i]
        return {"lr": p.lr.float() / 255, "hr": p.hr.float() / 255, "name": p.name, "index": i}
