"""The metrics.json format: one run's metrics.json flattened into ``{column: value}``, what the W&B/CSV run summary
and the sweep report's columns both read (one definition, imported by both). The file is written by
``run.build_metrics_json``; :mod:`lightning_sr.report` turns the files of a sweep into its report."""

from __future__ import annotations

from typing import Any

from lightning_sr.cost import COST_KEYS
from lightning_sr.metrics import METRIC_MODES

METRICS = tuple(METRIC_MODES)


def mean_metrics(per_set: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Headline values: each metric's mean over the sets that have it (``{set: {metric: value}}``)."""
    out: dict[str, float] = {}
    for m in METRICS:
        vals = [v[m] for v in per_set.values() if m in v]
        if vals:
            out[m] = sum(vals) / len(vals)
    return out


def results_summary(res: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """What metrics.json holds for one evaluation (``evaluate_datasets``: ``{set: {exit: {metric: value}}}``, exit
    "" = the main output): headline means, ``sets`` (main output per set) and ``exits`` (the others, when any)."""
    main = {s: ex[""] for s, ex in res.items() if "" in ex}
    out: dict[str, Any] = {**mean_metrics(main), "sets": main}
    exits = {s: {e: v for e, v in ex.items() if e} for s, ex in res.items()}
    if any(exits.values()):
        out["exits"] = exits
    return out


def measured_values(metrics: dict[str, Any]) -> dict[str, Any]:
    """Flat ``{column: value}`` of one metrics.json: cost, ``<set>/<metric>``, ``<exit>/<cost>``,
    ``<set>/<exit>/<metric>``, headline means, training time."""
    out: dict[str, Any] = {}
    cost = metrics.get("cost") or {}
    for k in COST_KEYS:
        if k in cost:
            out[k] = cost[k]
    if "params" not in out and "params" in metrics:
        out["params"] = metrics["params"]
    for m in METRICS:
        if m in metrics:
            out[m] = metrics[m]
    for s, vals in (metrics.get("sets") or {}).items():
        for m in METRICS:
            if m in vals:
                out[f"{s}/{m}"] = vals[m]
    for e, c in (metrics.get("exit_cost") or {}).items():
        for k in COST_KEYS:
            if k in c:
                out[f"{e}/{k}"] = c[k]
    for s, exits in (metrics.get("exits") or {}).items():
        for e, vals in exits.items():
            for m in METRICS:
                if m in vals:
                    out[f"{s}/{e}/{m}"] = vals[m]
    teacher = metrics.get("teacher") or {}
    for k in ("params", "macs", "size_mb", *METRICS):
        if k in teacher:
            out[f"teacher/{k}"] = teacher[k]
    for s, vals in (teacher.get("sets") or {}).items():
        for m in METRICS:
            if isinstance(vals, dict) and m in vals:
                out[f"teacher/{s}/{m}"] = vals[m]
    for k in RATIO_KEYS:
        if k in metrics:
            out[k] = metrics[k]
    for k in ("train_time_s", "global_step", "images_seen"):
        if k in metrics:
            out[k] = metrics[k]
    return out


RATIO_KEYS = ("r_c", "r_s")


def compression_ratios(metrics: dict[str, Any]) -> dict[str, float]:
    """GAN Slimming's ratios of a distilled run (a teacher in metrics.json): ``r_s`` = teacher MACs / the model's
    MACs (same LR input), ``r_c`` = the teacher's fp32 weight bytes / the deployed model's weight bytes (the int8
    model's when the run made one, else its fp32 ones; both serialised state dicts: the int8 artefact on disk also
    holds its graph, ``int8.size_mb``). Empty without a teacher."""
    teacher, cost, q = metrics.get("teacher") or {}, metrics.get("cost") or {}, metrics.get("int8") or {}
    out: dict[str, float] = {}
    if teacher.get("macs") and cost.get("macs"):
        out["r_s"] = round(teacher["macs"] / (q.get("macs") or cost["macs"]), 3)
    size = q.get("weights_mb") or q.get("size_mb") or cost.get("size_mb")  # weights vs weights (state-dict bytes)
    if teacher.get("size_mb") and size:
        out["r_c"] = round(teacher["size_mb"] / size, 3)
    return out


INT8_KEYS = ("params", "macs", "macs_input", "size_mb", "size_ratio", "latency_ms", "fp32_latency_ms",
             "latency_ratio", "latency_threads")


def int8_values(metrics: dict[str, Any]) -> dict[str, Any]:
    """The int8 model of a compression=qat|ptq run (metrics.json "int8") under the same column names as the run's
    own values (``size_mb``, ``latency_ms``, ``<set>/psnr``...): the report's int8 row. Empty without one."""
    q = metrics.get("int8") or {}
    out = {k: q[k] for k in (*INT8_KEYS, *METRICS) if k in q}
    for s, vals in (q.get("sets") or {}).items():
        out.update({f"{s}/{m}": vals[m] for m in METRICS if m in vals})
    return out


def bicubic_values(metrics: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}/{m}": v[m] for s, v in (metrics.get("bicubic") or {}).items() for m in METRICS if m in v}
