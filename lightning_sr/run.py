"""What ``train.py`` and ``evaluate.py`` do, as plain functions of a resolved Hydra config."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from lightning_sr.callbacks import TrainClock
from lightning_sr.checkpoint import CONFIG_KEY, load_generator
from lightning_sr.compression.base import preflight
from lightning_sr.config import (
    build_datamodule,
    build_module,
    generator_spec,
    module_arguments,
    validate_config,
)
from lightning_sr.cost import cost_from_config
from lightning_sr.errors import ConfigError, LightningSRError
from lightning_sr.fs import atomic_write
from lightning_sr.lit_modules import eval_module_class
from lightning_sr.loggers import build_loggers, finish_loggers
from lightning_sr.manifest import write_manifest
from lightning_sr.metrics import METRIC_MODES
from lightning_sr.metrics_json import compression_ratios, mean_metrics
from lightning_sr.networks import build_generator
from lightning_sr.overrides import flatten, to_plain, user_overrides
from lightning_sr.strategies import end_process_group

log = logging.getLogger(__name__)

# config keys that may change between a run and its resumption: where and how it runs, what it logs and how it
# is evaluated, how long it trains. Anything else changes the experiment: resuming would mix two of them.
RESUME_SAFE = ("paths", "ckpt_path", "resume", "name", "published", "report", "logger", "callbacks", "val", "metrics", "cost",
               "float32_matmul_precision", "trainer.max_steps", "trainer.max_epochs", "trainer.val_check_interval",
               "trainer.check_val_every_n_epoch", "trainer.log_every_n_steps", "trainer.num_sanity_val_steps",
               "trainer.enable_progress_bar", "trainer.plugins", "data.num_workers", "data.pin_memory",
               "data.decode_threads", "data.cache", "data.val_max_images", "data.benchmark_root",
               "data.benchmark_sets", "data.benchmark_use_lr")


def run_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def overrides_of() -> list[str]:
    return user_overrides()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


@rank_zero_only
def write_metrics(run_dir: Path, metrics: dict[str, Any], records: list[dict[str, Any]] | None = None,
                  records_file: str = "per_image.csv") -> None:
    atomic_write(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float) + "\n")
    if records:
        fields = ["set", "exit", "image", *METRIC_MODES]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[k for k in fields if any(k in r for r in records)], extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
        atomic_write(run_dir / records_file, buf.getvalue())


def callback_summaries(trainer: L.Trainer | None, module) -> dict[str, Any]:
    """What the callbacks add to metrics.json: the ``summary(trainer, pl_module)`` of every callback that has one
    (compression: ``compression``, ``teacher``, ``int8``), as ``compose_loss`` gathers ``loss_terms``. A list is
    concatenated over the callbacks in their order; any other key belongs to one callback."""
    out: dict[str, Any] = {}
    for cb in trainer.callbacks if trainer is not None else []:
        hook = getattr(cb, "summary", None)
        if not callable(hook):
            continue
        for k, v in (hook(trainer, module) or {}).items():
            if isinstance(v, list):
                out[k] = [*out.get(k, []), *v]
            else:
                if k in out:
                    raise RuntimeError(f"{type(cb).__name__} reports {k!r} for metrics.json, which another callback "
                                       f"reports already")
                out[k] = v
    return out


def build_metrics_json(module, cfg: DictConfig, extra: dict[str, Any], roles: dict[str, str] | None = None,
              trainer: L.Trainer | None = None) -> dict[str, Any]:
    """metrics.json content: headline means, per set (and per exit), bicubic baseline, model cost, and what the
    callbacks of ``trainer`` report (:func:`callback_summaries`)."""
    sets = module.val_results
    main = {s: ex.get("", {}) for s, ex in sets.items()}
    if roles:
        main = {s: {**v, "role": roles.get(s, "val")} for s, v in main.items()}
    out: dict[str, Any] = {"status": "finished", "name": cfg.get("name"), "overrides": overrides_of(),
                           **mean_metrics(main), "sets": main}
    exits = {s: {e: v for e, v in ex.items() if e} for s, ex in sets.items()}
    if any(exits.values()):
        out["exits"] = exits
    out["bicubic"] = module.bicubic_results
    cost = cost_from_config(module.generator, getattr(module, "cost_cfg", None) or cfg.get("cost"))  # module's own
    out["cost"] = cost
    out["params"] = cost["params"]
    out["generator"] = dict(module.generator_spec)
    # compression callbacks: "compression" (before/after each technique), "teacher" (distillation), "int8" (qat|ptq)
    out.update(callback_summaries(trainer, module))
    if hasattr(module, "exit_costs"):  # multi-exit models: each exit's cost as a standalone network
        out["exit_cost"] = module.exit_costs(cfg.get("cost"))
    out.update(compression_ratios(out))  # r_c, r_s (GAN Slimming) when a teacher was distilled from
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


# ----- resuming ------------------------------------------------------------------------------------------------
def experiment_config(cfg: DictConfig) -> dict[str, Any]:
    """The flat resolved config without the keys that may change on resume (:data:`RESUME_SAFE`)."""
    flat = flatten(to_plain(cfg))
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in RESUME_SAFE)}


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


def check_resume(cfg: DictConfig, ckpt: str, run_dir: Path) -> None:
    """Resume only a checkpoint of this experiment: the config it stored must equal this one outside
    :data:`RESUME_SAFE`; else one line names the keys that differ and the two ways out."""
    try:
        stored = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get(CONFIG_KEY)
    except Exception as e:
        raise ConfigError(f"cannot read the checkpoint to resume, {ckpt}: {type(e).__name__}: {e}; remove it or "
                          f"start over with resume=false") from None
    if stored is None:
        log.warning("%s stores no config (written by an older version): resuming without checking it", ckpt)
        return
    now = experiment_config(cfg)
    keys = sorted(set(now) | set(stored))
    differ = [k for k in keys if not any(k == p or k.startswith(p + ".") for p in RESUME_SAFE)
              and now.get(k, "<unset>") != stored.get(k, "<unset>")]
    if differ:
        shown = "; ".join(f"{k}: {stored.get(k, '<unset>')} -> {now.get(k, '<unset>')}" for k in differ[:6])
        more = f" (and {len(differ) - 6} more)" if len(differ) > 6 else ""
        raise ConfigError(f"{ckpt} belongs to another experiment ({shown}{more}); to train this config start over "
                          f"with resume=false or use a new folder (hydra.run.dir=DIR, multirun: hydra.sweep.dir=DIR)")


def resolve_resume(cfg: DictConfig, run_dir: Path) -> str | None:
    """Checkpoint to resume from: ``ckpt_path`` (a path, or ``last``), else this run folder's last.ckpt (when
    ``resume``); its stored config must match (:func:`check_resume`)."""
    ckpt = cfg.get("ckpt_path")
    last = run_dir / "checkpoints" / "last.ckpt"
    if ckpt == "last":
        if not last.is_file() and run_dir.parent.is_dir():
            prev = _find_previous_run(cfg, run_dir)
            last = prev / "checkpoints" / "last.ckpt" if prev else last
        if not last.is_file():
            raise ConfigError(f"ckpt_path=last but no last.ckpt in {run_dir} nor in an earlier run of {run_dir.parent} "
                              f"with the same overrides; give ckpt_path=PATH or hydra.run.dir=<the run folder>")
        found = str(last)
    elif ckpt:
        found = str(ckpt)
    elif cfg.get("resume", True) and last.is_file():
        found = str(last)
    else:
        return None
    check_resume(cfg, found, run_dir)
    log.info("resuming from %s (resume=false to start over)", found)
    return found


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of the resolved config minus where/how it runs: equal fingerprints = the same experiment."""
    c = to_plain(cfg)
    for k in ("paths", "ckpt_path", "resume", "report"):  # report: how the sweep report reads it, not the experiment
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


