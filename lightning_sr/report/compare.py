"""Comparing the rows of a sweep report: seed groups (one row per configuration: mean, std and n of every
metric and cost), paired differences to a reference row with bootstrap intervals (:mod:`.stats`), the
"reproduced?" verdict against the matching published row, training budgets, and the machine of every latency.

Column names (report.csv; report.md/html show them formatted):

* ``n``: finished seeds of the row; ``<col>_std``: sample standard deviation beside every averaged ``<col>``;
* ``<set>/delta_<metric>``, ``..._lo``, ``..._hi``, ``..._sig``: row - reference, its 95 % interval, and ``*``
  when the interval excludes 0 (``reference`` on the reference row itself);
* ``<set>/<metric>_published``, ``<set>/<metric>_minus_published``, ``reproduced`` (yes | no | n/a),
  ``reproduced_detail``, ``protocol_differences``;
* ``global_step`` (steps), ``images_seen``, ``train_time_s`` (wall time), ``machine`` (where latency was measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_sr.errors import ConfigError
from lightning_sr.manifest import read_manifest
from lightning_sr.metrics_json import METRICS
from lightning_sr.report.jobs import Job, load_job
from lightning_sr.report.stats import SEED_KEY, delta, group_key, group_name, mean_std, read_per_image

STD = "_std"
TOLERANCE_DB = 0.1  # default "reproduced" tolerance on PSNR (a published table may set tolerance_db)
LATENCY_COLS = ("latency_ms", "latency_threads", "fp32_latency_ms", "latency_ratio")
DELTA_METRICS = ("psnr", "ssim", "lpips")


@dataclass
class Unit:
    """One row of measured results: a job, or the jobs of one configuration that differ only by seed."""
    key: tuple
    jobs: list[Job]
    row: dict[str, Any]
    job_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return group_name(self.key)

    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "finished" and j.metrics]


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v in (None, ""):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def group_rows(jobs: list[Job], rows: list[dict[str, Any]], keys: list[str]) -> list[Unit]:
    """Jobs that differ only by ``seed`` as one row each: numbers become their mean over the finished jobs (and
    ``<col>_std``, ``n``); other values are kept when all jobs agree. Order: first appearance."""
    units: dict[tuple, Unit] = {}
    for j, r in zip(jobs, rows, strict=True):
        k = group_key(r, keys)
        u = units.setdefault(k, Unit(k, [], {}))
        u.jobs.append(j)
        u.job_rows.append(r)
    for u in units.values():
        u.row = merge_rows(u.job_rows, keys)
    return list(units.values())


def merge_rows(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    done = [r for r in rows if r.get("status") == "finished"]
    out: dict[str, Any] = {k: rows[0].get(k, "") for k in keys if k != SEED_KEY}
    out[SEED_KEY] = ",".join(str(r.get(SEED_KEY, "")) for r in rows)
    out["job"] = ",".join(str(r.get("job", "")) for r in rows)
    out["source"] = rows[0].get("source")
    out["status"] = "finished" if len(done) == len(rows) else f"{len(done)}/{len(rows)} finished"
    out["n"] = len(done)
    errors = [str(r["error"]) for r in rows if r.get("error")]
    if errors:
        out["error"] = errors[0]
    cols: list[str] = []
    for r in done:
        cols += [c for c in r if c not in cols and c not in out]
    for c in cols:
        vals = [r.get(c) for r in done]
        nums = [_number(v) for v in vals]
        if all(x is not None for x in nums) and len(nums) == len(done):
            if len(set(nums)) == 1:
                out[c], out[c + STD] = vals[0], 0.0
            else:
                m, sd, _ = mean_std(nums)  # type: ignore[arg-type]
                out[c], out[c + STD] = m, sd
        elif len({str(v) for v in vals}) == 1:
            out[c] = vals[0]
    return out


def single_units(jobs: list[Job], rows: list[dict[str, Any]], keys: list[str]) -> list[Unit]:
    """No seed axis: every job is its own row."""
    return [Unit(group_key(r, keys), [j], r, [r]) for j, r in zip(jobs, rows, strict=True)]


# ----- the reference row and paired differences -------------------------------------------------------------------
def _parse_reference(ref: str) -> list[tuple[str | None, str]]:
    parts = [p for p in ref.replace("/", ",").replace(" ", ",").split(",") if p]
    out: list[tuple[str | None, str]] = []
    for p in parts:
        p = p.replace("\\:", "=").replace(":", "=")
        k, eq, v = p.partition("=")
        out.append((k.strip(), v.strip()) if eq else (None, p.strip()))
    return out


def _matches(unit: Unit, wanted: list[tuple[str | None, str]]) -> bool:
    have = dict(unit.key)
    for k, v in wanted:
        if k is None:
            if len(have) != 1 or str(next(iter(have.values()))) != v:
                return False
            continue
        cands = [hk for hk in have if hk == k or hk.endswith("." + k)]
        if len(cands) != 1 or str(have[cands[0]]) != v:
            return False
    return True


def find_reference(units: list[Unit], ref: str) -> Unit:
    """The row ``ref`` names (``model.res_blocks=1``, ``res_blocks:1``, or the value alone when one key is swept);
    a one-line :class:`ConfigError` listing the valid names otherwise."""
    hits = [u for u in units if u.name == ref] or [u for u in units if _matches(u, _parse_reference(ref))]
    if len(hits) != 1:
        names = ", ".join(u.name for u in units)
        why = "matches no row" if not hits else f"matches {len(hits)} rows"
        raise ConfigError(f"report reference {ref!r} {why}; give one of: {names} (--reference NAME, or "
                          f"report.reference=NAME with ':' for '=' on a Hydra command line)")
    return hits[0]


def reference_label(unit: Unit, ref: str) -> str:
    """How the report names the reference row: only the keys ``ref`` named (``name=gs_teacher``, not every key
    that differs between rows, e.g. the checkpoint path of an evaluation job), else the row's full name."""
    wanted = _parse_reference(ref)
    have = dict(unit.key)
    if unit.name == ref or not wanted or any(k is None for k, _ in wanted):
        return unit.name
    parts = []
    for k, _ in wanted:
        cands = [hk for hk in have if hk == k or hk.endswith("." + k)]
        if len(cands) != 1:
            return unit.name
        parts.append(f"{cands[0]}={have[cands[0]]}")
    return ",".join(parts)


