"""``report.md``: the collected sweep as a table for reading, with the command, the published source,
notes and the plots."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from lightning_sr.report.collect import PUBLISHED, SweepReport, _ordered
from lightning_sr.summary import METRICS


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


def _header(col: str, rep: SweepReport) -> str:
    parts = col.split("/")
    last = parts[-1]
    names = {"params": "params", "params_trainable": "trainable params", "macs": "GMACs",
             "size_mb": "size (MB)", "latency_ms": "CPU latency (ms)", "psnr": "PSNR", "ssim": "SSIM",
             "lpips": "LPIPS", "tof": "tOF", "tlp": "tLP100", "train_time_s": "train time", "job": "job", "source": "source", "status": "status",
             "accuracy": "accuracy (%)", "label": "published row",
             "r_s": "r_s (teacher/student MACs)", "r_c": "r_c (teacher fp32/student bytes)"}
    if col in rep.keys:
        return col
    if recycled(rep):  # Weight Recycle: fewer stored parameters, the same multiply-accumulates
        names.update(params="params (stored)", macs="GMACs (real, unchanged by recycling)")
    base = names.get(last, last)
    return " ".join([*parts[:-1], base]) if len(parts) > 1 else base


def recycled(rep: SweepReport) -> bool:
    """Does any finished job use recycled convolutions (``model.conv=recycle``)?"""
    return any((j.metrics.get("generator") or {}).get("conv") == "recycle" for j in rep.jobs
               if j.metrics and j.status == "finished")


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
    _ordered(sets, sorted({k.split("/")[0] for k in present if k.count("/") == 1 and k.split("/")[1] in METRICS
                           and not k.startswith(TEACHER)}))
    if len(rep.sets) > 1:  # headline: mean over the sets measured
        cols += list(METRICS)
    cols += [f"{s}/{m}" for s in sets for m in METRICS]
    exits = list(rep.exits)
    _ordered(exits, sorted({k.split("/")[1] for k in present if k.count("/") == 2 and not k.startswith(TEACHER)}))
    cols += [f"{e}/{k}" for e in exits for k in ("params", "macs")]
    cols += [f"{s}/{e}/{m}" for s in sets for e in exits for m in METRICS]
    # distillation: the teacher beside the student; GAN Slimming's ratios (teacher / deployed student)
    cols += ["teacher/params", "teacher/macs", "teacher/size_mb", *[f"teacher/{s}/{m}" for s in sets for m in METRICS],
             "r_s", "r_c"]
    cols.append("train_time_s")
    if rep.published is not None:  # the paper's row names (also of published rows this sweep did not run)
        cols.append("label")
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
    for note in rep.notes:
        lines += ["", f"Note: {note}"]
    lines += ["", "| " + " | ".join(_header(c, rep) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rep.rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            if c == "source" and v == PUBLISHED:
                v = "**published**"
            elif c not in (*rep.keys, "job", "source", "status", "exit", "label"):
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
