"""Collecting a sweep into one table: a row per job (measured), the published rows matched to them, and
the bicubic baseline."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_sr.errors import ConfigError
from lightning_sr.metrics_json import bicubic_values, int8_values, measured_values
from lightning_sr.overrides import sweep_name
from lightning_sr.report.compare import (
    Unit,
    add_deltas,
    add_reproduced,
    budget_warning,
    eval_budget,
    find_reference,
    group_rows,
    images_seen,
    init_budget,
    machines_check,
    merge_rows,
    reference_label,
    single_units,
)
from lightning_sr.report.jobs import Job, find_job_dirs, load_job, swept_keys
from lightning_sr.report.published import PublishedTable, load_published, tables_for_data
from lightning_sr.report.stats import RESAMPLES, SEED_KEY

log = logging.getLogger(__name__)

MEASURED, PUBLISHED, BICUBIC = "measured", "published", "bicubic"
INT8 = "int8"  # the int8 model a compression=qat|ptq job wrote (int8.pt2): its own row under the job's


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
    warnings: list[str] = field(default_factory=list)  # shown prominently: different budgets, machines
    reference: str | None = None          # the row the deltas are against
    units: list[Unit] = field(default_factory=list)  # measured rows with their jobs (seed groups)
    config_name: str | None = None        # the config's ``name`` (the title when nothing says what was swept)

    def measured(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["source"] == MEASURED]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for j in self.jobs:
            out[j.status] = out.get(j.status, 0) + 1
        return out


def _published_name(jobs: list[Job], override: str | None) -> str | None:
    """``--published``, else the jobs' ``published`` config key, else the table whose ``for_data`` lists the data
    preset the jobs trained on (``data=t91`` -> sweeps/published/lapsrn_x4.yaml)."""
    if override:
        return override
    for j in jobs:
        p = j.select("published")
        if p:
            return str(p)
    for j in jobs:
        data = j.choices.get("data")
        scale = j.select("scale")
        found = tables_for_data(data, None if scale is None else int(scale)) if data else []
        if found:
            return found[0]
    return None


def ordered(seen: list[str], new) -> None:
    for x in new:
        if x not in seen:
            seen.append(x)


def _deepest_remap(values: dict[str, Any], exit_name: str, job_row: dict[str, Any], sets: list[str]) -> dict:
    """A published row for the deepest exit of a multi-exit job is the job's main output."""
    if any(k.startswith(f"{s}/{exit_name}/") for s in sets for k in job_row):
        return values
    return {k.replace(f"/{exit_name}/", "/"): v for k, v in values.items()}


