"""Reading sweeps back: job folders of a Hydra multirun, their overrides, configs and metrics,
which keys were swept, and the published tables in ``sweeps/published/*.yaml``.

Used by the sweep report (:mod:`lightning_sr.report`) and by the W&B logger (run names). Nothing
here needs W&B, a GPU or the training code.

A job folder is any ``<multirun dir>/<n>/`` holding ``.hydra/`` (Hydra writes ``config.yaml`` and
``overrides.yaml`` there before the job starts); ``metrics.json`` appears when it ends. A job whose
metrics.json says ``"status": "failed"`` failed; a job without metrics.json is unfinished (still
running, killed, or its node died).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_DIRS = (ROOT / "sweeps" / "published", Path("sweeps") / "published")
# override keys that never describe the experiment itself (left out of run names and swept columns)
NOISE_PREFIXES = ("hydra", "logger", "paths", "callbacks.progress_bar")
METRICS = ("psnr", "ssim", "lpips")
COST_KEYS = ("params", "params_trainable", "macs", "size_mb", "latency_ms")
EXIT_KEY = "exit"  # the one key of a published row's ``match`` that is not a config key


# ----- overrides ------------------------------------------------------------------------------------------------
def parse_overrides(items: list[str]) -> list[tuple[str, str | None, bool]]:
    """[(key, value as written or None, is a sweep)] with Hydra's own parser (``+``/``~`` prefixes dropped)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for o in OverridesParser.create().parse_overrides(list(items)):
        sweep = o.is_sweep_override()
        value = None if sweep or o.is_delete() else o.get_value_element_as_str()
        out.append((o.key_or_group, value, sweep))
    return out


def is_noise(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "/") for p in NOISE_PREFIXES)


def sweep_keys_of(multirun_cfg: Any) -> list[str]:
    """Keys a multirun sweeps over: sweep overrides of its command line and ``hydra.sweeper.params``."""
    from omegaconf import OmegaConf

    keys: list[str] = []
    task = OmegaConf.select(multirun_cfg, "hydra.overrides.task", default=None) or []
    for k, _, sweep in parse_overrides([str(t) for t in task]):
        if sweep and k not in keys:
            keys.append(k)
    params = OmegaConf.select(multirun_cfg, "hydra.sweeper.params", default=None) or {}
    for k in params:
        if str(k) not in keys:
            keys.append(str(k))
    return keys


def load_yaml(path: Path) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)


def job_run_name(overrides: list[str], sweep_dir: str | Path | None = None, max_len: int = 128) -> str | None:
    """A readable name for one job: its swept ``key=value`` pairs (all its overrides outside a sweep),
    without logging/output keys. ``None`` when nothing is left."""
    parsed = [(k, v) for k, v, _ in parse_overrides(overrides) if v is not None and not is_noise(k)]
    swept: list[str] = []
    if sweep_dir is not None and (Path(sweep_dir) / "multirun.yaml").is_file():
        from omegaconf import OmegaConf

        try:
            swept = sweep_keys_of(OmegaConf.load(Path(sweep_dir) / "multirun.yaml"))
        except Exception:  # an unreadable multirun.yaml only costs a longer name
            swept = []
    chosen = [(k, v) for k, v in parsed if k in swept] or parsed
    name = ",".join(f"{k}={v}" for k, v in chosen)
    return name[:max_len] or None


def sweep_name(sweep_dir: str | Path) -> str | None:
    """The ``name`` of a multirun (its multirun.yaml, resolved): the same for every job of the sweep."""
    from omegaconf import OmegaConf

    mr = Path(sweep_dir) / "multirun.yaml"
    if not mr.is_file():
        return None
    try:
        name = OmegaConf.select(OmegaConf.load(mr), "name", default=None, throw_on_resolution_failure=False)
    except Exception:
        return None
    return str(name) if name else None


# ----- jobs -----------------------------------------------------------------------------------------------------
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
            return OmegaConf.select(self.config, key, default=None, throw_on_resolution_failure=False)
        except Exception:
            return None


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


# ----- measured rows ----------------------------------------------------------------------------------------------
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
    for k in ("macs_input", "latency_threads"):
        if k in cost:
            out[k] = cost[k]
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
    for k in ("train_time_s", "global_step"):
        if k in metrics:
            out[k] = metrics[k]
    return out


