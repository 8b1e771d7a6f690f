"""The paired SR datamodule behind every image data preset (embedded, div2k, benchmark, folder).

Evaluation sets have a role: ``val`` sets are validated during training and pick the checkpoints
(``val/psnr``); ``test`` sets (the benchmark sets under ``data.benchmark_root``) are evaluated once at the
end of training and by ``evaluate.py``, never used for selection. ``data=folder`` without a separate
validation folder holds out ``data.val_split`` of its images (the last ones in sorted order, named in the
log) instead of validating on training images.

The datamodule class comes from the data config (``data._target_``, default this class), so other kinds
of data (video clips, classification) plug in without changing ``run.py``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L

from lightning_sr.data.base import EvalSetsMixin
from lightning_sr.data.cache import CACHE_MODES
from lightning_sr.data.datasets import TEST, VAL, EvalImageDataset, ImageSet, TrainPatchDataset, load_pairs
from lightning_sr.data.degradation import flip_shift
from lightning_sr.data.embedded import materialize
from lightning_sr.errors import ConfigError, DataError, require

log = logging.getLogger(__name__)

BENCHMARK_LAYOUT = "<root>/<Set>/HR/*.png or <root>/<Set>/*.png"


def validate_data_config(cfg: Any, scale: int) -> None:
    """Config checks that need no disk access (called before anything is built)."""
    ps, bs = cfg.get("patch_size", 96), cfg.get("batch_size", 16)
    require(isinstance(ps, int) and ps > 0, f"data.patch_size={ps} is impossible; use a positive integer")
    require(ps % scale == 0, f"data.patch_size={ps} is not divisible by scale={scale}; use a multiple of {scale}")
    require(isinstance(bs, int) and bs > 0, f"data.batch_size={bs} is impossible; use a positive integer")
    nw = cfg.get("num_workers", 0)
    require(isinstance(nw, int) and nw >= 0, f"data.num_workers={nw} is impossible; use an integer >= 0")
    require(cfg.get("iters_per_epoch", 1) > 0, "data.iters_per_epoch must be > 0")
    vs = cfg.get("val_split", 0.1)
    require(isinstance(vs, (int, float)) and 0 <= vs < 1,
            f"data.val_split={vs} is impossible; use the fraction of images to hold out, 0 <= val_split < 1")
    mode = cfg.get("cache", "disk")
    require(mode in CACHE_MODES, f"data.cache={mode!r} is not supported; use one of {', '.join(CACHE_MODES)}")


def _benchmark_set(root: str, name: str, scale: int, use_lr: bool) -> ImageSet:
    base = Path(root).expanduser() / name
    if not base.is_dir():
        raise DataError(f"benchmark set {name!r} not found at {base} (expected layout: {BENCHMARK_LAYOUT}); "
                        f"set data.benchmark_root or data.benchmark_sets")
    hr = base / "HR" if (base / "HR").is_dir() else base
    lr = base / "LR_bicubic" / f"X{scale}"
    return ImageSet(name, str(hr), str(lr) if use_lr and lr.is_dir() else None, BENCHMARK_LAYOUT, role=TEST)


def _same_dir(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def hold_out(train: ImageSet, val: ImageSet, fraction: float) -> tuple[ImageSet, ImageSet]:
    """Split one folder: the last ``ceil(fraction * n)`` images (sorted) validate, the others train."""
    files = [f.name for f in train.files()]
    k = max(1, math.ceil(fraction * len(files)))
    if len(files) - k < 1:
        raise DataError(f"{train.hr_dir} holds {len(files)} image(s): too few to hold {k} out for validation "
                        f"(data.val_split={fraction}); give a separate folder with data.val_hr_dir=DIR")
    held = tuple(files[-k:])
    log.info("data: holding out %d of %d images of %s for validation (data.val_split=%s): %s; a separate "
             "folder: data.val_hr_dir=DIR", k, len(files), train.hr_dir, fraction, ", ".join(held))
    lr = val.lr_dir if val.lr_dir is not None else train.lr_dir
    return (ImageSet(train.name, train.hr_dir, train.lr_dir, train.layout, exclude=held),
            ImageSet(val.name, train.hr_dir, lr, val.layout, only=held, max_images=val.max_images))


def resolve_sets(cfg: Any, scale: int, training: bool = True) -> tuple[ImageSet | None, list[ImageSet]]:
    """Normalise any data preset into (training set or None, named evaluation sets: val ones, then test ones).
    Without training (``evaluate.py``) a validation folder that is also the training folder is evaluated whole."""
    vmax = cfg.get("val_max_images")
    if cfg.get("kind") == "embedded":
        folders = materialize(cfg.get("root"))
        train = ImageSet("embedded_train", str(folders["train"]))
        evals = [ImageSet("embedded", str(folders["val"]), max_images=vmax)]
    else:
        t = cfg.get("train")
        layout = cfg.get("layout", "<dir>/*.png")
        train = ImageSet("train", t["hr_dir"], t.get("lr_dir"), layout) if t else None
        evals = []
        for v in cfg.get("val") or []:
            vs = ImageSet(v["name"], v.get("hr_dir"), v.get("lr_dir"), layout, max_images=vmax)
            if train is not None and (vs.hr_dir is None or _same_dir(vs.hr_dir, train.hr_dir)):
                split = float(cfg.get("val_split", 0.1)) if training else 0.0
                if split > 0:
                    train, vs = hold_out(train, vs, split)
                else:
                    if training:
                        log.warning("data.val_split=0: validating on the training images of %s (checkpoints are "
                                    "picked on training data)", train.hr_dir)
                    vs = ImageSet(vs.name, train.hr_dir, train.lr_dir, layout, max_images=vmax)
            require(vs.hr_dir is not None, f"data.val entry {vs.name!r} has no hr_dir; give one or leave "
                                           f"data.val empty")
            evals.append(vs)
    if cfg.get("benchmark_root"):
        evals += [_benchmark_set(cfg["benchmark_root"], s, scale, cfg.get("benchmark_use_lr", True))
                  for s in cfg.get("benchmark_sets", [])]
    names = [s.name for s in evals]
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluation set names repeat: {names}; give each data.val entry its own name")
    return train, evals


class SRDataModule(EvalSetsMixin, L.LightningDataModule):
    def __init__(self, cfg: Any, scale: int, seed: int = 0):
        super().__init__()
        self.cfg, self.scale, self.seed = cfg, scale, int(seed)
        validate_data_config(cfg, scale)
        self.train_set: TrainPatchDataset | None = None
        self.eval_sets: list[EvalImageDataset] = []
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        """Decode everything once; idempotent (train/evaluate call it early to fail fast)."""
        if self._ready:
            return
        c, s = self.cfg, self.scale
        train, evals = resolve_sets(c, s, training=stage in (None, "fit"))
        kw = dict(degradation=c.get("degradation", "bicubic"), blur_sigma=c.get("blur_sigma", 1.6),
                  workers=c.get("decode_threads", 4), cache=c.get("cache", "disk"))
        if stage in (None, "fit") and train is not None:
            pairs = load_pairs(train, s, min_hr_size=c["patch_size"], **kw)
            self.train_set = TrainPatchDataset(pairs, s, c["patch_size"], c["iters_per_epoch"] * c["batch_size"],
                                               c.get("augment", True), seed=self.seed,
                                               flip_shift=flip_shift(kw["degradation"], s))
            log.info("train: %d images from %s", len(pairs), train.hr_dir)
        elif stage in (None, "fit"):
            raise ConfigError(f"data={c.get('name')} has no training set; use data=div2k, data=folder or "
                              f"data=embedded for training")
        for es in evals:
            self.eval_sets.append(EvalImageDataset(es.name, load_pairs(es, s, min_hr_size=2 * s, **kw), es.role))
        if not self.eval_sets:
            raise ConfigError("no validation/test set configured; set data.val or data.benchmark_root")
        if stage in (None, "fit") and not self.sets(VAL):
            raise ConfigError(f"training needs a validation set to pick checkpoints, and {', '.join(self.eval_names)} "
                              f"are test sets (never used for selection); add one with data.val")
        self._ready = True

    # ----- loaders (EvalSetsMixin builds them) ---------------------------------------------------------------------
    pin_memory_default = True

    def eval_loader_kwargs(self) -> dict:
        kw = self._loader_kwargs()
        kw["num_workers"] = min(kw["num_workers"], 1)
        kw["persistent_workers"] = kw["num_workers"] > 0
        return {"batch_size": 1, **kw}
