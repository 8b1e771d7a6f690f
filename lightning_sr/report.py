"""Sweep report: one table (and two plots) from the job folders of a Hydra multirun.

    python -m lightning_sr.report outputs/<name>/multiruns/<time>      # or: lsr-report <dir>

writes into that folder

* ``report.csv``: one row per job (swept values, model cost, PSNR/SSIM/LPIPS per validation set and per
  exit, training time, status), the bicubic baseline, and the published numbers of the table the sweep
  reproduces as separate rows whose ``source`` is ``published``;
* ``report.md``: the same table for reading, with the command, the published source and notes;
* ``psnr_vs_params.png`` and ``psnr_vs_macs.png``: every finished job (and every exit of a multi-exit
  job), the Pareto front (highest PSNR for its cost) marked, published points drawn apart.

Failed jobs (``"status": "failed"`` in metrics.json) and unfinished ones (no metrics.json) are rows that
say so. The published table comes from the jobs' ``published`` config key (an experiment config sets it)
or ``--published NAME|FILE``; see sweeps/published/README.md. No W&B needed.
A multirun also writes this report by itself when it ends (Hydra callback in conf/hydra/default.yaml).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_sr.sweep import (
    COST_KEYS,
    METRICS,
    Job,
    PublishedTable,
    bicubic_values,
    find_job_dirs,
    load_job,
    load_published,
    measured_values,
    sweep_name,
    swept_keys,
)

log = logging.getLogger(__name__)

MEASURED, PUBLISHED, BICUBIC = "measured", "published", "bicubic"
PLOTS = {"params": "psnr_vs_params.png", "macs": "psnr_vs_macs.png"}


@dataclass
class SweepReport:
    sweep_dir: Path
    jobs: list[Job]
    keys: list[str]                       # swept keys (columns)
    rows: list[dict[str, Any]]            # measured, published and bicubic rows
    sets: list[str]                       # validation sets measured, in order
    exits: list[str]                      # exits measured (multi-exit models)
    published: PublishedTable | None = None
    command: list[str] = field(default_factory=list)
    name: str | None = None
    notes: list[str] = field(default_factory=list)

    def measured(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["source"] == MEASURED]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for j in self.jobs:
            out[j.status] = out.get(j.status, 0) + 1
        return out


# ----- collecting -------------------------------------------------------------------------------------------------
def _published_name(jobs: list[Job], override: str | None) -> str | None:
    if override:
        return override
    for j in jobs:
        p = j.select("published")
        if p:
            return str(p)
    return None


def _ordered(seen: list[str], new) -> None:
    for x in new:
        if x not in seen:
            seen.append(x)


def _deepest_remap(values: dict[str, Any], exit_name: str, job_row: dict[str, Any], sets: list[str]) -> dict:
    """A published row for the deepest exit of a multi-exit job is the job's main output."""
    if any(k.startswith(f"{s}/{exit_name}/") for s in sets for k in job_row):
        return values
    return {k.replace(f"/{exit_name}/", "/"): v for k, v in values.items()}


