"""What ``train.py`` and ``evaluate.py`` do, as plain functions of a resolved Hydra config."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from lightning_sr.config import build_module, to_plain, validate_config
from lightning_sr.cost import cost_from_config
from lightning_sr.data import SRDataModule
from lightning_sr.errors import LightningSRError
from lightning_sr.loggers import build_loggers, finish_loggers
from lightning_sr.strategies import end_process_group

log = logging.getLogger(__name__)


def run_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def overrides_of() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@rank_zero_only
def write_metrics(run_dir: Path, metrics: dict[str, Any], records: list[dict[str, Any]] | None = None) -> None:
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float) + "\n")
    if records:
        fields = ["set", "exit", "image", "psnr", "ssim", "lpips"]
        with open(run_dir / "per_image.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in fields if any(k in r for r in records)],
                               extrasaction="ignore")
            w.writeheader()
            w.writerows(records)


def summarize(module, cfg: DictConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """metrics.json content: headline means, per set (and per exit), bicubic baseline, model cost."""
    sets = module.val_results
    main = {s: ex.get("", {}) for s, ex in sets.items()}
    out: dict[str, Any] = {"status": "finished", "name": cfg.get("name"), "overrides": overrides_of()}
    for m in ("psnr", "ssim", "lpips"):
        vals = [v[m] for v in main.values() if m in v]
        if vals:
            out[m] = sum(vals) / len(vals)
    out["sets"] = main
    exits = {s: {e: v for e, v in ex.items() if e} for s, ex in sets.items()}
    if any(exits.values()):
        out["exits"] = exits
    out["bicubic"] = module.bicubic_results
    cost = cost_from_config(module.generator, cfg.get("cost"))
    out["cost"] = cost
    out["params"] = cost["params"]
    out["generator"] = dict(module.generator_spec)
    if getattr(module, "compression_log", None):  # compression callbacks: before/after each technique
        out["compression"] = list(module.compression_log)
    if hasattr(module, "exit_costs"):  # multi-exit models: each exit's cost as a standalone network
        out["exit_cost"] = module.exit_costs(cfg.get("cost"))
    out.update(extra)
    return out


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Callbacks from ``callbacks`` then ``compression`` (in the order given on the command line)."""
    cbs = []
    for group in ("callbacks", "compression"):
        for _, spec in (cfg.get(group) or {}).items():
            if spec is not None and "_target_" in spec:
                try:
                    cbs.append(hydra.utils.instantiate(spec))
                except hydra.errors.InstantiationException as e:  # keep a callback's own one-line error
                    if isinstance(e.__cause__, LightningSRError):
                        raise e.__cause__ from None
                    raise
    return cbs


def _find_previous_run(cfg: DictConfig, run_dir: Path) -> Path | None:
    """Latest earlier run folder of the same name and the same overrides (for ``ckpt_path=last``)."""
    import yaml

    runs = run_dir.parent
    want = sorted(o for o in overrides_of() if not o.startswith(("ckpt_path=", "resume=")))
    for d in sorted((p for p in runs.iterdir() if p.is_dir() and p != run_dir), reverse=True):
        ov = d / ".hydra" / "overrides.yaml"
        if (d / "checkpoints" / "last.ckpt").is_file() and ov.is_file():
            got = sorted(o for o in (yaml.safe_load(ov.read_text()) or []) if not o.startswith(("ckpt_path=", "resume=")))
            if got == want:
                return d
    return None


