"""What every compression callback shares, written once: state, measurement, logging, evaluation, resume.

A callback of ``compression=<name>`` keeps its state under ``compression.<name>`` and measures the generator with the
run's ``cost`` settings (``cost.input_size``, latency skipped) and, with ``evaluate``, its PSNR on the validation sets
through the module's own evaluation path (every image on every DDP rank). The rest of the code reads declared hooks,
never side channels: ``run.build_metrics_json`` gathers each callback's part of ``metrics.json`` (as ``compose_loss``
gathers ``loss_terms``), and QAT asks whether another callback still changes the generator's structure mid-run
instead of naming its class. Techniques that act once do so before the optimisers exist; techniques that replace
parameters mid-run rebuild the optimisers with the LR schedule's position kept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from lightning_sr.checkpoint import generator_from_checkpoint, read_checkpoint
from lightning_sr.cost import cost_from_config
from lightning_sr.errors import ConfigError, check, require
from lightning_sr.metrics import METRIC_MODES
from lightning_sr.metrics_json import mean_metrics
from lightning_sr.networks import adapt_to_state_dict

log = logging.getLogger(__name__)


def generator_of(pl_module: L.LightningModule, what: str) -> nn.Module:
    gen = getattr(pl_module, "generator", None)
    require(isinstance(gen, nn.Module) and any(True for _ in gen.parameters()),
            f"{what} needs a trainable generator (pl_module.generator); model.arch="
            f"{getattr(pl_module, 'generator_spec', {}).get('arch')!r} has none; use model=srresnet")
    return gen


def require_sr_module(pl_module: L.LightningModule, what: str) -> None:
    """Channel pruning, channel sparsity and quantization act on super-resolution generators (their protected image
    output layers, their PSNR); a classifier (task=classify) is refused in one line instead of failing inside."""
    require(getattr(pl_module, "task", "sr") == "sr",
            f"{what} compresses super-resolution generators; task=classify (model.arch="
            f"{getattr(pl_module, 'generator_spec', {}).get('arch')!r}) is not supported; use model=srresnet, srgan "
            f"or multi_exit (classifiers: model.conv=recycle, compression=distill)")


# ----- evaluation -------------------------------------------------------------------------------------------
def _val_sets(trainer: L.Trainer) -> list:
    dm = trainer.datamodule
    return dm.sets("val") if dm is not None and hasattr(dm, "sets") else []


def evaluate_psnr(trainer: L.Trainer, pl_module: L.LightningModule, max_images: int | None = None
                  ) -> dict[str, Any]:
    """{"psnr": mean over sets, "sets": {set: mean PSNR}} of the main output on the validation sets, through
    the module's own evaluation path (same tiling, crop, Y channel, fp32 as validation)."""
    sets = _val_sets(trainer)
    if not sets:
        return {}
    res = pl_module.evaluate_datasets(sets, max_images=max_images)
    per_set = {s: ex[""]["psnr"] for s, ex in res.items() if "" in ex}
    return {"psnr": sum(per_set.values()) / len(per_set), "sets": per_set} if per_set else {}


def evaluate_metrics(trainer: L.Trainer, pl_module: L.LightningModule, max_images: int | None = None
                     ) -> dict[str, Any]:
    """Every metric the module computes (PSNR, SSIM, LPIPS when enabled), as means over the validation sets and
    per set (``{"psnr": .., "ssim": .., "sets": {set: {"psnr": .., "ssim": ..}}}``), through the module's own
    evaluation path: what the run's own metrics.json holds for the trained model, for another generator (a
    distillation teacher)."""
    sets = _val_sets(trainer)
    if not sets:
        return {}
    res = pl_module.evaluate_datasets(sets, max_images=max_images)
    per_set = {s: {m: v for m, v in ex[""].items() if m in METRIC_MODES} for s, ex in res.items() if "" in ex}
    return {**mean_metrics(per_set), "sets": per_set} if per_set else {}