# ----- the tasks -----------------------------------------------------------------------------------------------
def train(cfg: DictConfig) -> dict[str, Any]:
    run_dir = run_dir_of(cfg)
    done = _finished(run_dir, cfg) if cfg.get("resume", True) and not cfg.get("ckpt_path") else None
    if done is not None:  # e.g. a resumed multirun: jobs that already finished are skipped
        log.info("%s already finished (metrics.json); skipping. resume=false to train again", run_dir)
        return done
    validate_config(cfg)
    resume = resolve_resume(cfg, run_dir)  # before anything is built: a mismatching checkpoint is one line
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    dm = build_datamodule(cfg)
    dm.setup("fit")  # decode + validate data before anything is trained
    rank_zero_only(write_manifest)(run_dir, cfg, training=True)  # what this run ran on (also if it fails later)
    module = build_module(cfg)
    module.run_config = experiment_config(cfg)
    loggers = build_loggers(cfg, run_dir, resuming=resume is not None)
    clock = TrainClock()  # training time over every segment of a resumed run (its state is in each checkpoint)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[*build_callbacks(cfg), clock],
                                                 logger=loggers or False, default_root_dir=str(run_dir))
    if resume is None:  # a refused combination stops here, before fit launches anything (DDP: before rank 1)
        preflight(trainer, module)
    for lg in loggers:
        lg.log_hyperparams(to_plain(cfg))
    trainer.ckpt_path = resume  # known to callbacks from setup() on (a compressed run rebuilds its structure)
    trainer.fit(module, datamodule=dm)
    trainer.ckpt_path = None
    train_time, segment_time = clock.total(), clock.segment()
    trainer.test(module, datamodule=dm, verbose=False)  # final weights on every set, validation and test
    if not trainer.is_global_zero:  # ranks > 0 took part in training and evaluation; rank 0 reports
        end_process_group()
        return {"status": "finished", "rank": trainer.global_rank}
    ckpt_cb = trainer.checkpoint_callback
    roles = {d.name: d.role for d in getattr(dm, "eval_sets", [])}
    metrics = build_metrics_json(module, cfg, {
        "train_time_s": round(train_time, 2), "train_time_segment_s": round(segment_time, 2),
        "global_step": trainer.global_step,
        "batches": module.batches_done(), "resumed_from": resume,
        "images_seen": module.batches_done() * int(cfg.data.get("batch_size", 1)) * int(trainer.world_size),
        "config_fingerprint": config_fingerprint(cfg),
        "world_size": trainer.world_size, "written_by_rank": trainer.global_rank,  # DDP: rank zero alone reports
        "best_ckpt": getattr(ckpt_cb, "best_model_path", None) or None,
        "last_ckpt": str(Path(ckpt_cb.dirpath) / "last.ckpt") if ckpt_cb is not None and ckpt_cb.dirpath else None,
    }, roles, trainer)
    write_metrics(run_dir, metrics, module.val_records, getattr(module, "records_file", "per_image.csv"))
    finish_loggers(loggers, metrics)  # cost + final metrics to every logger's summary; closes the W&B run
    end_process_group()
    log.info("metrics: %s", json.dumps({k: metrics.get(k) for k in ("psnr", "ssim", "lpips", "accuracy", "params") if k in metrics}))
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, Any]:
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
    dm = build_datamodule(cfg, seed=int(cfg.get("seed", 0)))
    dm.setup("test")
    write_manifest(run_dir, cfg, training=False)
    int8 = bool(spec.get("_int8"))  # an int8 program (int8.pt2) runs on the CPU
    cls = eval_module_class(spec, dm)
    extra = {"save_outputs": bool(cfg.get("save_outputs", False))} if "save_outputs" in module_arguments(cls) else {}
    module = cls(spec, int(cfg.scale), val=to_plain(cfg.get("val", {})), metrics=to_plain(cfg.get("metrics", {})),
                 cost=to_plain(cfg.get("cost", {})), **extra)
    # an int8 program is evaluated compiled (the oneDNN int8 kernels that run it) unless int8_compile=false
    module.generator = generator.compiled() if int8 and cfg.get("int8_compile", True) else generator
    trainer = L.Trainer(accelerator="cpu" if int8 else cfg.get("accelerator", "auto"), devices=1, logger=False,
                        default_root_dir=str(run_dir), enable_checkpointing=False,
                        enable_progress_bar=bool(cfg.get("progress_bar", True)), enable_model_summary=False)
    trainer.test(module, datamodule=dm, verbose=False)
    module.generator = generator
    roles = {d.name: d.role for d in getattr(dm, "eval_sets", [])}
    metrics = build_metrics_json(module, cfg, {"ckpt_path": ckpt}, roles)
    write_metrics(run_dir, metrics, module.val_records, getattr(module, "records_file", "per_image.csv"))
    for s, v in metrics["sets"].items():  # noqa: B007
        log.info("%s: %s", s, ", ".join(f"{k}={x:.4f}" for k, x in v.items() if isinstance(x, float)))
    return metrics