def collect(sweep_dir: str | Path, published: str | None = None) -> SweepReport:
    from omegaconf import OmegaConf

    from lightning_sr.errors import ConfigError

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir} is not a folder; give a multirun folder (outputs/<name>/multiruns/<time>)")
    dirs = find_job_dirs(sweep_dir)
    if not dirs:
        raise ConfigError(f"{sweep_dir} holds no job folders (<n>/.hydra); is it a Hydra multirun folder?")
    jobs = [load_job(d) for d in dirs]
    keys = swept_keys(sweep_dir, jobs)
    command: list[str] = []
    name = sweep_name(sweep_dir)
    if (sweep_dir / "multirun.yaml").is_file():
        try:
            mr = OmegaConf.load(sweep_dir / "multirun.yaml")
            command = [str(t) for t in (OmegaConf.select(mr, "hydra.overrides.task", default=None) or [])]
        except Exception:
            pass
    sets: list[str] = []
    exits: list[str] = []
    rows: list[dict[str, Any]] = []
    bicubic: dict[str, Any] = {}
    for j in jobs:
        ov = j.override_values()
        row: dict[str, Any] = {k: ov.get(k, _fmt_cfg(j.select(k))) for k in keys}
        row.update(job=j.name, source=MEASURED, status=j.status)
        if j.metrics and j.status == "finished":
            row.update(measured_values(j.metrics))
            _ordered(sets, (j.metrics.get("sets") or {}).keys())
            for ex in (j.metrics.get("exits") or {}).values():
                _ordered(exits, ex.keys())
            for s, v in bicubic_values(j.metrics).items():
                bicubic.setdefault(s, v)
            name = name or j.metrics.get("name")
        if j.error:
            row["error"] = j.error.strip().splitlines()[0][:300]
        name = name or j.select("name")
        rows.append(row)

    table = None
    notes: list[str] = []
    pub_name = _published_name(jobs, published)
    if pub_name:
        try:
            table = load_published(pub_name)
        except ConfigError as e:
            if published:  # asked for on the command line: an error
                raise
            notes.append(f"the jobs name the published table {pub_name!r}, which could not be loaded: {e}")
            log.warning("%s", notes[-1])
    if table is not None:
        placed = set()
        out: list[dict[str, Any]] = []
        for j, row in zip(jobs, rows, strict=True):
            out.append(row)
            for i, pr in enumerate(table.rows):
                if i in placed or not pr.matches(j):
                    continue
                placed.add(i)
                vals = _deepest_remap(pr.values, pr.exit, row, sets) if pr.exit else pr.values
                out.append(_published_row(pr, keys, table, vals, job=j.name))
        for i, pr in enumerate(table.rows):  # published rows this sweep did not (yet) run
            if i not in placed:
                out.append(_published_row(pr, keys, table, pr.values, job=None))
        rows = out
    if bicubic:
        rows.append({**{k: "" for k in keys}, "job": "", "source": BICUBIC, "status": "", **bicubic,
                     "label": "bicubic upscaling (same validation images)"})
    return SweepReport(sweep_dir, jobs, keys, rows, sets, exits, table, command, name, notes)


def _fmt_cfg(v: Any) -> str:
    return "" if v is None else str(v)


def _published_row(pr, keys: list[str], table: PublishedTable, values: dict[str, Any], job: str | None) -> dict:
    row: dict[str, Any] = {k: _fmt_cfg(pr.match.get(k)) for k in keys}
    for k, v in pr.match.items():  # keys the sweep did not sweep still say which row this is
        row.setdefault(k, _fmt_cfg(v))
    row.update(job=job or "", source=PUBLISHED, status="" if job else "not run in this sweep",
               label=pr.label or "", exit=pr.exit or "", published_source=table.source)
    row.update(values)
    return row


# ----- columns ----------------------------------------------------------------------------------------------------
def csv_columns(rep: SweepReport) -> list[str]:
    cols = [*rep.keys, "job", "source", "status", "exit", "label"]
    cols += ["params", "params_trainable", "macs", "macs_input", "size_mb", "latency_ms", "latency_threads"]
    cols += list(METRICS)
    present = set().union(*[r.keys() for r in rep.rows]) if rep.rows else set()
    sets = list(rep.sets)
    _ordered(sets, sorted({k.split("/")[0] for k in present if k.count("/") == 1 and k.split("/")[1] in METRICS}))
    exits = list(rep.exits)
    _ordered(exits, sorted({k.split("/")[0] for k in present if k.count("/") == 1 and k.split("/")[1] in COST_KEYS}))
    _ordered(exits, sorted({k.split("/")[1] for k in present if k.count("/") == 2}))
    cols += [f"{s}/{m}" for s in sets for m in METRICS]
    cols += [f"{e}/{k}" for e in exits for k in COST_KEYS]
    cols += [f"{s}/{e}/{m}" for s in sets for e in exits for m in METRICS]
    cols += ["train_time_s", "global_step", "published_source", "error"]
    _ordered(cols, sorted(present))
    return [c for c in cols if c in present or c in (*rep.keys, "job", "source", "status")]