def calibration_batch(trainer: L.Trainer, pl_module: L.LightningModule, images: int = 1, crop: int = 48
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR): centre crops (``crop`` LR pixels at most) of the first ``images`` validation images.

    Read from the whole first validation set (not a rank's shard): identical on every DDP rank, so
    data-driven criteria choose the same structure everywhere."""
    sets = _val_sets(trainer)
    require(bool(sets) and len(sets[0]) > 0,
            "this pruning criterion needs validation images; train with a datamodule that has a validation set")
    scale = int(pl_module.scale)
    pairs = []
    for i in range(min(images, len(sets[0]))):
        item = sets[0][i]
        pairs.append((item["lr"].unsqueeze(0), item["hr"].unsqueeze(0)))
    require(len(pairs) > 0, "the first validation set is empty; the pruning criterion needs at least one image")
    h = min(crop, *(lr.shape[-2] for lr, _ in pairs))
    w = min(crop, *(lr.shape[-1] for lr, _ in pairs))
    lrs, hrs = [], []
    for lr, hr in pairs:
        top, left = (lr.shape[-2] - h) // 2, (lr.shape[-1] - w) // 2
        lrs.append(lr[..., top:top + h, left:left + w])
        hrs.append(hr[..., top * scale:(top + h) * scale, left * scale:(left + w) * scale])
    device = next(pl_module.generator.parameters()).device
    return torch.cat(lrs).to(device), torch.cat(hrs).to(device)


# ----- checkpoints ------------------------------------------------------------------------------------------
def restore_structure(pl_module: L.LightningModule, ckpt_path: str) -> dict[str, Any]:
    """Give ``pl_module.generator`` the (compressed) architecture stored in ``ckpt_path``; returns the checkpoint.

    Used when a compressed run resumes: the structure is taken from the checkpoint, not recomputed."""
    ckpt = read_checkpoint(ckpt_path, "resumed checkpoint")
    gen, spec = generator_from_checkpoint(ckpt, ckpt_path, what="resumed checkpoint")
    old = getattr(pl_module, "generator", None)
    if old is not None and (p := next(old.parameters(), None)) is not None:
        gen.to(p.device)
    pl_module.generator = gen
    pl_module.generator_spec = spec
    return ckpt


def adapt_generator_on_load(pl_module: L.LightningModule) -> None:
    """Before ``pl_module.load_state_dict`` (e.g. Lightning restoring a resumed run), resize the generator's
    Conv2d/BatchNorm2d/PReLU layers to the shapes in the state dict (``adapt_to_state_dict``).

    A resumed run re-applies the compression to the same ``model.init_from`` weights, which gives the same
    shapes, except where the ranking is not bit-reproducible (global Taylor pruning on a GPU): then the
    per-layer channel counts of the checkpoint win instead of a size-mismatch error."""
    if getattr(pl_module, "_lsr_adapt_on_load", None) is not None:
        return

    def hook(module, state_dict, prefix, *args, **kwargs):
        pre = f"{prefix}generator."
        gen_state = {k[len(pre):]: v for k, v in state_dict.items() if k.startswith(pre)}
        if gen_state:
            adapt_to_state_dict(module.generator, gen_state)

    pl_module._lsr_adapt_on_load = pl_module.register_load_state_dict_pre_hook(hook)


# ----- the callback base -----------------------------------------------------------------------------------
class CompressionCallback(L.Callback):
    """Base of every compression callback (``compression=<name>``).

    Subclasses set ``name`` (the config key) and call :meth:`log_entry` with their entry (technique, arguments,
    ``before``/``after`` measurements) when they act; a resumed run logs the entry its state restored. The entry
    is a dict the callback may keep updating until the end of fit (QAT adds the int8 figures)."""

    name = "compression"

    def __init__(self, evaluate: bool = True, eval_images: int | None = None):
        check(isinstance(evaluate, bool), f"{self.key}.evaluate", evaluate, "must be true or false")
        check(eval_images is None or (isinstance(eval_images, int) and eval_images > 0), f"{self.key}.eval_images",
              eval_images, "is impossible; use null (all) or an integer > 0")
        self.evaluate, self.eval_images = evaluate, eval_images
        self.entry: dict[str, Any] | None = None
        self.logged = False  # this process logged the entry (it goes into metrics.json)

    @property
    def key(self) -> str:
        return f"compression.{self.name}"

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def config(self) -> dict[str, Any]:
        """The callback's arguments, for the log."""
        return {}

    # -- what every technique does the same way --------------------------------------------------------------
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Cost of ``pl_module.generator`` (the run's ``cost`` settings, no latency) and, with ``evaluate``, its
        PSNR on the validation sets (all of them, ``eval_images`` images each)."""
        out: dict[str, Any] = cost_from_config(pl_module.generator, getattr(pl_module, "cost_cfg", None),
                                               latency=False)
        if self.evaluate:
            out.update(evaluate_psnr(trainer, pl_module, self.eval_images))
        return out

    def log_entry(self, entry: dict[str, Any] | None = None) -> None:
        """Make ``entry`` (default: the current one) this callback's line of ``metrics.json["compression"]``."""
        if entry is not None:
            self.entry = entry
        self.logged = self.entry is not None

    def warn_if_untrained(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Warn when the technique acts on an untrained generator: no ``model.init_from`` and no earlier
        compression callback has acted."""
        earlier = any(cb.logged for cb in trainer.callbacks if isinstance(cb, CompressionCallback) and cb is not self)
        if not (getattr(pl_module, "hparams", {}) or {}).get("init_from") and not earlier:
            log.warning("%s acts on an untrained generator (no model.init_from=PATH)", self.key)

    def preflight(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refusals that need only the configuration, the trainer's settings (world size, ``max_steps``, the other
        callbacks) and the built model. ``setup`` runs them on every rank; :func:`preflight` runs them once more
        before ``trainer.fit``, so that a refused run stops before anything is launched (a DDP run's rank 1
        included). Pure: raise :class:`~lightning_sr.errors.ConfigError` or change nothing."""

    # -- declared hooks (read by run.build_metrics_json and by other callbacks) -----------------------------------------
    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """What this callback adds to ``metrics.json``: lists are concatenated over the callbacks in their order
        (``compression``: one entry per technique that acted), other keys are the callback's own."""
        return {"compression": [self.entry]} if self.logged and self.entry is not None else {}

    def changes_structure_until(self) -> int | None:
        """The step at which this callback still changes the generator's structure mid-run (0: at the last step),
        or None (it does not, or no longer)."""
        return None

    # -- resume state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"entry": self.entry}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.entry = restore_entry(self.entry, state_dict.get("entry"))


class StructuralCompression(CompressionCallback):
    """Base of callbacks that change the generator's structure once, before training starts.

    Subclasses set ``name`` (the config key, e.g. ``block_prune``) and implement :meth:`check`
    (raise :class:`ConfigError` for a model the technique cannot handle) and :meth:`apply`
    (change ``pl_module.generator`` / ``generator_spec``, return details for the log).

    It acts in ``setup(stage="fit")``: Lightning calls it after the datamodule's ``setup`` and *before* the
    checkpoint is restored and ``configure_optimizers`` runs, so the optimiser only ever sees the compressed
    parameters. It measures before and after, logs both to every logger (``compression/<name>/...``) and keeps the
    entry for ``metrics.json`` (``"compression"``); a resumed run takes the structure from the checkpoint.
    """

    def __init__(self, evaluate: bool = True, eval_images: int | None = None):
        super().__init__(evaluate, eval_images)
        self.applied = False

    # -- to implement ---------------------------------------------------------------------------------------
    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Raise ConfigError when the model cannot be compressed this way (called before anything changes)."""

    def preflight(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``check`` (it must be pure and cheap; a technique whose check is not overrides this)."""
        generator_of(pl_module, self.key)
        self.check(trainer, pl_module)

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        raise NotImplementedError

    # -- Lightning hooks -------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.applied:
            return
        resume = trainer.ckpt_path  # known here when the run resumes through ``trainer.ckpt_path = ...``
        if resume:
            ckpt = restore_structure(pl_module, str(resume))
            state = (ckpt.get("callbacks") or {}).get(self.state_key) or {}
            self.load_state_dict(state)
            self.log_entry()
            self.applied = True
            log.info("%s: resuming %s, structure taken from the checkpoint (%s)", self.name, resume,
                     pl_module.generator_spec)
            return
        gen = generator_of(pl_module, self.key)
        self.warn_if_untrained(trainer, pl_module)
        gen.to(trainer.strategy.root_device)  # measure and prune where the model will train
        self.check(trainer, pl_module)
        before = self.measure(trainer, pl_module)
        details = self.apply(trainer, pl_module)
        pl_module.generator.to(trainer.strategy.root_device)
        after = self.measure(trainer, pl_module)
        adapt_generator_on_load(pl_module)
        self.log_entry({"technique": self.name, **self.config(), **details, "before": before, "after": after})
        self._log_metrics(trainer, before, after)
        self.applied = True
        log.info("%s: %s -> %s", self.name, short(before), short(after))

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, **super().state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.applied = bool(state_dict.get("applied", self.applied))

    # -- helpers ---------------------------------------------------------------------------------------------
    def _log_metrics(self, trainer: L.Trainer, before: dict[str, Any], after: dict[str, Any]) -> None:
        flat: dict[str, float] = {}
        for when, m in (("before", before), ("after", after)):
            for k in ("psnr", "params", "macs"):
                if k in m:
                    flat[f"compression/{self.name}/{k}_{when}"] = float(m[k])
            for s, v in (m.get("sets") or {}).items():
                flat[f"compression/{self.name}/{s}/psnr_{when}"] = float(v)
        log_values(trainer, flat, "compression")


def preflight(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Every compression callback's :meth:`CompressionCallback.preflight`, in the callbacks' order (the order their
    ``setup`` would refuse in): called by ``run.train`` before ``trainer.fit`` of a run that does not resume."""
    for cb in trainer.callbacks:
        if isinstance(cb, CompressionCallback):
            cb.preflight(trainer, pl_module)


def log_values(trainer: L.Trainer, values: dict[str, float], what: str) -> None:
    """``values`` to every logger at the current step; a logger hiccup never stops training."""
    for lg in trainer.loggers:
        try:
            lg.log_metrics(values, step=trainer.global_step)
        except Exception as e:
            log.warning("could not log %s metrics to %s: %s", what, type(lg).__name__, e)


def restore_entry(current: dict[str, Any] | None, saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """A callback's log entry from a checkpoint, restored *in place*: the state is loaded twice on a resume (in
    ``setup`` and by Lightning's restore), and whatever holds the entry from the first load must see what the
    callback completes later (QAT's int8 figures, the removal's)."""
    if saved is None:
        return current
    if current is None:
        return saved
    current.clear()
    current.update(saved)
    return current


def resumed_state(ckpt_path: str | Path, state_key: str) -> dict[str, Any]:
    """A callback's state in the checkpoint a run resumes from (empty when it has none)."""
    return (read_checkpoint(str(ckpt_path), "resumed checkpoint").get("callbacks") or {}).get(state_key) or {}


def rebuild_optimizers(trainer: L.Trainer) -> None:
    """New optimisers after a callback replaced parameters mid-run (channels removed, QAT's graph), without
    restarting the run: every LR scheduler keeps its position (its state is carried over and the new groups take
    its current rates), and an optimiser whose parameters did not change (SRGAN's discriminator) keeps its state."""
    old_opts = [(tuple(id(p) for g in o.param_groups for p in g["params"]), o.state_dict()) for o in trainer.optimizers]
    old_scheds = [c.scheduler.state_dict() for c in trainer.lr_scheduler_configs]
    trainer.strategy.setup_optimizers(trainer)
    for o, (ids, state) in zip(trainer.optimizers, old_opts, strict=False):
        if tuple(id(p) for g in o.param_groups for p in g["params"]) == ids:
            o.load_state_dict(state)
    for c, state in zip(trainer.lr_scheduler_configs, old_scheds, strict=False):
        sch = c.scheduler
        groups = sch.optimizer.param_groups
        if len(state.get("base_lrs", [])) == len(groups):
            sch.load_state_dict(state)
            lrs = list(sch.get_last_lr())
        else:  # other parameter groups (a callback's own group went away): the same position, the closed form
            sch.last_epoch = int(state.get("last_epoch", sch.last_epoch))
            sch._step_count = int(state.get("_step_count", getattr(sch, "_step_count", 1)))
            closed = getattr(sch, "_get_closed_form_lr", None)
            lrs = list(closed()) if closed else list(sch.get_last_lr())
            lrs = [0.0 if base == 0 else lr for base, lr in zip(sch.base_lrs, lrs, strict=False)]
            sch._last_lr = lrs
        for g, lr in zip(groups, lrs, strict=False):
            g["lr"] = lr


def short(m: dict[str, Any]) -> str:
    psnr = f"PSNR {m['psnr']:.3f} dB, " if "psnr" in m else ""
    return f"{psnr}{m['params']} params, {m['macs'] / 1e6:.1f} MMACs@{m['macs_input']}"


__all__ = ["CompressionCallback", "ConfigError", "StructuralCompression", "adapt_generator_on_load",
           "calibration_batch", "evaluate_metrics", "evaluate_psnr", "generator_of", "log_values", "preflight", "rebuild_optimizers",
           "restore_structure", "resumed_state", "short"]
