"""Loggers from the ``logger`` config group. W&B never stops training: when it cannot start
online (no network, bad key) it falls back to offline mode, then to CSV, with one warning.

Every job is its own W&B run: named by its (swept) overrides, grouped by sweep (``<name>-<sweep folder>``
in a multirun, ``<name>`` otherwise), tagged with model/compression/profile/experiment; best validation
PSNR/SSIM (max) and LPIPS (min) are the run summary of ``val/...`` metrics, and the end of a job writes
model cost and final metrics to the summary (:func:`summary_of`) and finishes the run (:func:`finish_loggers`),
so the next job of a sweep in the same process starts a new run. See docs/wandb.md.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from lightning_sr.cost import COST_KEYS
from lightning_sr.fs import atomic_write
from lightning_sr.metrics import METRIC_MODES
from lightning_sr.metrics_json import bicubic_values, measured_values
from lightning_sr.overrides import job_run_name, sweep_name, to_plain

log = logging.getLogger(__name__)



def summary_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """The flat run summary of a job's metrics.json: ``cost/*``, ``final/*`` (per set, per exit),
    ``bicubic/*``, status, training time and steps. Same flattening as the sweep report's columns
    (:func:`lightning_sr.metrics_json.measured_values`), under W&B-friendly prefixes."""
    out: dict[str, Any] = {"status": metrics.get("status", "finished")}
    for k, v in measured_values(metrics).items():
        last = k.rsplit("/", 1)[-1]
        prefix = "cost/" if last in COST_KEYS else "final/" if last in METRIC_MODES else ""
        out[prefix + k] = v
    out.update({f"bicubic/{k}": v for k, v in bicubic_values(metrics).items()})
    return out


class SRWandbLogger(WandbLogger):
    """WandbLogger whose summary keeps the best ``val/.../psnr|ssim`` (max) and ``lpips`` (min), with
    :meth:`log_summary` (cost and final metrics) and :meth:`finish`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._defined: set[str] = set()

    def _define_summaries(self, keys) -> None:
        exp = self.experiment
        for k in keys:
            if k in self._defined:
                continue
            self._defined.add(k)
            parts = k.split("/")
            if parts[0] in ("val", "test") and parts[-1] in METRIC_MODES:
                try:
                    exp.define_metric(k, summary=METRIC_MODES[parts[-1]], step_metric="trainer/global_step")
                except Exception as e:  # never stop training for a summary setting
                    log.debug("define_metric(%s) failed: %s", k, e)

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        self._define_summaries(metrics.keys())
        super().log_metrics(metrics, step)

    @rank_zero_only
    def log_summary(self, metrics: dict[str, Any]) -> None:
        self.experiment.summary.update(summary_of(metrics))

    @rank_zero_only
    def finish(self, exit_code: int = 0) -> None:
        if self._experiment is not None:
            self._experiment.finish(exit_code=exit_code)
            self._experiment = None
            flush_wandb()


def flush_wandb() -> None:
    """Wait until every finished W&B run of this process is on disk. ``run.finish()`` returns once the service has
    the exit record, but the service closes (and only then flushes) the run's transaction log later, on its own: a
    job of a multirun (one process) would return with ``run-<id>.wandb`` still empty. Tearing the service down
    waits for it; the next job's run starts a new one. Skipped while a run is still open."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is not None:
        return
    try:
        wandb.teardown()
    except Exception as e:  # the run is finished; only the wait failed
        log.warning("W&B: could not wait for the run files to be written: %s", e)


# ----- run identity (name, group, tags) -------------------------------------------------------------------------
def _hydra_info() -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return {"overrides": list(hc.overrides.task), "multirun": multirun,
            "sweep_dir": str(hc.sweep.dir) if multirun else None,
            "job_num": hc.job.get("num") if multirun else None,
            "choices": dict(hc.runtime.choices)}


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """Default W&B name, group, tags and job info of this job (see module docstring)."""
    info = _hydra_info()
    base = str(cfg.get("name") or "lightning-sr")
    name = job_run_name(info.get("overrides") or [], info.get("sweep_dir")) or base
    group = base
    if info.get("multirun"):  # one group per sweep, named like its folder: <name>/multiruns/<time>
        sweep_dir = Path(info["sweep_dir"])
        group = f"{sweep_name(sweep_dir) or base}-{sweep_dir.name}"
    model = cfg.get("model") or {}
    tags = [str(model.get("name", "")), str(model.get("arch", ""))]
    comp = [str(k) for k, v in (cfg.get("compression") or {}).items() if v]
    tags += [f"compression:{c}" for c in comp] or ["compression:none"]
    choices = info.get("choices") or {}
    if choices.get("profile") not in (None, "full"):
        tags.append(f"profile:{choices['profile']}")
    if choices.get("experiment"):
        tags.append(f"experiment:{choices['experiment']}")
    job = {"overrides": info.get("overrides") or [], "sweep_dir": info.get("sweep_dir"), "num": info.get("job_num")}
    return {"name": name, "group": group, "tags": [t[:64] for t in tags if t], "job": job}


# ----- W&B start with fallback ------------------------------------------------------------------------------------
def _finish_leftover_run() -> None:
    """A run still open in this process (a previous job that died) would be reused by WandbLogger: close it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        log.warning("closing W&B run %s left open by a previous job in this process", wandb.run.id)
        try:
            wandb.run.finish(exit_code=1)
        except Exception:
            pass


RUN_ID_FILE = "wandb_run_id.txt"


def _wandb(spec: dict[str, Any], run_dir: Path, cfg: DictConfig | None = None, resuming: bool = False):
    """(logger or None, one warning message or None). A resumed run continues the W&B run whose id the run
    folder keeps (``wandb_run_id.txt``), online or offline, so its curves do not break in two."""
    import wandb

    spec = dict(spec)
    spec.pop("_target_", None)
    spec.setdefault("save_dir", str(run_dir))
    id_file = run_dir / RUN_ID_FILE
    if resuming and not spec.get("id") and id_file.is_file():
        spec["id"] = id_file.read_text().strip()
        spec["resume"] = "allow"
        log.info("W&B: continuing run %s (from %s)", spec["id"], id_file)

    timeout = spec.pop("init_timeout", None)
    if timeout:
        spec["settings"] = wandb.Settings(init_timeout=float(timeout))
    if cfg is not None:
        ident = run_identity(cfg)
        spec["name"] = spec.get("name") or ident["name"]
        spec["group"] = spec.get("group") or ident["group"]
        spec["tags"] = list(dict.fromkeys([*(spec.get("tags") or []), *ident["tags"]]))
        spec.setdefault("config", {"job": ident["job"]})
    mode = spec.pop("mode", None) or os.environ.get("WANDB_MODE")
    if mode is None:  # online only when the user has W&B set up; offline otherwise
        mode = "online" if os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").exists() else "offline"
    attempts = [mode, "offline"] if mode not in ("offline", "dryrun", "disabled") else [mode]
    errors = []
    for attempt in attempts:
        _finish_leftover_run()
        try:
            lg = SRWandbLogger(mode=attempt, **spec)
            _ = lg.experiment  # start the run now, so failures surface here
        except Exception as e:
            errors.append(f"{attempt}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            try:  # the failed attempt may still hold the run id (a resumed run's): free it for the next one
                wandb.teardown()
            except Exception:
                pass
            continue
        _keep_run_id(id_file, lg)
        if errors:
            return lg, (f"W&B could not start ({'; '.join(errors)}); logging offline to {spec['save_dir']}/wandb "
                        f"(upload later: wandb sync {spec['save_dir']}/wandb/offline-run-*)")
        return lg, None
    return None, f"W&B could not start ({'; '.join(errors)}); logging to CSV in {run_dir / 'csv'} instead"


@rank_zero_only
def _keep_run_id(path: Path, lg: Any) -> None:
    try:
        rid = getattr(lg.experiment, "id", None)
        if isinstance(rid, str) and rid.strip():  # never replace a kept id by an empty one
            atomic_write(path, f"{rid.strip()}\n")
    except Exception as e:  # losing the id only means a resumed run starts a new W&B run
        log.warning("could not keep the W&B run id in %s: %s", path, e)


def build_loggers(cfg: DictConfig, run_dir: Path, resuming: bool = False) -> list[Any]:
    out = []
    wandb_failed = None
    for name, spec in (to_plain(cfg.get("logger")) or {}).items():
        if not spec:
            continue
        if "Wandb" in str(spec.get("_target_", "")):
            lg, warning = _wandb(spec, run_dir, cfg, resuming)
            if warning:
                log.warning(warning)
            if lg is None:
                wandb_failed = True
                continue
        else:
            lg = hydra.utils.instantiate(spec)
        out.append(lg)
        log.debug("logger %s: %s", name, type(lg).__name__)
    if wandb_failed and not any(isinstance(lg, CSVLogger) for lg in out):
        out.append(CSVLogger(str(run_dir), name="csv"))
    return out


# ----- end of a job -----------------------------------------------------------------------------------------------
def finish_loggers(loggers: list[Any], metrics: dict[str, Any] | None = None) -> None:
    """Write the run summary (model cost, final metrics) to every logger, then close W&B runs.
    CSV: ``model_cost`` and ``status`` in hparams.yaml, numbers in a last row of metrics.csv. Never raises."""
    for lg in loggers:
        try:
            if metrics is not None:
                if hasattr(lg, "log_summary"):
                    lg.log_summary(metrics)
                elif isinstance(lg, CSVLogger):
                    flat = summary_of(metrics)
                    lg.log_hyperparams({"model_cost": metrics.get("cost", {}), "status": flat.get("status")})
                    nums = {k: float(v) for k, v in flat.items() if isinstance(v, (int, float))
                            and not isinstance(v, bool)}
                    lg.log_metrics(nums, step=int(metrics.get("global_step") or 0))
                    lg.save()
            if hasattr(lg, "finish"):
                lg.finish(exit_code=0 if (metrics or {}).get("status", "finished") == "finished" else 1)
        except Exception as e:  # the job's results are on disk already
            log.warning("could not write the run summary to %s: %s: %s", type(lg).__name__, type(e).__name__, e)


def close_open_runs(error: str | None = None) -> None:
    """After a failed job: mark the open W&B run (if any) failed and finish it, so the next job of a
    sweep in this process gets its own run."""
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is None:
        return
    try:
        run.summary.update({"status": "failed", "error": (error or "")[:500]})
        run.finish(exit_code=1)
    except Exception as e:
        log.warning("could not close the W&B run: %s", e)
        return
    flush_wandb()