def bicubic_values(metrics: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}/{m}": v[m] for s, v in (metrics.get("bicubic") or {}).items() for m in METRICS if m in v}


# ----- published tables ---------------------------------------------------------------------------------------
@dataclass
class PublishedRow:
    match: dict[str, Any]          # config keys -> values (without ``exit``)
    exit: str | None
    label: str | None
    values: dict[str, Any]         # columns in the measured naming scheme

    def matches(self, job: Job) -> bool:
        ov = job.override_values()
        for k, want in self.match.items():
            have = job.select(k)
            if have is None and k in ov:
                have = yaml.safe_load(ov[k])
            if have is None or not _same(have, want):
                return False
        return True


@dataclass
class PublishedTable:
    name: str
    path: Path
    meta: dict[str, Any]
    rows: list[PublishedRow]

    @property
    def source(self) -> str:
        return str(self.meta.get("source") or self.path.name)

    def sets(self) -> list[str]:
        return sorted({c.split("/")[0] for r in self.rows for c in r.values if c.count("/") >= 1
                       and c.split("/")[-1] in METRICS})


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def find_published(name: str) -> Path | None:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    for d in PUBLISHED_DIRS:
        for cand in (d / f"{name}.yaml", d / f"{name}.yml"):
            if cand.is_file():
                return cand
    return None


def _parse_match(key: Any) -> dict[str, Any]:
    """``{model.res_blocks: 16}`` (a mapping) or ``"model.res_blocks=16,exit=exit8"`` (a string)."""
    if isinstance(key, dict):
        return dict(key)
    out = {}
    for part in str(key).split(","):
        k, _, v = part.partition("=")
        out[k.strip()] = yaml.safe_load(v.strip())
    return out


def _row_values(entry: dict[str, Any], exit_name: str | None, default_sets: list[str]) -> dict[str, Any]:
    """A published row's numbers as measured-table columns.

    Flat ``psnr``/``ssim``/``lpips`` belong to the table's ``eval_set`` (or each of ``eval_sets``
    when there is one); ``sets: {Set5: {psnr: ..}}`` gives them per set. Cost numbers (``params``,
    ``macs``...) are the exit's own when the row names an exit.
    """
    pre = f"{exit_name}/" if exit_name else ""
    out: dict[str, Any] = {}
    for k in COST_KEYS:
        if entry.get(k) is not None:
            out[f"{pre}{k}"] = entry[k]
    for m in METRICS:
        if entry.get(m) is not None:
            if len(default_sets) == 1:
                out[f"{default_sets[0]}/{pre}{m}"] = entry[m]
            else:
                out[f"{pre}{m}"] = entry[m]
    for s, vals in (entry.get("sets") or {}).items():
        for m in METRICS:
            if (vals or {}).get(m) is not None:
                out[f"{s}/{pre}{m}"] = vals[m]
    return out


def load_published(name: str) -> PublishedTable:
    """Load ``sweeps/published/<name>.yaml`` (or a path); see sweeps/published/README.md for the format."""
    from lightning_sr.errors import ConfigError

    path = find_published(name)
    if path is None:
        raise ConfigError(f"published table {name!r} not found in {', '.join(str(d) for d in PUBLISHED_DIRS)}")
    doc = load_yaml(path) or {}
    sets = doc.get("eval_sets") or ([doc["eval_set"]] if doc.get("eval_set") else [])
    raw = doc.get("rows") or []
    entries: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if isinstance(raw, dict):  # {"model.res_blocks=16": {...}} form
        entries = [(_parse_match(k), dict(v or {})) for k, v in raw.items()]
    else:
        for e in raw:
            e = dict(e)
            key = e.pop("match", None) or e.pop("key", None) or e.pop("keys", None) or {}
            entries.append((_parse_match(key), e))
    rows = []
    for match, e in entries:
        exit_name = match.pop(EXIT_KEY, None) or e.get(EXIT_KEY)
        rows.append(PublishedRow(match, str(exit_name) if exit_name else None, e.get("label"),
                                 _row_values(e, str(exit_name) if exit_name else None, list(sets))))
    meta = {k: v for k, v in doc.items() if k != "rows"}
    return PublishedTable(path.stem, path, meta, rows)
