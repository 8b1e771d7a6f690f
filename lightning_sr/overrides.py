"""Hydra overrides of a job and the names made from them (W&B run names, sweep names, swept keys), and the plain
forms of a config (:func:`to_plain`, :func:`flatten`) that runs and loggers write.

Small on purpose: the loggers import it while a run is going, without the sweep reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

# hydra is imported inside the two functions that need it: importing it costs ~1 s (measured with -X importtime,
# Intel Xeon), which the sweep report (lsr-report), a reader of this module, does not otherwise pay

# override keys that never describe the experiment itself (left out of run names and swept columns)
NOISE_PREFIXES = ("hydra", "logger", "paths", "callbacks.progress_bar")


def to_plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) or OmegaConf.is_list(node) \
        else node


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    else:
        out[prefix.rstrip(".")] = d
    return out


def user_overrides() -> list[str]:
    """The command line's overrides of this job (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig  # ~1 s import: see the top of the module

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def parse_overrides(items: list[str]) -> list[tuple[str, str | None, bool]]:
    """[(key, value as written or None, is a sweep)] with Hydra's own parser (``+``/``~`` prefixes dropped)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser  # ~1 s import: see the top

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
        try:
            swept = sweep_keys_of(OmegaConf.load(Path(sweep_dir) / "multirun.yaml"))
        except Exception:  # an unreadable multirun.yaml only costs a longer name
            swept = []
    chosen = [(k, v) for k, v in parsed if k in swept] or parsed
    name = ",".join(f"{k}={v}" for k, v in chosen)
    return name[:max_len] or None


def sweep_name(sweep_dir: str | Path) -> str | None:
    """The ``name`` of a multirun (its multirun.yaml, resolved): the same for every job of the sweep."""
    mr = Path(sweep_dir) / "multirun.yaml"
    if not mr.is_file():
        return None
    try:
        name = OmegaConf.select(OmegaConf.load(mr), "name", default=None, throw_on_resolution_failure=False)
    except Exception:
        return None
    return str(name) if name else None