def per_seed_images(unit: Unit) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for j in unit.finished():
        seed = j.select(SEED_KEY)
        seed = int(seed) if seed is not None else len(out)
        out[seed] = read_per_image(j.dir)
    return {s: v for s, v in out.items() if v}


def add_deltas(units: list[Unit], ref: Unit, sets: list[str], resamples: int) -> list[str]:
    """``<set>/delta_<metric>`` (+ ``_lo``, ``_hi``, ``_sig``) on every measured row against ``ref``; notes."""
    notes: list[str] = []
    ref_imgs = per_seed_images(ref)
    if not ref_imgs:
        return [f"the reference row {ref.name} has no per_image.csv: no paired differences"]
    ref.row["reference"] = "reference"
    for u in units:
        if u is ref:
            for s in sets:
                for m in DELTA_METRICS:
                    if f"{s}/{m}" in u.row:
                        u.row[f"{s}/delta_{m}"] = "reference"
            continue
        imgs = per_seed_images(u)
        if not imgs:
            continue
        for s in sets:
            for m in DELTA_METRICS:
                b = delta(imgs, ref_imgs, s, m, resamples=resamples)
                if b is None:
                    continue
                u.row.update({f"{s}/delta_{m}": b.mean, f"{s}/delta_{m}_lo": b.lo, f"{s}/delta_{m}_hi": b.hi,
                              f"{s}/delta_{m}_sig": "*" if b.excludes_zero else "",
                              f"{s}/delta_{m}_pairs": f"{b.n_images} images x {b.n_seeds} seeds"
                              + ("" if b.paired_by_seed else " (seed means)")})
    return notes


# ----- budgets, machines ----------------------------------------------------------------------------------------
def images_seen(job: Job) -> int | None:
    m = job.metrics or {}
    if m.get("images_seen") is not None:
        return int(m["images_seen"])
    bs = job.select("data.batch_size")
    if m.get("batches") is not None and bs is not None:
        return int(m["batches"]) * int(bs)  # older runs: one process
    return None


