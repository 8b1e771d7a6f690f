"""Reading a sweep back: the job folders of a Hydra multirun, their overrides, configs and metrics, and
which keys were swept.

A job folder is any ``<multirun dir>/<n>/`` holding ``.hydra/`` (Hydra writes ``config.yaml`` and
``overrides.yaml`` there before the job starts); ``metrics.json`` appears when it ends. A job whose
metrics.json says ``"status": "failed"`` failed; a job without metrics.json is unfinished (still
running, killed, or its node died).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lightning_sr.overrides import is_noise, load_yaml, parse_overrides, sweep_keys_of


@dataclass
class Job:
    dir: Path
    overrides: list[str] = field(default_factory=list)
    config: Any = None                     # the job's .hydra/config.yaml (OmegaConf, unresolved)
    metrics: dict[str, Any] | None = None  # metrics.json
    status: str = "unfinished"             # finished | failed | unfinished | unreadable
    error: str | None = None

    @property
    def name(self) -> str:
        return self.dir.name

    def override_values(self) -> dict[str, str]:
        return {k: v for k, v, _ in parse_overrides(self.overrides) if v is not None}

    def select(self, key: str) -> Any:
        """A config value by dotted key (None when absent or not resolvable outside Hydra)."""
        from omegaconf import OmegaConf

        if self.config is None:
            return None
        try:
            v = OmegaConf.select(self.config, key, default=None, throw_on_resolution_failure=False)
        except Exception:
            return None
        if OmegaConf.is_config(v):  # a config group (model, data...): the option chosen, not its whole node
            return self.choices.get(key)
        return v

    @cached_property
    def choices(self) -> dict[str, str]:
        """Hydra's config-group choices of the job (``.hydra/hydra.yaml`` runtime.choices)."""
        from omegaconf import OmegaConf

        try:
            hy = OmegaConf.load(self.dir / ".hydra" / "hydra.yaml")
            return {str(k): str(v) for k, v in (OmegaConf.select(hy, "hydra.runtime.choices") or {}).items()}
        except Exception:
            return {}


def _job_sort_key(p: Path):
    return (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name)


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders of a multirun (``<dir>/<n>/.hydra``), or the folder itself when it is a single run."""
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    if not jobs and (sweep_dir / ".hydra").is_dir():
        return [sweep_dir]
    return sorted(jobs, key=_job_sort_key)


def load_job(job_dir: Path) -> Job:
    from omegaconf import OmegaConf

    job = Job(job_dir)
    hyd = job_dir / ".hydra"
    try:
        job.overrides = [str(o) for o in (load_yaml(hyd / "overrides.yaml") or [])]
    except FileNotFoundError:
        pass
    try:
        job.config = OmegaConf.load(hyd / "config.yaml")
    except Exception:  # missing or unreadable: the report still lists the job
        job.config = None
    mpath = job_dir / "metrics.json"
    if not mpath.is_file():
        job.status, job.error = "unfinished", "no metrics.json (still running, killed, or crashed)"
        return job
    try:
        job.metrics = json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        job.status, job.error = "unreadable", f"metrics.json unreadable: {e}"
        return job
    job.status = str(job.metrics.get("status", "finished"))
    if job.status != "finished":
        job.error = str(job.metrics.get("error", "")).strip() or None
    if not job.overrides:
        job.overrides = [str(o) for o in job.metrics.get("overrides", [])]
    return job


def swept_keys(sweep_dir: Path, jobs: list[Job]) -> list[str]:
    """Swept keys: the multirun's sweep overrides and sweeper params, then any override whose value
    differs between jobs (a sweep assembled by hand)."""
    from omegaconf import OmegaConf

    keys: list[str] = []
    mr = sweep_dir / "multirun.yaml"
    if mr.is_file():
        try:
            keys = sweep_keys_of(OmegaConf.load(mr))
        except Exception:
            keys = []
    values: dict[str, set] = {}
    order: list[str] = []
    for j in jobs:
        for k, v in j.override_values().items():
            if k not in values:
                values[k] = set()
                order.append(k)
            values[k].add(v)
    for k in order:
        present_everywhere = all(k in j.override_values() for j in jobs)
        if k not in keys and not is_noise(k) and (len(values[k]) > 1 or not present_everywhere):
            keys.append(k)
    return keys
