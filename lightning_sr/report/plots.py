"""PSNR-vs-cost plots of a sweep with the Pareto front (``psnr_vs_params.png``, ``psnr_vs_macs.png``,
``psnr_vs_size.png``: bytes of the deployed model, the int8 artefact's for a quantized job, whose int8 model is
its own point); a classification sweep (no PSNR) plots its accuracy instead (``accuracy_vs_params.png``...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_sr.report.collect import BICUBIC, INT8, MEASURED, PUBLISHED, SweepReport

PLOTS = {"params": "psnr_vs_params.png", "macs": "psnr_vs_macs.png", "size_mb": "psnr_vs_size.png"}
AXIS = {"params": "parameters", "macs": "MACs", "size_mb": "size on disk (MB)"}


def _mean(vals: list[Any]) -> float | None:
    xs = []
    for v in vals:
        try:
            xs.append(float(v))
        except (TypeError, ValueError):
            return None
    return sum(xs) / len(xs) if xs else None


def _short(rep: SweepReport, row: dict[str, Any], width: int = 40) -> str:
    """A point's label: the values that differ between jobs (paths by their file name), at most ``width`` chars."""
    varying = [k for k in rep.keys if len({str(r.get(k)) for r in rep.rows if r.get("source") == MEASURED}) > 1]
    parts = []
    for k in varying or rep.keys:
        v = row.get(k)
        if v not in (None, ""):
            v = str(v)
            parts.append(f"{k.split('.')[-1]}={Path(v).name if '/' in v else v}")
    text = ",".join(parts) or f"job {row.get('job')}"
    return text if len(text) <= width else text[:width - 1] + "…"


QUALITY = ("psnr", "accuracy")  # the y axis: the first of these that the sweep measured


def quality_metric(rep: SweepReport) -> str:
    for m in QUALITY:
        if any(f"{s}/{m}" in r for r in rep.rows for s in rep.sets):
            return m
    return QUALITY[0]


def plot_points(rep: SweepReport, metric: str = "psnr") -> list[dict[str, Any]]:
    """Points for the plots: {label, params, macs, <metric>, kind} for every finished job and exit, and the
    published rows that report the metric (PSNR by default) on every set measured here."""
    pts: list[dict[str, Any]] = []
    sets = rep.sets
    if not sets:
        return pts
    for r in rep.rows:
        if r["source"] == BICUBIC:
            continue
        kind = r["source"]
        if kind in (MEASURED, INT8) and r.get("status") != "finished":
            continue
        outputs = [("", "")] if not r.get("exit") else [(r["exit"] + "/", r["exit"])]
        if kind == MEASURED:
            outputs += [(f"{e}/", e) for e in rep.exits]
        for pre, ex in outputs:
            y = _mean([r.get(f"{s}/{pre}{metric}") for s in sets])
            if y is None and pre and kind == PUBLISHED:  # the deepest exit, shown as the main output
                y = _mean([r.get(f"{s}/{metric}") for s in sets])
            cost_pre = pre if pre and f"{pre}params" in r else ""
            if y is None:
                continue
            label = _short(rep, r) + (f":{ex}" if ex else "")
            if kind == INT8:
                label += ":int8"
            pts.append({"label": label, "params": r.get(f"{cost_pre}params"), "macs": r.get(f"{cost_pre}macs"),
                        "size_mb": r.get(f"{cost_pre}size_mb"), metric: y, "kind": kind})
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

    metric = quality_metric(rep)
    pts = plot_points(rep, metric)
    ylabel = {"psnr": "PSNR (dB)", "accuracy": "top-1 accuracy (%)"}[metric]
    sets_txt = rep.sets[0] if len(rep.sets) == 1 else "mean over " + ", ".join(rep.sets)
    written: dict[str, Path] = {}
    for key, fname in PLOTS.items():
        meas = [p for p in pts if p["kind"] in (MEASURED, INT8) and p.get(key) not in (None, "")]
        pub = [p for p in pts if p["kind"] == PUBLISHED and p.get(key) not in (None, "")]
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        scale = 1.0
        if meas:
            xy = [(float(p[key]) / scale, float(p[metric])) for p in meas]
            front = pareto_front(xy)
            for kind, style in ((MEASURED, {"color": "tab:blue", "label": "measured"}),
                                (INT8, {"color": "tab:orange", "marker": "^", "label": "measured, int8 model"})):
                sel = [xy[i] for i, p in enumerate(meas) if p["kind"] == kind]
                if sel:
                    ax.scatter([x for x, _ in sel], [y for _, y in sel], s=28, zorder=3, **style)
            fx, fy = [xy[i][0] for i in front], [xy[i][1] for i in front]
            ax.plot(fx, fy, "-", color="tab:red", lw=1.2, zorder=2)
            ax.scatter(fx, fy, s=90, facecolors="none", edgecolors="tab:red", zorder=4, label="Pareto front")
            for (x, y), p in zip(xy, meas, strict=True):
                ax.annotate(p["label"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if pub:
            xy = [(float(p[key]) / scale, float(p[metric])) for p in pub]
            src = rep.published.source if rep.published else "paper"
            ax.scatter([x for x, _ in xy], [y for _, y in xy], marker="s", s=36, facecolors="none",
                       edgecolors="tab:green", zorder=3, label=f"published ({src})")
            for (x, y), p in zip(xy, pub, strict=True):
                ax.annotate(p["label"], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color="tab:green")
        if not meas and not pub:
            ax.text(0.5, 0.5, f"no finished job with {metric} and cost yet", ha="center", va="center",
                    transform=ax.transAxes)
        xs = [float(p[key]) for p in meas + pub]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        if key != "size_mb":
            ax.xaxis.set_major_formatter(EngFormatter())
        ax.ticklabel_format(axis="y", useOffset=False)
        unit = AXIS[key]
        if key == "macs" and meas:
            mi = next((j.metrics.get("cost", {}).get("macs_input") for j in rep.jobs if j.metrics and
                       j.status == "finished"), None)
            if mi:
                unit += f" ({mi} LR input)"
        ax.set_xlabel(unit)
        ax.set_ylabel(f"{ylabel}, {sets_txt}")
        ax.set_title(f"{rep.name or rep.sweep_dir.name}: {ylabel.split(' (')[0]} vs {AXIS[key].split(' (')[0]}",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(x=0.12, y=0.12)
        if meas or pub:
            ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        path = out_dir / (fname if metric == "psnr" else fname.replace("psnr", metric))
        fig.savefig(path)
        plt.close(fig)
        written[key] = path
    return written