def write_csv(rep: SweepReport, path: Path) -> Path:
    cols = csv_columns(rep)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rep.rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return path


# ----- markdown ---------------------------------------------------------------------------------------------------
def _num(v: Any, fmt: str) -> str:
    if v is None or v == "":
        return ""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(x):
        return ""
    return format(x, fmt)


def _fmt(col: str, v: Any) -> str:
    last = col.split("/")[-1]
    if last in ("params", "params_trainable"):
        return _num(v, ",.0f")
    if last == "macs":
        return _num(float(v) / 1e9, ".3f") if v not in (None, "") else ""
    if last == "psnr":
        return _num(v, ".2f")
    if last in ("ssim", "lpips"):
        return _num(v, ".4f")
    if last == "size_mb":
        return _num(v, ".3f")
    if last == "latency_ms":
        return _num(v, ".1f")
    if last == "train_time_s":
        return _duration(v)
    return str(v) if v is not None else ""


def _duration(v: Any) -> str:
    try:
        s = float(v)
    except (TypeError, ValueError):
        return ""
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _header(col: str, rep: SweepReport) -> str:
    parts = col.split("/")
    last = parts[-1]
    names = {"params": "params", "params_trainable": "trainable params", "macs": "GMACs",
             "size_mb": "size (MB)", "latency_ms": "CPU latency (ms)", "psnr": "PSNR", "ssim": "SSIM",
             "lpips": "LPIPS", "train_time_s": "train time", "job": "job", "source": "source", "status": "status"}
    if col in rep.keys:
        return col
    base = names.get(last, last)
    return " ".join([*parts[:-1], base]) if len(parts) > 1 else base


