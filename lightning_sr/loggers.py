"""Loggers from the ``logger`` config group. W&B never stops training: when it cannot start
online (no network, bad key) it falls back to offline mode, then to CSV, with one warning."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def _wandb(spec: dict[str, Any], run_dir: Path):
    from lightning.pytorch.loggers import WandbLogger

    spec = dict(spec)
    spec.pop("_target_", None)
    spec.setdefault("save_dir", str(run_dir))
    mode = spec.pop("mode", None) or os.environ.get("WANDB_MODE")
    if mode is None:  # online only when the user has W&B set up; offline otherwise
        mode = "online" if os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").exists() else "offline"
    for attempt in ([mode, "offline"] if mode != "offline" else ["offline"]):
        try:
            lg = WandbLogger(mode=attempt, **spec)
            _ = lg.experiment  # start the run now, so failures surface here
            return lg
        except Exception as e:
            log.warning("W&B (%s) failed to start (%s: %s); falling back", attempt, type(e).__name__, e)
    return None


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    from lightning_sr.config import to_plain

    out = []
    for name, spec in (to_plain(cfg.get("logger")) or {}).items():
        if not spec:
            continue
        if "Wandb" in str(spec.get("_target_", "")):
            lg = _wandb(spec, run_dir)
            if lg is None:
                log.warning("W&B unavailable: logging to CSV in %s instead", run_dir / "csv")
                lg = CSVLogger(str(run_dir), name="csv")
        else:
            lg = hydra.utils.instantiate(spec)
        out.append(lg)
        log.debug("logger %s: %s", name, type(lg).__name__)
    return out