def collect(sweep_dir: str | Path, published: str | None = None, reference: str | None = None,
            resamples: int = RESAMPLES) -> SweepReport:
    """The sweep as rows. Jobs that differ only by ``seed`` (a swept key) become one row (mean, ``_std``, ``n``);
    ``reference`` (default: the jobs' ``report.reference``) names the row every other row is compared with
    (paired bootstrap over per_image.csv); matched published rows give the ``reproduced`` verdict."""
    from omegaconf import OmegaConf

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
    int8_rows: dict[int, dict[str, Any]] = {}  # id(a job's row) -> the row of its int8 model, placed right after it
    bicubic: dict[str, Any] = {}
    for j in jobs:
        ov = j.override_values()
        row: dict[str, Any] = {k: ov.get(k, _fmt_cfg(j.select(k))) for k in keys}
        row.update(job=j.name, source=MEASURED, status=j.status)
        if j.metrics and j.status == "finished":
            row.update(measured_values(j.metrics))
            seen = images_seen(j)
            if seen is not None:
                row["images_seen"] = seen
            before = init_budget(j) or eval_budget(j)  # an evaluation: the budget of the checkpoint it measured
            if before is not None:  # started from a trained checkpoint: its training counts in the budget
                row["steps_total"] = int(row.get("global_step") or 0) + before[0]
                row["images_total"] = int(seen or 0) + before[1]
            ordered(sets, (j.metrics.get("sets") or {}).keys())
            for ex in (j.metrics.get("exits") or {}).values():
                ordered(exits, ex.keys())
            for s, v in bicubic_values(j.metrics).items():
                bicubic.setdefault(s, v)
            name = name or j.metrics.get("name")
        if j.error:
            row["error"] = j.error.strip().splitlines()[0][:300]
        name = name or j.select("name")
        rows.append(row)
        if j.metrics and j.status == "finished" and int8_values(j.metrics):
            int8_rows[id(row)] = {**{k: row.get(k, "") for k in keys}, "job": j.name, "source": INT8,
                                  "status": j.status, **int8_values(j.metrics),
                                  "label": "int8 (int8.pt2, compiled CPU latency)"}

    seeded = SEED_KEY in keys
    units = group_rows(jobs, rows, keys) if seeded else single_units(jobs, rows, keys)
    if seeded and int8_rows:  # the int8 models of one configuration: one row too
        for u in units:
            q = [int8_rows[id(r)] for r in u.job_rows if id(r) in int8_rows]
            if q:
                int8_rows[id(u.row)] = {**merge_rows(q, keys), "source": INT8, "label": q[0].get("label", "")}
    notes: list[str] = []
    warnings: list[str] = []

    table = None
    pub_name = _published_name(jobs, published)
    if pub_name:
        try:
            table = load_published(pub_name)
        except ConfigError as e:
            if published:  # asked for on the command line: an error
                raise
            notes.append(f"the jobs name the published table {pub_name!r}, which could not be loaded: {e}")
            log.warning("%s", notes[-1])
    rows = [u.row for u in units]
    if table is not None:
        placed = set()
        out: list[dict[str, Any]] = []
        for u in units:
            out.append(u.row)
            j = (u.finished() or u.jobs)[0]
            for i, pr in enumerate(table.rows):
                if i in placed or pr.baseline or not pr.matches(j):
                    continue
                placed.add(i)
                vals = _deepest_remap(pr.values, pr.exit, u.row, sets) if pr.exit else pr.values
                out.append(_published_row(pr, keys, table, vals, job=u.row["job"]))
                if u.row.get("status") == "finished" and not pr.exit:
                    add_reproduced(u.row, vals, j, table.meta, sets)
        for i, pr in enumerate(table.rows):  # published rows this sweep did not (yet) run, other methods
            if i not in placed and not (pr.baseline == BICUBIC and bicubic):
                out.append(_published_row(pr, keys, table, pr.values, job=None))
        rows = out
    if int8_rows:
        rows = [r2 for r in rows for r2 in ((r, int8_rows[id(r)]) if id(r) in int8_rows else (r,))]
    if bicubic:
        bic = {**{k: "" for k in keys}, "job": "", "source": BICUBIC, "status": "", **bicubic,
               "label": "bicubic upscaling (same validation images)"}
        rows.append(bic)
        for pr in (table.rows if table is not None else []):
            if pr.baseline == BICUBIC:  # the paper's bicubic row: a check of the metric code itself
                rows.append(_published_row(pr, keys, table, pr.values, job=None))
                add_reproduced(bic, pr.values, None, table.meta, sets)

    ref_name = reference or _config_reference(jobs)
    if ref_name:
        ref = find_reference(units, str(ref_name))
        notes += add_deltas(units, ref, sets, resamples)
    refusal = machines_check(rows, units)
    if refusal:
        warnings.append(refusal)
    budget = budget_warning(units)
    if budget:
        warnings.append(budget)
    title = sweep_title(sweep_dir, keys, jobs) or name
    return SweepReport(sweep_dir, jobs, keys, rows, sets, exits, table, command, title, notes, warnings=warnings,
                       reference=ref_name and reference_label(find_reference(units, str(ref_name)), str(ref_name)),
                       units=units,
                       config_name=name)


def _config_reference(jobs: list[Job]) -> str | None:
    for j in jobs:
        r = j.select("report.reference")
        if r not in (None, ""):
            return str(r)
    return None


def sweep_title(sweep_dir: Path, keys: list[str], jobs: list[Job]) -> str | None:
    """What the sweep varies (``model.res_blocks=1,2 seed=0,1,2``) when its ``name`` is the config default (an
    interpolation of one job's values, e.g. ``srresnet16_x4_embedded``); None when the name was chosen (an
    experiment's, or ``name=...``) or nothing was swept."""
    from omegaconf import OmegaConf

    mr = sweep_dir / "multirun.yaml"
    raw = None
    if mr.is_file():
        try:
            raw = OmegaConf.to_container(OmegaConf.load(mr), resolve=False).get("name")
        except Exception:
            raw = None
    if not keys or (raw is not None and "${" not in str(raw)):
        return None
    parts = []
    for k in keys:
        vals: list[str] = []
        for j in jobs:
            v = j.override_values().get(k)
            v = _fmt_cfg(j.select(k)) if v is None else v
            if v not in vals:
                vals.append(v)
        parts.append(f"{k}={','.join(vals)}")
    return " ".join(parts)


def _fmt_cfg(v: Any) -> str:
    return "" if v is None else str(v)


def _published_row(pr, keys: list[str], table: PublishedTable, values: dict[str, Any], job: str | None) -> dict:
    row: dict[str, Any] = {k: _fmt_cfg(pr.match.get(k)) for k in keys}
    for k, v in pr.match.items():  # keys the sweep did not sweep still say which row this is
        row.setdefault(k, _fmt_cfg(v))
    other = not pr.match and not pr.exit  # another method of the paper's table (no config reproduces it)
    row.update(job=job or "", source=PUBLISHED,
               status="" if job else "published baseline" if pr.baseline else "other method" if other
               else "not run in this sweep",
               label=pr.label or "", exit=pr.exit or "", published_source=table.source)
    row.update(values)
    return row