def run_budget(run_dir: Path, depth: int = 8, at_step: int | None = None) -> tuple[int, int] | None:
    """(steps, images) of a finished training run and of the checkpoint chain it started from; None when the run
    is unfinished or not readable. ``at_step``: an earlier checkpoint of the run (a ``best-*.ckpt``), charged the
    steps it had reached and the images in proportion."""
    run = load_job(run_dir)
    if not run.metrics or run.status != "finished":
        return None
    steps, seen = int(run.metrics.get("global_step") or 0), images_seen(run) or 0
    if at_step is not None and 0 <= at_step < steps:
        steps, seen = at_step, round(seen * at_step / steps)
    more = init_budget(run, depth - 1)
    return (steps + more[0], seen + more[1]) if more else (steps, seen)


def _checkpoint_meta(path: Path) -> dict | None:
    """A .ckpt file's top-level entries (memory-mapped, weights only); None for other files, last.ckpt (the run's
    final model by definition) and unreadable ones."""
    if path.suffix != ".ckpt" or path.name == "last.ckpt":
        return None
    import torch  # only here: the rest of the report reads text files

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not loadable here: charged its run's final budget
        return None
    return ckpt if isinstance(ckpt, dict) else None


def checkpoint_budget(path: str | Path, depth: int = 8) -> tuple[int, int] | None:
    """(steps, images) behind a checkpoint file: what its run (``<run>/checkpoints/<file>``) had trained when the
    file was written, plus the chain the run started from. last.ckpt and the int8 programs written at a run's end:
    the run's final budget; an earlier checkpoint (best-*.ckpt): the ``global_step`` stored in it (images in
    proportion); an exit or model exported by ``lightning_sr.export`` (wherever it was written): the budget of the
    checkpoint it was exported from (``lsr_export.source``)."""
    p = Path(str(path)).expanduser()
    meta = _checkpoint_meta(p) or {}
    export = meta.get("lsr_export")
    source = export.get("source") if isinstance(export, dict) else None
    if source and depth > 0 and Path(str(source)).expanduser().is_file():
        return checkpoint_budget(source, depth - 1)
    step = meta.get("global_step")
    return run_budget(p.parent.parent, depth, step if isinstance(step, int) else None)


def init_budget(job: Job, depth: int = 8) -> tuple[int, int] | None:
    """(steps, images) of the checkpoint chain a job started from (``model.init_from``: that checkpoint's run
    folder's metrics.json, and its own start, recursively): the training a compressed or fine-tuned model already
    had. None when the job started from scratch or the chain's folders are not readable."""
    path = job.select("model.init_from")
    if not path or depth == 0:
        return None
    return checkpoint_budget(str(path), depth)


def eval_budget(job: Job) -> tuple[int, int] | None:
    """(steps, images) behind the checkpoint an evaluation job measured (evaluate.py: its metrics.json has
    ``ckpt_path`` and no ``global_step``): that checkpoint's run and the chain it started from, so an evaluated
    int8 program or teacher shows the training budget it stands for. None for training jobs or unreadable runs."""
    m = job.metrics or {}
    if not m.get("ckpt_path") or m.get("global_step") is not None:
        return None
    return checkpoint_budget(str(m["ckpt_path"]))


def budget_warning(units: list[Unit]) -> str | None:
    """One line when the measured jobs compared here (across rows, or the seeds of one row) trained for different
    steps or images."""
    budgets: dict[str, tuple[list[str], list[str]]] = {}
    for u in units:
        steps: list[str] = []
        seen: list[str] = []
        for r in u.job_rows:
            if r.get("status") == "finished":  # the total budget where a job started from a trained checkpoint
                for vals, v in ((steps, r.get("steps_total", r.get("global_step"))),
                                (seen, r.get("images_total", r.get("images_seen")))):
                    if _int(v) not in vals:
                        vals.append(_int(v))
        if steps:
            budgets[u.name] = (steps, seen)
    if len({(tuple(a), tuple(b)) for a, b in budgets.values()}) <= 1 and all(
            len(a) == 1 and len(b) == 1 for a, b in budgets.values()):
        return None
    shown = "; ".join(f"{n}: {' or '.join(a)} steps, {' or '.join(b)} images" for n, (a, b) in budgets.items())
    return (f"the rows compared here had different training budgets ({shown}; a job that started from a checkpoint "
            f"counts that checkpoint's training too): differences mix the method with the budget")


