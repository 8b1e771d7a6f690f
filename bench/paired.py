"""Paired comparison of evaluated models: per-image metric differences against a reference, with a 95 % paired
bootstrap confidence interval over the images (lightning_sr.report.stats.paired_bootstrap, the report's own).

Each argument is a run folder holding ``per_image.csv`` (``train.py`` or ``evaluate.py`` writes it), as
``label=FOLDER``; the first is the reference. Images are paired by (set, image name).

    python bench/paired.py teacher=/tmp/e/teacher one_run=/tmp/e/gs late=/tmp/e/late [--metric psnr]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_sr.report.stats import paired_bootstrap, read_per_image  # noqa: E402


def values(folder: Path, metric: str) -> dict[tuple[str, str], float]:
    return {(s, img): v[metric] for s, imgs in read_per_image(folder).items() for img, v in imgs.items()
            if metric in v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="label=FOLDER, the first is the reference")
    ap.add_argument("--metric", default="psnr")
    a = ap.parse_args()
    runs = [r.split("=", 1) for r in a.runs]
    ref_label, ref_dir = runs[0]
    ref = values(Path(ref_dir), a.metric)
    print(f"| row | images | mean {a.metric} | delta vs {ref_label} | 95 % CI | CI excludes 0 |\n|---|---|---|---|---|---|")
    print(f"| {ref_label} | {len(ref)} | {np.mean(list(ref.values())):.4f} | | | |")
    for label, folder in runs[1:]:
        got = values(Path(folder), a.metric)
        keys = sorted(set(ref) & set(got))
        diff = np.array([got[k] - ref[k] for k in keys])
        mean, lo, hi = paired_bootstrap(diff)
        print(f"| {label} | {len(keys)} | {np.mean([got[k] for k in keys]):.4f} | {mean:+.4f} | [{lo:+.4f}, {hi:+.4f}] "
              f"| {'yes' if lo > 0 or hi < 0 else 'no'} |")


if __name__ == "__main__":
    main()
