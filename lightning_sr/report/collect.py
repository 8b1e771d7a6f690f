"""Collecting a sweep into one table: a row per job (measured), the published rows matched to them, and
the bicubic baseline."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_sr.overrides import sweep_name
from lightning_sr.report.jobs import Job, find_job_dirs, load_job, swept_keys
from lightning_sr.report.published import PublishedTable, load_published
from lightning_sr.summary import bicubic_values, int8_values, measured_values

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

    def measured(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["source"] == MEASURED]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for j in self.jobs:
            out[j.status] = out.get(j.status, 0) + 1
        return out


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
    int8_rows: dict[int, dict[str, Any]] = {}  # id(a job's row) -> the row of its int8 model, placed right after it
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
        if j.metrics and j.status == "finished" and int8_values(j.metrics):
            int8_rows[id(row)] = {**{k: row.get(k, "") for k in keys}, "job": j.name, "source": INT8,
                                  "status": j.status, **int8_values(j.metrics),
                                  "label": "int8 (int8.pt2, compiled CPU latency)"}

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
    if int8_rows:
        rows = [r2 for r in rows for r2 in ((r, int8_rows[id(r)]) if id(r) in int8_rows else (r,))]
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
