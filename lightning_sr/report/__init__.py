"""Sweep report: one table (and two plots) from the job folders of a Hydra multirun.

    python -m lightning_sr.report outputs/<name>/multiruns/<time>      # or: lsr-report <dir>

writes into that folder

* ``report.csv``: one row per job (swept values, model cost, PSNR/SSIM/LPIPS per validation set and per
  exit, training time, status), the bicubic baseline, and the published numbers of the table the sweep
  reproduces as separate rows whose ``source`` is ``published``;
* ``report.md``: the same table for reading, with the command, the published source and notes;
* ``report.html``: the same on one self-contained page (sortable table, plots inlined, published rows marked,
  per job an LR | SR | HR crop of its latest sample; :mod:`lightning_sr.report.html`);
* seeds (``seed`` swept): jobs that differ only by seed are one row, mean ± std and ``n`` of every number;
  ``--reference ROW`` (or the jobs' ``report.reference``): every row's paired difference to that row per set
  with a 95 % bootstrap interval (:mod:`lightning_sr.report.stats`); ``reproduced?`` against the matching
  published row; training budgets (steps, images seen, wall time), warned about when they differ; the machine
  of every latency (``manifest.json``), latencies of different machines refused (:mod:`.compare`);
* ``psnr_vs_params.png`` and ``psnr_vs_macs.png``: every finished job (and every exit of a multi-exit
  job), the Pareto front (highest PSNR for its cost) marked, published points drawn apart.

Failed jobs (``"status": "failed"`` in metrics.json) and unfinished ones (no metrics.json) are rows that
say so. The published table comes from the jobs' ``published`` config key (an experiment config sets it)
or ``--published NAME|FILE``; see sweeps/published/README.md. No W&B needed.
A multirun also writes this report by itself when it ends (Hydra callback in conf/hydra/default.yaml).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from lightning_sr.errors import LightningSRError
from lightning_sr.report.collect import BICUBIC, MEASURED, PUBLISHED, SweepReport, collect
from lightning_sr.report.csv_table import csv_columns, write_csv
from lightning_sr.report.html import write_html
from lightning_sr.report.markdown import md_columns, write_markdown
from lightning_sr.report.plots import PLOTS, pareto_front, plot, plot_points

log = logging.getLogger(__name__)


def build_report(sweep_dir: str | Path, published: str | None = None, plots: bool = True,
                 reference: str | None = None) -> tuple[SweepReport, dict[str, Path]]:
    rep = collect(sweep_dir, published, reference)
    out = Path(sweep_dir)
    paths = {"csv": write_csv(rep, out / "report.csv")}
    pngs = plot(rep, out) if plots else {}
    paths["md"] = write_markdown(rep, out / "report.md", pngs)
    paths["html"] = write_html(rep, out / "report.html", pngs)
    paths.update({f"plot_{k}": v for k, v in pngs.items()})
    return rep, paths


def make_report(sweep_dir: str | Path, published: str | None = None, plots: bool = True,
                reference: str | None = None) -> dict[str, Path]:
    """Write report.csv, report.md, report.html and the plots into ``sweep_dir``; return their paths."""
    return build_report(sweep_dir, published, plots, reference)[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lsr-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", help="a multirun folder, e.g. outputs/<name>/multiruns/<time>")
    ap.add_argument("--published", default=None,
                    help="published table (name in sweeps/published/ or a YAML file); default: the jobs' "
                         "`published` config key")
    ap.add_argument("--reference", default=None,
                    help="the row every other row is compared with (paired bootstrap over per_image.csv), e.g. "
                         "model.res_blocks=1; default: the jobs' `report.reference` config key")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = ap.parse_args(argv)
    try:
        rep, paths = build_report(args.sweep_dir, args.published, plots=not args.no_plots, reference=args.reference)
    except LightningSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{rep.sweep_dir}: {len(rep.jobs)} jobs (" + ", ".join(f"{n} {s}" for s, n in sorted(rep.counts().items()))
          + ")")
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


class SweepReportCallback(_HydraCallback):
    """Hydra callback: write the report into the multirun folder when the multirun ends. Never fails the sweep."""

    def __init__(self, enabled: bool = True, plots: bool = True):
        self.enabled, self.plots = enabled, plots

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if not self.enabled:
            return
        try:
            sweep_dir = Path(config.hydra.sweep.dir)
            paths = make_report(sweep_dir, plots=self.plots)
            log.info("sweep report: %s", paths["md"])
            print(f"sweep report: {paths['md']} (and report.csv, plots) in {sweep_dir}")
        except Exception as e:  # the sweep itself is done; a report problem is only a warning
            log.warning("could not write the sweep report (%s: %s); run: python -m lightning_sr.report %s",
                        type(e).__name__, e, getattr(getattr(config, "hydra", None), "sweep", {}).get("dir", "DIR"))


__all__ = ["BICUBIC", "MEASURED", "PLOTS", "PUBLISHED", "SweepReport", "SweepReportCallback", "build_report",
           "collect", "csv_columns", "make_report", "md_columns", "pareto_front", "plot", "plot_points", "write_csv",
           "write_html", "write_markdown"]
