"""Published tables (``sweeps/published/*.yaml``): the paper's numbers, as rows beside the measured ones.
The format is in sweeps/published/README.md."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lightning_sr.errors import ConfigError
from lightning_sr.metrics_json import COST_KEYS, METRICS
from lightning_sr.overrides import load_yaml
from lightning_sr.report.jobs import Job

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED_DIRS = (ROOT / "sweeps" / "published", Path("sweeps") / "published")
EXIT_KEY = "exit"  # the one key of a published row's ``match`` that is not a config key


@dataclass
class PublishedRow:
    match: dict[str, Any]          # config keys -> values (without ``exit``)
    exit: str | None
    label: str | None
    values: dict[str, Any]         # columns in the measured naming scheme
    baseline: str | None = None    # ``bicubic``: the paper's row of the baseline the report measures itself

    def matches(self, job: Job) -> bool:
        """The job reproduces this row: its values of the match keys; an architecture key (``model.res_blocks``)
        is read from the generator the job trained (metrics.json), so a pruned job matches by what it became.
        A row without ``match`` (another method of the paper's table) matches no job."""
        if not self.match:
            return False
        ov = job.override_values()
        trained = (job.metrics or {}).get("generator") or {}
        for k, want in self.match.items():
            have = trained.get(k[len("model."):]) if k.startswith("model.") else None
            have = job.select(k) if have is None else have
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


def _label(e: dict[str, Any]) -> str | None:
    """The row's name, with its training data when the row gives it (``SRCNN (trained on ImageNet)``)."""
    label = e.get("label")
    if label and e.get("train_set"):
        return f"{label} (trained on {e['train_set']})"
    return label


def tables_for_data(data: str, scale: int | None = None) -> list[str]:
    """Published tables whose ``for_data`` lists the data preset ``data`` (e.g. ``t91``) and whose ``scale`` (when
    the table gives one) is the run's: the table a run trained on that preset is shown beside when it names none."""
    out = []
    for d in PUBLISHED_DIRS:
        for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            try:
                doc = load_yaml(p) or {}
            except Exception:
                continue
            if scale is not None and doc.get("scale") is not None and int(doc["scale"]) != int(scale):
                continue
            if data in [str(x) for x in (doc.get("for_data") or [])] and p.stem not in out:
                out.append(p.stem)
    return out


def load_published(name: str) -> PublishedTable:
    """Load ``sweeps/published/<name>.yaml`` (or a path); see sweeps/published/README.md for the format."""
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
        rows.append(PublishedRow(match, str(exit_name) if exit_name else None, _label(e),
                                 _row_values(e, str(exit_name) if exit_name else None, list(sets)),
                                 str(e["baseline"]) if e.get("baseline") else None))
    meta = {k: v for k, v in doc.items() if k != "rows"}
    return PublishedTable(path.stem, path, meta, rows)