def md_columns(rep: SweepReport) -> list[str]:
    present = set().union(*[r.keys() for r in rep.rows])
    cols = [*rep.keys, "job", "source", "status"]
    if any(r.get("exit") for r in rep.rows):
        cols.append("exit")
    cols.append("params")
    if any(r.get("params_trainable") not in (None, r.get("params")) for r in rep.measured()):
        cols.append("params_trainable")
    cols += ["macs", "size_mb", "latency_ms"]
    sets = list(rep.sets)
    _ordered(sets, sorted({k.split("/")[0] for k in present if k.count("/") == 1 and k.split("/")[1] in METRICS}))
    if len(rep.sets) > 1:  # headline: mean over the sets measured
        cols += list(METRICS)
    cols += [f"{s}/{m}" for s in sets for m in METRICS]
    exits = list(rep.exits)
    _ordered(exits, sorted({k.split("/")[1] for k in present if k.count("/") == 2}))
    cols += [f"{e}/{k}" for e in exits for k in ("params", "macs")]
    cols += [f"{s}/{e}/{m}" for s in sets for e in exits for m in METRICS]
    cols.append("train_time_s")
    return [c for c in cols if c in (*rep.keys, "job", "source", "status") or any(c in r for r in rep.rows)]


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def write_markdown(rep: SweepReport, path: Path, plots: dict[str, Path]) -> Path:
    cols = md_columns(rep)
    counts = rep.counts()
    lines = [f"# Sweep report: {rep.name or rep.sweep_dir.name}", ""]
    lines.append(f"Folder `{rep.sweep_dir}`, {len(rep.jobs)} jobs: "
                 + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f". Written {time.strftime('%Y-%m-%d %H:%M')}.")
    if rep.command:
        lines += ["", "Command: `python train.py -m " + " ".join(rep.command) + "`"]
    if rep.published is not None:
        m = rep.published.meta
        where = rep.published.path
        try:
            where = where.resolve().relative_to(Path(__file__).resolve().parents[1])
        except ValueError:
            pass
        bits = [f"**Published** rows come from `{where}`" + (f" ({m['title']})" if m.get("title") else "")]
        bits.append(f"source: `{rep.published.source}`")
        if m.get("train_set"):
            bits.append(f"train: {m['train_set']}")
        es = m.get("eval_sets") or ([m["eval_set"]] if m.get("eval_set") else [])
        if es:
            bits.append(f"eval: {', '.join(es)}")
        lines += ["", ", ".join(bits) + ". They are the paper's numbers, not measured here."]
        unmeasured = [s for s in rep.published.sets() if s not in rep.sets]
        if unmeasured and rep.sets:
            lines += ["", f"Note: the published numbers are on {', '.join(unmeasured)}, this sweep measured "
                          f"{', '.join(rep.sets)} (a smoke run?): their columns are not comparable."]
    for note in rep.notes:
        lines += ["", f"Note: {note}"]
    lines += ["", "| " + " | ".join(_header(c, rep) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rep.rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            if c == "source" and v == PUBLISHED:
                v = "**published**"
            elif c not in (*rep.keys, "job", "source", "status", "exit"):
                v = _fmt(c, v)
            cells.append(_md_escape(str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    meas = [j for j in rep.jobs if j.metrics and j.status == "finished"]
    if meas:
        c = meas[0].metrics.get("cost") or {}
        note = "Cost: params counted on the generator; GMACs of one forward pass"
        if c.get("macs_input"):
            note += f" on a {c['macs_input']} LR input"
        note += " (torch.utils.flop_counter, FLOPs/2)"
        if c.get("latency_threads"):
            note += f"; CPU latency: median batch-1 forward, {c['latency_threads']} torch threads"
        lines += ["", note + ". PSNR/SSIM on the Y channel, border of `scale` pixels cropped."]
    bad = [j for j in rep.jobs if j.status != "finished"]
    if bad:
        lines += ["", "## Jobs that did not finish", ""]
        for j in bad:
            lines.append(f"- job {j.name} ({' '.join(j.overrides)}): **{j.status}**"
                         + (f": {_md_escape(j.error.strip().splitlines()[0][:300])}" if j.error else ""))
    if plots:
        lines += ["", "## Plots", ""]
        for key, p in plots.items():
            lines.append(f"![PSNR vs {key}]({p.name})")
        lines += ["", "Filled circles: measured (each exit of a multi-exit job is its own point); "
                      "the line marks the Pareto front (no other run is both cheaper and better). "
                      "Hollow squares: published numbers (only when they are on the sets measured here)."]
    path.write_text("\n".join(lines) + "\n")
    return path


# ----- plots ------------------------------------------------------------------------------------------------------
def _mean(vals: list[Any]) -> float | None:
    xs = []
    for v in vals:
        try:
            xs.append(float(v))
        except (TypeError, ValueError):
            return None
    return sum(xs) / len(xs) if xs else None


def _short(rep: SweepReport, row: dict[str, Any]) -> str:
    parts = [f"{k.split('.')[-1]}={row.get(k)}" for k in rep.keys if row.get(k) not in (None, "")]
    return ",".join(parts) or f"job {row.get('job')}"


def plot_points(rep: SweepReport) -> list[dict[str, Any]]:
    """Points for the plots: {label, params, macs, psnr, kind} for every finished job and exit, and the
    published rows that report PSNR on every set measured here."""
    pts: list[dict[str, Any]] = []
    sets = rep.sets
    if not sets:
        return pts
    for r in rep.rows:
        if r["source"] == BICUBIC:
            continue
        kind = r["source"]
        if kind == MEASURED and r.get("status") != "finished":
            continue
        outputs = [("", "")] if not r.get("exit") else [(r["exit"] + "/", r["exit"])]
        if kind == MEASURED:
            outputs += [(f"{e}/", e) for e in rep.exits]
        for pre, ex in outputs:
            y = _mean([r.get(f"{s}/{pre}psnr") for s in sets])
            if y is None and pre and kind == PUBLISHED:  # the deepest exit, shown as the main output
                y = _mean([r.get(f"{s}/psnr") for s in sets])
            cost_pre = pre if pre and f"{pre}params" in r else ""
            if y is None:
                continue
            label = _short(rep, r) + (f":{ex}" if ex else "")
            pts.append({"label": label, "params": r.get(f"{cost_pre}params"), "macs": r.get(f"{cost_pre}macs"),
                        "psnr": y, "kind": kind})
    return pts


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (lower or equal cost and higher or equal PSNR, one strictly)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot(rep: SweepReport, out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    pts = plot_points(rep)
    sets_txt = rep.sets[0] if len(rep.sets) == 1 else "mean over " + ", ".join(rep.sets)
    written: dict[str, Path] = {}
    for key, fname in PLOTS.items():
        meas = [p for p in pts if p["kind"] == MEASURED and p.get(key) not in (None, "")]
        pub = [p for p in pts if p["kind"] == PUBLISHED and p.get(key) not in (None, "")]
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        scale = 1.0
        if meas:
            xy = [(float(p[key]) / scale, float(p["psnr"])) for p in meas]
            front = pareto_front(xy)
            ax.scatter([x for x, _ in xy], [y for _, y in xy], s=28, color="tab:blue", zorder=3, label="measured")
            fx, fy = [xy[i][0] for i in front], [xy[i][1] for i in front]
            ax.plot(fx, fy, "-", color="tab:red", lw=1.2, zorder=2)
            ax.scatter(fx, fy, s=90, facecolors="none", edgecolors="tab:red", zorder=4, label="Pareto front")
            for (x, y), p in zip(xy, meas, strict=True):
                ax.annotate(p["label"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if pub:
            xy = [(float(p[key]) / scale, float(p["psnr"])) for p in pub]
            src = rep.published.source if rep.published else "paper"
            ax.scatter([x for x, _ in xy], [y for _, y in xy], marker="s", s=36, facecolors="none",
                       edgecolors="tab:green", zorder=3, label=f"published ({src})")
            for (x, y), p in zip(xy, pub, strict=True):
                ax.annotate(p["label"], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color="tab:green")
        if not meas and not pub:
            ax.text(0.5, 0.5, "no finished job with PSNR and cost yet", ha="center", va="center",
                    transform=ax.transAxes)
        xs = [float(p[key]) for p in meas + pub]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.ticklabel_format(axis="y", useOffset=False)
        unit = "MACs" if key == "macs" else "parameters"
        if key == "macs" and meas:
            mi = next((j.metrics.get("cost", {}).get("macs_input") for j in rep.jobs if j.metrics and
                       j.status == "finished"), None)
            if mi:
                unit += f" ({mi} LR input)"
        ax.set_xlabel(unit)
        ax.set_ylabel(f"PSNR (dB), {sets_txt}")
        ax.set_title(f"{rep.name or rep.sweep_dir.name}: PSNR vs {'MACs' if key == 'macs' else 'parameters'}",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(x=0.12, y=0.12)
        if meas or pub:
            ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path)
        plt.close(fig)
        written[key] = path
    return written


# ----- entry points -----------------------------------------------------------------------------------------------
def build_report(sweep_dir: str | Path, published: str | None = None,
                 plots: bool = True) -> tuple[SweepReport, dict[str, Path]]:
    rep = collect(sweep_dir, published)
    out = Path(sweep_dir)
    paths = {"csv": write_csv(rep, out / "report.csv")}
    pngs = plot(rep, out) if plots else {}
    paths["md"] = write_markdown(rep, out / "report.md", pngs)
    paths.update({f"plot_{k}": v for k, v in pngs.items()})
    return rep, paths


def make_report(sweep_dir: str | Path, published: str | None = None, plots: bool = True) -> dict[str, Path]:
    """Write report.csv, report.md and the plots into ``sweep_dir``; return their paths."""
    return build_report(sweep_dir, published, plots)[1]


def main(argv: list[str] | None = None) -> int:
    from lightning_sr.errors import LightningSRError

    ap = argparse.ArgumentParser(prog="lsr-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", help="a multirun folder, e.g. outputs/<name>/multiruns/<time>")
    ap.add_argument("--published", default=None,
                    help="published table (name in sweeps/published/ or a YAML file); default: the jobs' "
                         "`published` config key")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = ap.parse_args(argv)
    try:
        rep, paths = build_report(args.sweep_dir, args.published, plots=not args.no_plots)
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


if __name__ == "__main__":
    sys.exit(main())
