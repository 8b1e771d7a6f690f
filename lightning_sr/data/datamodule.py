"""The paired SR datamodule behind every data preset (embedded, div2k, benchmark, folder)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from lightning_sr.data.datasets import EvalImageDataset, ImageSet, TrainPatchDataset, load_pairs
from lightning_sr.data.embedded import materialize
from lightning_sr.data.samplers import ResumableSampler, ShardSampler
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


def _benchmark_set(root: str, name: str, scale: int, use_lr: bool) -> ImageSet:
    base = Path(root).expanduser() / name
    if not base.is_dir():
        raise DataError(f"benchmark set {name!r} not found at {base} (expected layout: {BENCHMARK_LAYOUT}); "
                        f"set data.benchmark_root or data.benchmark_sets")
    hr = base / "HR" if (base / "HR").is_dir() else base
    lr = base / "LR_bicubic" / f"X{scale}"
    return ImageSet(name, str(hr), str(lr) if use_lr and lr.is_dir() else None, BENCHMARK_LAYOUT)


def resolve_sets(cfg: Any, scale: int) -> tuple[ImageSet | None, list[ImageSet]]:
    """Normalise any data preset into (training set or None, named evaluation sets)."""
    if cfg.get("kind") == "embedded":
        folders = materialize(cfg.get("root"))
        train = ImageSet("embedded_train", str(folders["train"]))
        evals = [ImageSet("embedded", str(folders["val"]))]
    else:
        t = cfg.get("train")
        train = ImageSet("train", t["hr_dir"], t.get("lr_dir"), cfg.get("layout", "<dir>/*.png")) if t else None
        evals = [ImageSet(v["name"], v["hr_dir"], v.get("lr_dir"), cfg.get("layout", "<dir>/*.png"))
                 for v in (cfg.get("val") or [])]
    if cfg.get("benchmark_root"):
        evals += [_benchmark_set(cfg["benchmark_root"], s, scale, cfg.get("benchmark_use_lr", True))
                  for s in cfg.get("benchmark_sets", [])]
    names = [s.name for s in evals]
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluation set names repeat: {names}; give each data.val entry its own name")
    return train, evals


class SRDataModule(L.LightningDataModule):
    def __init__(self, cfg: Any, scale: int, seed: int = 0):
        super().__init__()
        self.cfg, self.scale, self.seed = cfg, scale, int(seed)
        validate_data_config(cfg, scale)
        self.train_set: TrainPatchDataset | None = None
        self.eval_sets: list[EvalImageDataset] = []
        self._ready = False

    @property
    def eval_names(self) -> list[str]:
        return [d.name for d in self.eval_sets]

    def setup(self, stage: str | None = None) -> None:
        """Decode everything once; idempotent (train/evaluate call it early to fail fast)."""
        if self._ready:
            return
        c, s = self.cfg, self.scale
        train, evals = resolve_sets(c, s)
        kw = dict(degradation=c.get("degradation", "bicubic"), blur_sigma=c.get("blur_sigma", 1.6),
                  workers=c.get("decode_threads", 4))
        if stage in (None, "fit") and train is not None:
            pairs = load_pairs(train, s, min_hr_size=c["patch_size"], **kw)
            self.train_set = TrainPatchDataset(pairs, s, c["patch_size"], c["iters_per_epoch"] * c["batch_size"],
                                               c.get("augment", True), seed=self.seed)
            log.info("train: %d images from %s", len(pairs), train.hr_dir)
        elif stage in (None, "fit"):
            raise ConfigError(f"data={c.get('name')} has no training set; use data=div2k, data=folder or "
                              f"data=embedded for training")
        for es in evals:
            self.eval_sets.append(EvalImageDataset(es.name, load_pairs(es, s, min_hr_size=2 * s, **kw)))
        if not self.eval_sets:
            raise ConfigError("no validation/test set configured; set data.val or data.benchmark_root")
        self._ready = True

    def _loader_kwargs(self) -> dict:
        nw = self.cfg.get("num_workers", 0)
        return dict(num_workers=nw, pin_memory=self.cfg.get("pin_memory", True), persistent_workers=nw > 0)

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        sampler = ResumableSampler(len(self.train_set), self.cfg["batch_size"], self._global_step, rank, world)
        return DataLoader(self.train_set, batch_size=self.cfg["batch_size"], sampler=sampler, drop_last=True,
                          **self._loader_kwargs())

    def _eval_loaders(self) -> list[DataLoader]:
        kw = self._loader_kwargs()
        kw["num_workers"] = min(kw["num_workers"], 1)
        kw["persistent_workers"] = kw["num_workers"] > 0
        rank, world = self._rank_world()
        return [DataLoader(d, batch_size=1, sampler=ShardSampler(len(d), rank, world), **kw) for d in self.eval_sets]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()