def _int(v: Any) -> str:
    x = _number(v)
    return "?" if x is None else f"{x:,.0f}"


def job_machine(job: Job) -> str | None:
    man = read_manifest(job.dir)
    return str(man["machine"]) if man and man.get("machine") else None


def machines_check(rows: list[dict[str, Any]], units: list[Unit]) -> str | None:
    """Write ``machine`` beside every measured latency; when the jobs ran on several machines, drop the latency
    figures and return the one-line refusal."""
    per_unit = []
    for u in units:
        ms = {job_machine(j) for j in u.finished()} - {None}
        per_unit.append((u, ms))
    known = set().union(*(ms for _, ms in per_unit)) if per_unit else set()
    if len(known) > 1:
        for r in rows:
            if r.get("source") in ("measured", "int8"):
                for c in list(r):
                    if c.split("/")[-1].removesuffix(STD) in LATENCY_COLS:
                        r.pop(c)
        for u, ms in per_unit:
            u.row["machine"] = "; ".join(sorted(ms)) or "unknown"
        return (f"latencies not compared: the jobs ran on {len(known)} machines ({'; '.join(sorted(known))}); "
                f"measure them on one machine (python -m lightning_sr.deploy / evaluate.py there)")
    for u, ms in per_unit:
        if u.row.get("latency_ms") not in (None, ""):
            u.row["machine"] = next(iter(ms)) if ms else "unknown (no manifest.json)"
    return None


# ----- reproduced? ------------------------------------------------------------------------------------------------
def _protocol_differences(job: Job, meta: dict[str, Any]) -> str:
    """The protocol differences that can explain a gap to the published numbers: training data, iterations,
    degradation (the table's ``protocol`` block, or its ``train_set``)."""
    proto = dict(meta.get("protocol") or {})
    diffs = []
    data = job.choices.get("data") or job.select("data.name")
    want_data = proto.get("data", meta.get("train_set"))
    if want_data and str(want_data).lower() != str(data).lower():
        diffs.append(f"training data {data} (paper: {want_data})")
    steps = (job.metrics or {}).get("global_step")
    if proto.get("iterations") and steps is not None and int(steps) != int(proto["iterations"]):
        diffs.append(f"{int(steps):,} iterations (paper: {int(proto['iterations']):,})")
    deg = job.select("data.degradation")
    if proto.get("degradation") and deg and str(deg) != str(proto["degradation"]):
        diffs.append(f"degradation {deg} (paper: {proto['degradation']})")
    return "; ".join(diffs) or "none known"


def add_reproduced(row: dict[str, Any], published: dict[str, Any], job: Job | None, meta: dict[str, Any],
                   sets: list[str]) -> None:
    """``reproduced`` of a measured row against its published row: measured - published PSNR on every set both
    have, within ``tolerance_db`` (the table's, default :data:`TOLERANCE_DB`)."""
    tol = float(meta.get("tolerance_db", TOLERANCE_DB))
    parts, ok = [], []
    pub_sets = sorted({c.split("/")[0] for c in published if c.count("/") == 1 and c.split("/")[1] in METRICS})
    for s in sets:
        for m in METRICS:
            p, v = _number(published.get(f"{s}/{m}")), _number(row.get(f"{s}/{m}"))
            if p is None or v is None:
                continue
            row[f"{s}/{m}_published"] = p
            row[f"{s}/{m}_minus_published"] = v - p
            if m == "psnr":
                ok.append(abs(v - p) <= tol)
                parts.append(f"{s}: {v:.2f} - {p:.2f} = {v - p:+.2f} dB")
    if ok:
        row["reproduced"] = "yes" if all(ok) else "no"
        row["reproduced_detail"] = "; ".join(parts) + f" (tolerance {tol:g} dB)"
    else:
        row["reproduced"] = "n/a"
        row["reproduced_detail"] = (f"published on {', '.join(pub_sets) or 'no set'}, measured on "
                                    f"{', '.join(sets) or 'no set'}")
    row["protocol_differences"] = _protocol_differences(job, meta) if job is not None else ""


__all__ = ["STD", "TOLERANCE_DB", "Unit", "add_deltas", "add_reproduced", "budget_warning", "find_reference",
           "group_rows", "images_seen", "machines_check", "merge_rows", "reference_label", "single_units"]