def resolve_resume(cfg: DictConfig, run_dir: Path) -> str | None:
    """Checkpoint to resume from: ``ckpt_path`` (a path, or ``last``), else this run folder's last.ckpt."""
    ckpt = cfg.get("ckpt_path")
    last = run_dir / "checkpoints" / "last.ckpt"
    if ckpt == "last":
        if not last.is_file() and run_dir.parent.is_dir():
            prev = _find_previous_run(cfg, run_dir)
            last = prev / "checkpoints" / "last.ckpt" if prev else last
        if not last.is_file():
            from lightning_sr.errors import ConfigError

            raise ConfigError(f"ckpt_path=last but no last.ckpt in {run_dir} nor in an earlier run of {run_dir.parent} "
                              f"with the same overrides; give ckpt_path=PATH or hydra.run.dir=<the run folder>")
        log.info("resuming from %s", last)
        return str(last)
    if ckpt:
        return str(ckpt)
    if cfg.get("resume", True) and last.is_file():
        log.info("resuming from %s (same run folder; resume=false to start over)", last)
        return str(last)
    return None


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of the resolved config minus where/how it runs: equal fingerprints = the same experiment."""
    import hashlib

    c = to_plain(cfg)
    for k in ("paths", "ckpt_path", "resume"):
        c.pop(k, None)
    return hashlib.sha1(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _finished(run_dir: Path, cfg: DictConfig) -> dict[str, Any] | None:
    """metrics.json of a finished run of this very config in this folder (a changed config trains on)."""
    f = run_dir / "metrics.json"
    if f.is_file():
        try:
            m = json.loads(f.read_text())
        except json.JSONDecodeError:
            return None
        if m.get("status") == "finished" and m.get("config_fingerprint") == config_fingerprint(cfg):
            return m
    return None


def train(cfg: DictConfig) -> dict[str, Any]:
    run_dir = run_dir_of(cfg)
    done = _finished(run_dir, cfg) if cfg.get("resume", True) and not cfg.get("ckpt_path") else None
    if done is not None:  # e.g. a resumed multirun: jobs that already finished are skipped
        log.info("%s already finished (metrics.json); skipping. resume=false to train again", run_dir)
        return done
    validate_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    dm = SRDataModule(cfg.data, int(cfg.scale), seed=int(cfg.seed))
    dm.setup("fit")  # decode + validate data before anything is trained
    module = build_module(cfg)
    module.eval_names = dm.eval_names
    loggers = build_loggers(cfg, run_dir)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False,
                                                 default_root_dir=str(run_dir))
    for lg in loggers:
        lg.log_hyperparams(to_plain(cfg))
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=resolve_resume(cfg, run_dir))
    train_time = time.perf_counter() - t0
    trainer.validate(module, datamodule=dm, verbose=False)
    if not trainer.is_global_zero:  # ranks > 0 took part in training and validation; rank 0 reports
        end_process_group()
        return {"status": "finished", "rank": trainer.global_rank}
    ckpt_cb = trainer.checkpoint_callback
    metrics = summarize(module, cfg, {
        "train_time_s": round(train_time, 2), "global_step": trainer.global_step,
        "config_fingerprint": config_fingerprint(cfg),
        "best_ckpt": getattr(ckpt_cb, "best_model_path", None) or None,
        "last_ckpt": str(Path(ckpt_cb.dirpath) / "last.ckpt") if ckpt_cb is not None and ckpt_cb.dirpath else None,
    })
    write_metrics(run_dir, metrics, module.val_records)
    finish_loggers(loggers, metrics)  # cost + final metrics to every logger's summary; closes the W&B run
    end_process_group()
    log.info("metrics: %s", json.dumps({k: metrics.get(k) for k in ("psnr", "ssim", "lpips", "params") if k in metrics}))
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    from lightning_sr.checkpoint import load_generator
    from lightning_sr.config import generator_spec
    from lightning_sr.errors import ConfigError
    from lightning_sr.models import build_generator
    from lightning_sr.modules import SRBaseModule

    run_dir = run_dir_of(cfg)
    ckpt = cfg.get("ckpt_path")
    validate_config(cfg, need_train=False, check_model=not ckpt)
    if ckpt:
        generator, spec = load_generator(ckpt, expect_scale=int(cfg.scale), what="ckpt_path")
    elif cfg.model.get("arch") == "bicubic":
        spec = generator_spec(cfg)
        generator = build_generator(spec)
    else:
        raise ConfigError("evaluate.py needs ckpt_path=PATH (a training checkpoint) or model=bicubic")
    dm = SRDataModule(cfg.data, int(cfg.scale))
    dm.setup("test")
    module = SRBaseModule(spec, int(cfg.scale), val=to_plain(cfg.get("val", {})),
                          metrics=to_plain(cfg.get("metrics", {})))
    module.generator = generator
    module.eval_names = dm.eval_names
    trainer = L.Trainer(accelerator=cfg.get("accelerator", "auto"), devices=1, logger=False,
                        default_root_dir=str(run_dir), enable_checkpointing=False,
                        enable_progress_bar=bool(cfg.get("progress_bar", True)), enable_model_summary=False)
    trainer.test(module, datamodule=dm, verbose=False)
    metrics = summarize(module, cfg, {"ckpt_path": ckpt})
    write_metrics(run_dir, metrics, module.val_records)
    for s, v in metrics["sets"].items():
        log.info("%s: %s", s, ", ".join(f"{k}={x:.4f}" for k, x in v.items() if k != "images"))
    return metrics
