"""Statistics of the sweep report: jobs that differ only by ``seed`` grouped into one row (mean, sample std, n),
and paired differences to a reference row with a 95 % bootstrap confidence interval over images (and seeds).

Pairing: the per-image values of ``per_image.csv`` (main output only) of a row and of the reference row, on the
images both measured, per set and metric; for video jobs the per-clip means of ``per_frame.csv``. When both rows
ran the **same seeds**, the unit is (image, seed): ``D[i, s] = row[i, s] - ref[i, s]`` (the two models of one seed
saw the same data order and initial random state), and the bootstrap resamples images and seeds independently (a
two-way bootstrap: images are shared across seeds, so they are not independent units). Otherwise (different seeds,
or different numbers of seeds) each side is first averaged over its seeds per image, ``D[i] = mean_s row[i, s] -
mean_s ref[i, s]``, and only images are resampled. The bootstrap is seeded: the same inputs give the same interval.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED_KEY = "seed"
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (ddof=1; 0 for one value), n) of the finite values."""
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return math.nan, math.nan, 0
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd, len(v)


def group_key(values: dict[str, Any], keys: Iterable[str], by: str = SEED_KEY) -> tuple:
    """What identifies a group: the values of the swept keys other than ``by``."""
    return tuple((k, str(values.get(k, ""))) for k in keys if k != by)


def group_name(key: tuple) -> str:
    """``model.res_blocks=1,model.channels=8`` (what ``--reference`` takes); ``all`` when only seeds differ."""
    return ",".join(f"{k}={v}" for k, v in key) or "all"


@dataclass
class Bootstrap:
    mean: float
    lo: float
    hi: float
    n_images: int
    n_seeds: int          # seeds paired (1 when the rows were paired on seed means)
    paired_by_seed: bool

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


def _draw_counts(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """How often each of ``n`` units is drawn in each resample (``n`` draws with replacement): (resamples, n)."""
    idx = rng.integers(0, n, size=(resamples, n)) + (np.arange(resamples) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def paired_bootstrap(diff: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, lo, hi) of a matrix of paired differences ``D[image, seed]`` (a vector: one seed): each resample
    draws images and seeds with replacement, independently, and takes the mean of ``D`` over the drawn grid;
    ``lo``/``hi`` are the ``(1 -+ confidence) / 2`` percentiles of the resampled means (NaN for a single pair: one
    image of one seed has no interval). ``resamples`` draws from ``numpy.random.default_rng(seed)``: the same inputs
    give the same interval."""
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    ni, ns = d.shape
    if ni == 0 or ns == 0:
        raise ValueError("no paired differences to bootstrap")
    if ni * ns == 1:  # one pair has no spread to resample: no interval (never "excludes 0")
        return float(d.mean()), math.nan, math.nan
    rng = np.random.default_rng(seed)
    ci = _draw_counts(rng, resamples, ni)
    cs = _draw_counts(rng, resamples, ns) if ns > 1 else np.ones((resamples, 1))
    means = np.einsum("bi,ij,bj->b", ci, d, cs) / (ni * ns)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(d.mean()), float(lo), float(hi)


# ----- per_image.csv ------------------------------------------------------------------------------------------------
def _read_records(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("exit"):
                continue
            vals = {}
            for k, v in r.items():
                if k in ("set", "exit", "image") or v in (None, ""):
                    continue
                try:
                    vals[k] = float(v)
                except ValueError:
                    pass
            out.setdefault(r["set"], {})[r["image"]] = vals
    return out


def read_per_image(job_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{set: {image: {metric: value}}}`` of a job's per_image.csv (main output: empty ``exit``); {} when absent.
    A video job (per_frame.csv, images ``clip/frame``) gives one unit per clip, each metric averaged over the clip's
    frames that have it: the frames of a clip are not independent, the clips are."""
    path = Path(job_dir) / "per_image.csv"
    if path.is_file():
        return _read_records(path)
    frames = Path(job_dir) / "per_frame.csv"
    if not frames.is_file():
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, per_frame in _read_records(frames).items():
        clips: dict[str, dict[str, list[float]]] = {}
        for image, vals in per_frame.items():
            clip = clips.setdefault(image.rsplit("/", 1)[0], {})
            for k, v in vals.items():
                clip.setdefault(k, []).append(v)
        out[set_name] = {c: {k: sum(v) / len(v) for k, v in m.items()} for c, m in clips.items()}
    return out


PerSeed = dict[int, dict[str, dict[str, dict[str, float]]]]  # seed -> set -> image -> metric -> value


def paired_differences(row: PerSeed, ref: PerSeed, set_name: str, metric: str) -> tuple[np.ndarray, bool]:
    """``(D, paired_by_seed)``: ``D[image, seed]`` when both sides ran the same seeds, else ``D[image]`` of seed
    means (module docstring). Images are those both sides measured (sorted by name); empty when none."""
    def images(side: PerSeed) -> set[str]:
        sets = [set(k for k, v in (per.get(set_name) or {}).items() if metric in v) for per in side.values()]
        return set.intersection(*sets) if sets else set()

    common = sorted(images(row) & images(ref))
    if not common:
        return np.zeros((0,)), False
    if sorted(row) == sorted(ref):
        seeds = sorted(row)
        d = np.array([[row[s][set_name][i][metric] - ref[s][set_name][i][metric] for s in seeds] for i in common])
        return d, True

    def seed_mean(side: PerSeed, i: str) -> float:
        return float(np.mean([side[s][set_name][i][metric] for s in side]))

    return np.array([seed_mean(row, i) - seed_mean(ref, i) for i in common]), False


def delta(row: PerSeed, ref: PerSeed, set_name: str, metric: str, resamples: int = RESAMPLES,
          seed: int = BOOTSTRAP_SEED) -> Bootstrap | None:
    """Paired difference row - reference on one set and metric with its bootstrap interval (None: no pairs)."""
    d, by_seed = paired_differences(row, ref, set_name, metric)
    if d.size == 0:
        return None
    m, lo, hi = paired_bootstrap(d, resamples, seed)
    return Bootstrap(m, lo, hi, d.shape[0], d.shape[1] if d.ndim == 2 else 1, by_seed)


__all__ = ["BOOTSTRAP_SEED", "Bootstrap", "CONFIDENCE", "RESAMPLES", "SEED_KEY", "delta", "group_key", "group_name",
           "mean_std", "paired_bootstrap", "paired_differences", "read_per_image"]
