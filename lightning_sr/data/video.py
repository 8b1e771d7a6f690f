"""Video data: clips of frames for training, whole clips for validation and test.

Layout: ``<root>/<clip>/<frame>.png`` (REDS, Vid4, Vimeo-like folders), or ``<root>/<clip>/<gt_subdir>/<frame>.png``
(``gt_subdir`` found by itself when a clip folder holds a ``GT`` folder). Frames are sorted by the number in their
name (``2.png`` before ``10.png``); names without a number keep their alphabetical order with a warning, since
that may shuffle time.

LR frames are made once per frame, when the frame is first decoded, and cached with it (the decoded-image cache of
:mod:`lightning_sr.data.cache`: every frame is decoded once, ever): ``degradation=gaussian`` is TecoGAN's BD
(OpenCV ``GaussianBlur(frame, (0, 0), 1.5)[::4, ::4]``, bit-exact), ``bicubic`` MATLAB's, or LR frames are read from
``lr_root/<clip>/`` or ``<clip>/<lr_subdir>/`` (same count as the ground truth).

Training samples are ``n_frames`` consecutive frames of one clip with the same random crop in every frame,
flips and temporal reversal; sample number ``i`` determines everything (seed, i), like the image data, so runs
resume exactly. Evaluation items are whole clips as uint8 frames (memory-mapped, not copied); the module converts
them frame by frame.
"""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import Dataset

from lightning_sr.data.base import EvalSetsMixin
from lightning_sr.data.cache import CACHE_MODES, cached_pair, entry_key, lr_file_source
from lightning_sr.data.datasets import TEST, VAL
from lightning_sr.data.degradation import DEGRADATIONS, degrade, flip_shift
from lightning_sr.data.embedded_video import materialize_clips
from lightning_sr.data.frames import LAYOUT, list_frames
from lightning_sr.errors import ConfigError, DataError, require
from lightning_sr.ops.image_io import read_rgb

log = logging.getLogger(__name__)

FRAME_INDEX = 100_000  # record index of frame f of clip c: c * FRAME_INDEX + f


@dataclass
class Clip:
    name: str
    hr: list[torch.Tensor]  # uint8 (3, H, W) per frame, memory-mapped
    lr: list[torch.Tensor]  # uint8 (3, H/scale, W/scale)
    frame_names: list[str]
    path: str = ""  # the clip's folder (what identifies it across evaluation sets)

    def __len__(self) -> int:
        return len(self.hr)


def clip_folders(root: str | Path, what: str) -> list[Path]:
    base = Path(str(root)).expanduser()
    if not base.is_dir():
        raise DataError(f"{what} {base} does not exist (expected layout: {LAYOUT})")
    clips = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not clips:
        raise DataError(f"{what} {base} holds no clip folders (expected layout: {LAYOUT})")
    return clips


