"""``report.md``: the collected sweep as a table for reading, with the command, the published source,
notes and the plots."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from lightning_sr.metrics_json import METRICS
from lightning_sr.report.collect import PUBLISHED, SweepReport, ordered
from lightning_sr.report.compare import DELTA_METRICS, STD
from lightning_sr.report.stats import CONFIDENCE, RESAMPLES


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
    if last in ("global_step", "images_seen", "steps_total", "images_total"):
        return _num(v, ",.0f")
    if last.startswith("delta_"):
        return _num(v, "+.4f" if last != "delta_psnr" else "+.3f")
    if last in ("params", "params_trainable"):
        return _num(v, ",.0f")
    if last == "macs":
        return _num(float(v) / 1e9, ".3f") if v not in (None, "") else ""
    if last in ("psnr", "accuracy"):
        return _num(v, ".2f")
    if last in ("ssim", "lpips", "tof"):
        return _num(v, ".4f")
    if last == "tlp":
        return _num(v, ".3f")
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


TEACHER = "teacher/"


def header(col: str, rep: SweepReport) -> str:
    parts = col.split("/")
    last = parts[-1]
    names = {"params": "params", "params_trainable": "trainable params", "macs": "GMACs",
             "size_mb": "size (MB)", "latency_ms": "CPU latency (ms)", "psnr": "PSNR", "ssim": "SSIM",
             "lpips": "LPIPS", "tof": "tOF", "tlp": "tLP100", "train_time_s": "train time", "job": "job", "source": "source", "status": "status",
             "accuracy": "accuracy (%)", "label": "published row",
             "r_s": "r_s (teacher/student MACs)", "r_c": "r_c (teacher fp32/student bytes)",
             "n": "n (seeds)", "global_step": "steps", "images_seen": "images seen",
             "steps_total": "steps incl. init", "images_total": "images incl. init", "machine": "latency machine",
             "reproduced": "reproduced?", "protocol_differences": "protocol differences (vs paper)"}
    if last.startswith("delta_"):
        return " ".join([*parts[:-1], f"Δ{names.get(last[6:], last[6:])} vs {rep.reference} (95% CI)"])
    if col in rep.keys:
        return col
    if recycled(rep):  # Weight Recycle: fewer stored parameters, the same multiply-accumulates
        names.update(params="params (stored)", macs="GMACs (real, unchanged by recycling)")
    base = names.get(last, last)
    return " ".join([*parts[:-1], base]) if len(parts) > 1 else base


def how_to_read(rep: SweepReport) -> list[str]:
    """Lines under the table that say how to read its statistics columns (only those present)."""
    out = []
    if any(r.get("n") not in (None, "") for r in rep.rows):
        out.append("Seeds: jobs that differ only by `seed` are one row; numbers are the mean ± sample std (ddof 1) "
                   "over its `n` finished seeds.")
    if rep.reference:
        out.append(f"Δ: row minus the reference row `{rep.reference}`, paired per image (and per seed when both "
                   f"rows ran the same seeds, else on per-image seed means) from per_image.csv, with a "
                   f"{CONFIDENCE:.0%} bootstrap interval ({RESAMPLES:,} resamples of images and seeds); `*`: the "
                   f"interval excludes 0.")
    if any(r.get("reproduced") for r in rep.rows):
        out.append("Reproduced?: measured minus published PSNR on every set both have, within the table's "
                   "tolerance; the protocol differences that can explain a gap are beside it.")
    if any(r.get("machine") for r in rep.rows):
        out.append("Latency machine: the CPU (and GPU) of the jobs' manifest.json; latencies of different machines "
                   "are never compared.")
    return ["", *[f"_{x}_" for x in out]] if out else []


def recycled(rep: SweepReport) -> bool:
    """Does any finished job use recycled convolutions (``model.conv=recycle``)?"""
    return any((j.metrics.get("generator") or {}).get("conv") == "recycle" for j in rep.jobs
               if j.metrics and j.status == "finished")


def md_columns(rep: SweepReport) -> list[str]:
    present = set().union(*[r.keys() for r in rep.rows])
    cols = [*rep.keys, "job", "source", "status"]
    if any(r.get("n") not in (None, "") for r in rep.rows):
        cols.append("n")
    if any(r.get("exit") for r in rep.rows):
        cols.append("exit")
    cols.append("params")
    if any(r.get("params_trainable") not in (None, r.get("params")) for r in rep.measured()):
        cols.append("params_trainable")
    cols += ["macs", "size_mb", "latency_ms", "machine"]
    sets = list(rep.sets)
    ordered(sets, sorted({k.split("/")[0] for k in present if k.count("/") == 1 and k.split("/")[1] in METRICS
                           and not k.startswith(TEACHER)}))
    if len(rep.sets) > 1:  # headline: mean over the sets measured
        cols += list(METRICS)
    cols += [f"{s}/{m}" for s in sets for m in METRICS]
    exits = list(rep.exits)
    ordered(exits, sorted({k.split("/")[1] for k in present if k.count("/") == 2 and not k.startswith(TEACHER)}))
    cols += [f"{e}/{k}" for e in exits for k in ("params", "macs")]
    cols += [f"{s}/{e}/{m}" for s in sets for e in exits for m in METRICS]
    # distillation: the teacher beside the student; GAN Slimming's ratios (teacher / deployed student)
    cols += ["teacher/params", "teacher/macs", "teacher/size_mb", *[f"teacher/{s}/{m}" for s in sets for m in METRICS],
             "r_s", "r_c"]
    cols += [f"{s}/delta_{m}" for s in sets for m in DELTA_METRICS]  # paired differences to the reference row
    cols += ["global_step", "images_seen", "steps_total", "images_total", "train_time_s"]  # the training budget
    if rep.published is not None:  # the paper's row names (also of published rows this sweep did not run)
        cols += ["label", "reproduced", "protocol_differences"]
    return [c for c in cols if c in (*rep.keys, "job", "source", "status") or any(c in r for r in rep.rows)]


TEXT_COLS = ("job", "source", "status", "exit", "label", "machine", "protocol_differences")


def cell_text(col: str, row: dict[str, Any], rep: SweepReport) -> str:
    """A cell as report.md and report.html show it: numbers formatted, ``mean ± std`` for a seed group,
    ``Δ [lo, hi] *`` for a paired difference (``*``: the 95 % interval excludes 0), the reproduced verdict with
    its numbers."""
    v = row.get(col, "")
    if col in rep.keys or col in TEXT_COLS:
        return str(v) if v is not None else ""
    if col == "reproduced":
        return f"{v}: {row['reproduced_detail']}" if v and row.get("reproduced_detail") else str(v or "")
    last = col.split("/")[-1]
    if last.startswith("delta_") and v not in (None, "", "reference"):
        lo, hi = row.get(f"{col}_lo"), row.get(f"{col}_hi")
        text = _fmt(col, v)
        if lo not in (None, "") and hi not in (None, ""):
            text += f" [{_fmt(col, lo)}, {_fmt(col, hi)}]" if lo == lo and hi == hi else " (one pair: no interval)"
        return text + (" *" if row.get(f"{col}_sig") else "")
    text = _fmt(col, v)
    sd = row.get(col + STD)
    if text and sd not in (None, "", 0, 0.0) and row.get("n", 0) and int(row.get("n", 0)) > 1:
        text += " ± " + (_fmt(col, sd) if last not in ("train_time_s",) else _duration(sd))
    return text


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
            where = where.resolve().relative_to(Path(__file__).resolve().parents[2])
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
    for warning in rep.warnings:
        lines += ["", f"**Warning:** {warning}"]
    for note in rep.notes:
        lines += ["", f"Note: {note}"]
    lines += ["", "| " + " | ".join(header(c, rep) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rep.rows:
        cells = []
        for c in cols:
            v = "**published**" if c == "source" and r.get(c) == PUBLISHED else cell_text(c, r, rep)
            cells.append(_md_escape(str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += how_to_read(rep)
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
        if recycled(rep):
            lines += ["", "Weight Recycle (`model.conv=recycle`): params are the parameters stored (a recycled "
                          "convolution keeps 1/4 of its filters and computes the other 3/4 as their rotations); GMACs "
                          "are the real multiply-accumulates, which recycling does not reduce, and latency includes "
                          "rebuilding the full weights at every forward pass."]
    bad = [j for j in rep.jobs if j.status != "finished"]
    if bad:
        lines += ["", "## Jobs that did not finish", ""]
        for j in bad:
            lines.append(f"- job {j.name} ({' '.join(j.overrides)}): **{j.status}**"
                         + (f": {_md_escape(j.error.strip().splitlines()[0][:300])}" if j.error else ""))
    if plots:
        lines += ["", "## Plots", ""]
        for key, p in plots.items():
            what = "PSNR" if p.name.startswith("psnr") else p.name.split("_vs_")[0]
            lines.append(f"![{what} vs {key}]({p.name})")
        lines += ["", "Filled circles: measured (each exit of a multi-exit job is its own point); "
                      "the line marks the Pareto front (no other run is both cheaper and better). "
                      "Hollow squares: published numbers (only when they are on the sets measured here)."]
    path.write_text("\n".join(lines) + "\n")
    return path
