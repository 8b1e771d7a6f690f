"""The part every LightningModule shares, whatever the task: the network, optimisers, step accounting, the loss hook.

The network is ``generator``, built from its spec (or ``model.init_from``); checkpoints carry the spec so they
rebuild it alone. How a task evaluates (SR images, video clips, class labels) is not here:
:mod:`lightning_sr.lit_modules.evaluation` holds the evaluation loop every task shares and the SR evaluation path.

**Losses.** A module's training loss is a dict of named terms passed to :meth:`TaskModule.compose_loss`,
which adds the terms of every callback that has a ``loss_terms(trainer, pl_module, stage, **context)`` method
(distillation, sparsity), logs each term as ``train/<name>`` and returns the sum. Every module calls it,
the GANs' manual optimisation included.

**Steps.** ``trainer.global_step`` counts optimiser steps (a GAN makes two per batch). The data stream
follows :meth:`TaskModule.batches_done` and LR schedules last :meth:`TaskModule.schedule_length`
scheduler steps, so both end where ``trainer.max_steps`` ends and a resumed run replays exactly.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from lightning_sr.checkpoint import ARCH_KEY, CONFIG_KEY, load_generator
from lightning_sr.errors import ConfigError
from lightning_sr.metrics import EvalRecords
from lightning_sr.networks import build_generator, named_outputs

log = logging.getLogger(__name__)


class CosineLR(torch.optim.lr_scheduler.CosineAnnealingLR):
    """Cosine annealing that leaves parameter groups with learning rate 0 at 0 (parameters a callback optimises)."""

    def get_lr(self):
        return [0.0 if base == 0 else lr for base, lr in zip(self.base_lrs, super().get_lr(), strict=True)]


class TaskModule(L.LightningModule):
    # optimiser steps per training batch (trainer.global_step advances by this much per batch)
    optimizer_steps_per_batch = 1
    # what the module's network does: "sr" (an image generator scored by PSNR) or "classify"; compression callbacks
    # read it (a declared capability) instead of importing module classes
    task = "sr"

    def __init__(self, generator_spec: dict[str, Any], scale: int, optim: dict | None = None,
                 scheduler: dict | None = None, val: dict | None = None, metrics: dict | None = None,
                 cost: dict | None = None, init_from: str | None = None, channels_last: bool = False,
                 save_outputs: bool = False, **kwargs: Any):
        super().__init__()
        self.save_hyperparameters()
        self.scale = int(scale)
        self.optim_cfg = dict(optim or {})
        self.sched_cfg = dict(scheduler or {})
        self.val_cfg = dict(val or {})
        self.metrics_cfg = dict(metrics or {})
        self.cost_cfg = dict(cost or {})
        self.channels_last = channels_last
        self.save_outputs = bool(save_outputs)  # test/evaluate: write the SR images scored to <run>/outputs/
        if init_from:
            self.generator, spec = load_generator(init_from, expect_arch=generator_spec.get("arch"),
                                                  expect_scale=self.scale, what="model.init_from")
            log.info("generator initialised from %s (architecture taken from the checkpoint: %s)", init_from, spec)
        else:
            self.generator, spec = build_generator(generator_spec), dict(generator_spec)
        self.generator_spec = spec
        # what the evaluation loop (lit_modules/evaluation.py) fills: per-image records (gathered over DDP ranks),
        # the results per set, and a baseline's results where the task has one (SR: bicubic)
        self.records = EvalRecords()
        self.val_results: dict[str, Any] = {}
        self.val_records: list[dict[str, Any]] = []
        self.bicubic_results: dict[str, Any] = {}
        self.run_config: dict[str, Any] | None = None  # the run's flat config, stored in checkpoints (resume check)

    # ----- model ------------------------------------------------------------------------------------------
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.generator(lr)

    def predict_outputs(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named outputs to evaluate (:func:`lightning_sr.networks.named_outputs`): ``""`` is the main output."""
        return named_outputs(self.generator, lr)

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _datamodule(self):
        return self.trainer.datamodule if self._trainer is not None else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ARCH_KEY] = dict(self.generator_spec)
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = dict(self.run_config)

    # ----- steps ------------------------------------------------------------------------------------------
    def batches_done(self) -> int:
        """Training batches completed (the data stream's position), whatever the optimiser steps per batch."""
        t = self.trainer
        return int(t.global_step) * max(1, int(t.accumulate_grad_batches or 1)) // self.optimizer_steps_per_batch

    def schedule_length(self) -> int:
        """Scheduler steps in the whole run: schedules end exactly at ``trainer.max_steps``."""
        t = self.trainer
        steps = t.max_steps if t.max_steps and t.max_steps > 0 else int(t.estimated_stepping_batches)
        return max(1, int(steps) // self.optimizer_steps_per_batch)

    def on_train_start(self) -> None:
        n = self.schedule_length()
        for sc in self.trainer.lr_scheduler_configs:  # trainer.max_steps changed on resume: re-stretch the cosine
            s = sc.scheduler
            if isinstance(s, torch.optim.lr_scheduler.CosineAnnealingLR) and s.T_max != n:
                log.warning("cosine schedule: %d -> %d steps (trainer.max_steps changed since the checkpoint)",
                            s.T_max, n)
                s.T_max = n

    # ----- optimisation (shared helpers) -----------------------------------------------------------------------
    def generator_parameters(self) -> list[torch.nn.Parameter]:
        """The generator's trainable parameters for the module's optimiser."""
        return [p for p in self.generator.parameters() if p.requires_grad]

    def make_optimizer(self, params, cfg: dict | None = None) -> torch.optim.Optimizer:
        """Adam over ``params``. Parameters a callback optimises itself (marked ``lsr_own_optimizer``: channel gates)
        sit in a group of their own with learning rate 0: this optimiser never changes them, but they stay in it, so
        modules that toggle optimisers (GANs) keep computing their gradients."""
        c = {**self.optim_cfg, **(cfg or {})}
        params = list(params)
        own = [p for p in params if getattr(p, "lsr_own_optimizer", False)]
        groups: list[dict] = [{"params": [p for p in params if not getattr(p, "lsr_own_optimizer", False)]}]
        if own:
            groups.append({"params": own, "lr": 0.0, "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=c.get("lr", 2e-4), betas=tuple(c.get("betas", (0.9, 0.99))),
                                weight_decay=c.get("weight_decay", 0.0))

    def make_scheduler(self, opt: torch.optim.Optimizer):
        c = self.sched_cfg
        name = c.get("name", "constant")
        if name == "cosine":
            return CosineLR(opt, T_max=self.schedule_length(), eta_min=c.get("eta_min", 1e-7))
        if name == "multistep":
            return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(c.get("milestones", [])),
                                                        gamma=c.get("gamma", 0.5))
        if name == "constant":
            return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        raise ConfigError(f"model.scheduler.name={name!r}: use cosine, multistep or constant")

    # ----- losses -------------------------------------------------------------------------------------------
    def compose_loss(self, terms: dict[str, torch.Tensor], stage: str = "generator", **context: Any) -> torch.Tensor:
        """Sum of the module's named loss ``terms`` and those of every callback with a ``loss_terms`` method
        (``stage``: which network is being optimised; ``context``: lr, hr, outputs...). Logs every term."""
        trainer = self._trainer
        terms = dict(terms)
        if trainer is not None:
            for cb in trainer.callbacks:
                add = getattr(cb, "loss_terms", None)
                if not callable(add):
                    continue
                extra = add(trainer, self, stage=stage, **context) or {}
                clash = sorted(set(extra) & set(terms))
                if clash:
                    raise RuntimeError(f"{type(cb).__name__} adds loss terms {clash} that the module already has")
                terms.update(extra)
        total = torch.stack([t.float() for t in terms.values()]).sum()
        if trainer is not None:
            prefix = "train" if stage == "generator" else f"train/{stage}"
            self.log_dict({f"{prefix}/{k}": v.detach().float() for k, v in terms.items()})
            self.log(f"{prefix}/loss", total.detach(), prog_bar=stage == "generator")
        return total