def load_clip(folder: Path, scale: int, cfg: Any, what: str) -> Clip:
    """Every frame of one clip, decoded (and degraded) once into the cache; checks sizes and LR counts."""
    gt_sub = cfg.get("gt_subdir") or ("GT" if (folder / "GT").is_dir() else None)
    gt_dir = folder / gt_sub if gt_sub else folder
    frames = list_frames(gt_dir, f"{what} clip")
    lr_frames = None
    if cfg.get("lr_root") or cfg.get("lr_subdir"):
        lr_dir = Path(str(cfg.lr_root)).expanduser() / folder.name if cfg.get("lr_root") else folder / cfg.lr_subdir
        lr_frames = list_frames(lr_dir, f"{what} LR clip")
        if len(lr_frames) != len(frames):
            raise DataError(f"clip {folder.name!r}: {len(lr_frames)} LR frames in {lr_dir} but {len(frames)} "
                            f"ground-truth frames in {gt_dir}; give both the same frames")
    kind, sigma = cfg.get("degradation", "gaussian"), float(cfg.get("blur_sigma", 1.5))
    mode = cfg.get("cache", "disk")

    def load(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = frames[i]
        lr_path = lr_frames[i] if lr_frames else None
        source = lr_file_source(lr_path) if lr_path else f"degrade:{kind}:{sigma}"

        def make():
            hr = torch.from_numpy(read_rgb(path)).permute(2, 0, 1).contiguous()
            h, w = (hr.shape[1] // scale) * scale, (hr.shape[2] // scale) * scale
            hr = hr[:, :h, :w].contiguous()
            if lr_path is not None:
                lr = torch.from_numpy(read_rgb(lr_path)).permute(2, 0, 1).contiguous()
                if lr.shape[1] * scale != h or lr.shape[2] * scale != w:
                    raise DataError(f"clip {folder.name!r}: LR frame {lr_path} is {lr.shape[2]}x{lr.shape[1]}, "
                                    f"not the ground truth's {w}x{h} / {scale}")
                return hr, lr
            lr = degrade(hr.double(), scale, kind, sigma)
            return hr, lr.round().clamp(0, 255).to(torch.uint8)

        return cached_pair(entry_key(path, scale, source), make, mode)

    with ThreadPoolExecutor(max_workers=max(1, int(cfg.get("decode_threads", 4)))) as pool:
        pairs = list(pool.map(load, range(len(frames))))
    sizes = {tuple(hr.shape) for hr, _ in pairs}
    if len(sizes) > 1:
        raise DataError(f"clip {folder.name!r} ({gt_dir}) mixes frame sizes {sorted(sizes)}; every frame of a clip must "
                        f"have the same size")
    return Clip(folder.name, [hr for hr, _ in pairs], [lr for _, lr in pairs], [f.stem for f in frames],
                str(Path(folder).expanduser().resolve()))


def load_clips(root: str | Path, scale: int, cfg: Any, what: str, min_frames: int = 1,
               max_clips: int | None = None) -> list[Clip]:
    folders = clip_folders(root, what)[: max_clips or None]
    clips = [load_clip(f, scale, cfg, what) for f in folders]
    usable = [c for c in clips if len(c) >= min_frames]
    if len(usable) < len(clips):
        log.warning("%s: skipped %d of %d clips shorter than data.n_frames=%d", what, len(clips) - len(usable),
                    len(clips), min_frames)
    if not usable:
        raise DataError(f"{what} {root}: none of the {len(clips)} clips has data.n_frames={min_frames} frames; "
                        f"lower data.n_frames or add longer clips")
    return usable


class TrainClipDataset(Dataset):
    """``n_frames`` consecutive frames, one random aligned crop for all of them, flips, temporal reversal.

    ``flip_shift`` (:func:`lightning_sr.data.degradation.flip_shift`, :func:`clip_flip_shift`): HR pixels by which a
    flipped patch's HR crop moves so that it stays aligned with its flipped LR crop (``1 - s`` for TecoGAN's corner
    -aligned BD, which keeps HR pixels 0, s, 2s...; 0 for bicubic; 1 for the image BD at an even scale); the LR crop
    is drawn where the moved HR crop stays inside the frame."""

    def __init__(self, clips: list[Clip], scale: int, patch_size: int, n_frames: int, length: int,
                 augment: bool = True, seed: int = 0, flip_shift: int | None = None):
        self.clips, self.scale, self.patch, self.n, self.length = clips, scale, patch_size, n_frames, length
        self.augment, self.seed = augment, seed
        self.flip_shift = 1 - scale if flip_shift is None else int(flip_shift)  # default: TecoGAN's BD
        small = [c.name for c in clips if min(c.lr[0].shape[-2:]) * scale < patch_size]
        require(not small, f"clips {small} are smaller than data.patch_size={patch_size}; lower it", DataError)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = random.Random(self.seed * 1_000_003 + int(i))
        clip = self.clips[i % len(self.clips)]
        start = rng.randint(0, len(clip) - self.n)
        lp, s = self.patch // self.scale, self.scale
        _, lh, lw = clip.lr[0].shape
        flip_w, flip_h, reverse = (self.augment and rng.random() < 0.5 for _ in range(3))
        shift_h = self.flip_shift if flip_h else 0
        shift_w = self.flip_shift if flip_w else 0
        top = rng.randint(1 if shift_h < 0 else 0, lh - lp - (1 if shift_h > 0 else 0))
        left = rng.randint(1 if shift_w < 0 else 0, lw - lp - (1 if shift_w > 0 else 0))
        idx = list(range(start, start + self.n))
        lr = torch.stack([clip.lr[k][:, top:top + lp, left:left + lp] for k in idx])
        ht, hl = top * s + shift_h, left * s + shift_w
        hr = torch.stack([clip.hr[k][:, ht:ht + lp * s, hl:hl + lp * s] for k in idx])
        if flip_w:
            lr, hr = lr.flip(-1), hr.flip(-1)
        if flip_h:
            lr, hr = lr.flip(-2), hr.flip(-2)
        if reverse:
            lr, hr = lr.flip(0), hr.flip(0)  # time runs backwards
        return {"lr": lr.float().div_(255), "hr": hr.float().div_(255)}


class EvalClipDataset(Dataset):
    """Whole clips of one named set (uint8 frames, not copied)."""

    def __init__(self, name: str, clips: list[Clip], role: str = VAL):
        self.name, self.clips, self.role = name, clips, role

    def __len__(self) -> int:
        return len(self.clips)

    def item_name(self, index: int) -> str:
        clip = self.clips[index // FRAME_INDEX]
        frame = index % FRAME_INDEX
        return f"{clip.name}/{clip.frame_names[frame]}" if frame < len(clip) else clip.name

    def __getitem__(self, i: int) -> dict[str, Any]:
        c = self.clips[i]
        return {"lr": c.lr, "hr": c.hr, "name": c.name, "index": i, "frame_names": c.frame_names, "path": c.path}


def _single(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return batch[0]


def lr_align(cfg: Any) -> str:
    """``data.lr_align`` or, by default, ``corner`` for TecoGAN's BD (pixels 0, s, 2s... kept) and ``center`` else."""
    return cfg.get("lr_align") or ("corner" if cfg.get("degradation", "gaussian") == "gaussian" else "center")


def clip_flip_shift(cfg: Any, scale: int) -> int:
    """The training clips' flip shift: from ``data.lr_align`` when set (LR frames read from files), else from the
    degradation (:func:`lightning_sr.data.degradation.flip_shift`)."""
    align = cfg.get("lr_align")
    if align == "corner":
        return 1 - scale
    if align == "center":
        return 0
    return flip_shift(cfg.get("degradation", "gaussian"), scale)


def validate_video_config(cfg: Any, scale: int) -> None:
    ps, bs, n = cfg.get("patch_size", 128), cfg.get("batch_size", 4), cfg.get("n_frames", 10)
    require(isinstance(ps, int) and ps > 0 and ps % scale == 0,
            f"data.patch_size={ps} is impossible; use a positive multiple of scale={scale}")
    require(isinstance(bs, int) and bs > 0, f"data.batch_size={bs} is impossible; use a positive integer")
    require(isinstance(n, int) and n >= 2, f"data.n_frames={n} is impossible; a training clip needs at least 2 frames")
    require(cfg.get("degradation", "gaussian") in DEGRADATIONS,
            f"data.degradation={cfg.get('degradation')!r} is not supported; use one of {', '.join(DEGRADATIONS)}")
    require(cfg.get("lr_align") in (None, "corner", "center"),
            f"data.lr_align={cfg.get('lr_align')!r} is not supported; use corner, center or null (from the degradation)")
    require(cfg.get("cache", "disk") in CACHE_MODES,
            f"data.cache={cfg.get('cache')!r} is not supported; use one of {', '.join(CACHE_MODES)}")
    nw = cfg.get("num_workers", 0)
    require(isinstance(nw, int) and nw >= 0, f"data.num_workers={nw} is impossible; use an integer >= 0")


class VideoDataModule(EvalSetsMixin, L.LightningDataModule):
    """Training clips from ``train_root``; validation clips from ``val_root`` (role val); test clips from
    ``test_root`` (role test, e.g. Vid4: evaluated at the end, never used to pick checkpoints)."""

    eval_module = "video"  # evaluate.py evaluates any generator on this data with the video module

    def __init__(self, cfg: Any, scale: int, seed: int = 0):
        super().__init__()
        self.cfg, self.scale, self.seed = cfg, int(scale), int(seed)
        validate_video_config(cfg, self.scale)
        self.train_set: TrainClipDataset | None = None
        self.eval_sets: list[EvalClipDataset] = []
        self._ready = False

    def _roots(self) -> dict[str, Any]:
        c = self.cfg
        if c.get("kind") == "embedded_video":
            folders = materialize_clips(c.get("root"))
            return {"train": folders["train"], "val": [(c.get("val_name") or "embedded_video", folders["val"])],
                    "test": []}
        return {"train": c.get("train_root"),
                "val": [(c.get("val_name") or "val", c.val_root)] if c.get("val_root") else [],
                "test": [(c.get("test_name") or "test", c.test_root)] if c.get("test_root") else []}

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        c, s = self.cfg, self.scale
        roots = self._roots()
        fit = stage in (None, "fit")
        if fit:
            if not roots["train"]:
                raise ConfigError(f"data={c.get('name')} has no training clips; set data.train_root=DIR "
                                  f"(layout {LAYOUT}) or use data=embedded_video")
            clips = load_clips(roots["train"], s, c, "training", min_frames=int(c.n_frames))
            self.train_set = TrainClipDataset(clips, s, int(c.patch_size), int(c.n_frames),
                                              int(c.iters_per_epoch) * int(c.batch_size), bool(c.get("augment", True)),
                                              self.seed, clip_flip_shift(c, s))
            log.info("train: %d clips from %s", len(clips), roots["train"])
        for role, entries in ((VAL, roots["val"]), (TEST, roots["test"])):
            for name, root in entries:
                clips = load_clips(root, s, c, f"{role} set {name!r}", min_frames=2 * 2 + 1,
                                   max_clips=c.get("val_max_clips") if role == VAL else None)
                self.eval_sets.append(EvalClipDataset(name, clips, role))
        if not self.eval_sets:
            raise ConfigError("no validation/test clips configured; set data.val_root or data.test_root")
        if fit and not self.sets(VAL):
            raise ConfigError("training needs validation clips to pick checkpoints (data.val_root); test clips "
                              "(data.test_root) are never used for selection")
        names = self.eval_names
        require(len(set(names)) == len(names), f"evaluation set names repeat: {names}; give each its own name")
        self._ready = True

    def eval_loader_kwargs(self) -> dict:  # loaders: EvalSetsMixin builds them; one clip per batch, as it is
        return {"batch_size": 1, "collate_fn": _single}
