"""Channel sparsity: learn which channels a network can lose, then remove them physically.

Every prunable channel group (Torch-Pruning's dependency analysis, the same as ``compression=channel_prune``:
the trunk width of an SRResNet, coupled by its residual additions, is ONE group; each block's inner channels are
another; every upsampler stage's shuffled channels another) gets one learnable gate per channel
(:mod:`lightning_sr.networks.gates`): the output of every layer that writes the group's channels is multiplied by it,
right after the convolution, or after its BatchNorm when one follows (the gate then scales the BatchNorm's weight and
bias: the BatchNorm weights become the gates when it is folded). The trunk is included: GAN Slimming never prunes
it, we do. Gates start at 1, live on an optimiser of their own (``gate_optimizer``: ``sgd``, GAN Slimming's
``gs.py``: momentum 0.5, ``gate_lr`` 0.1, cosine-annealed to 0 over the gating phase; or ``adam``,
``gate_lr`` 0.01 (with ``gate_schedule: constant``: the recipe of earlier versions), which is not a proximal-gradient method for the L1 objective: its step does not scale with the
gradient) and are pushed to zero by ``method``:

* ``proximal`` (GAN Slimming, default): after every step a soft threshold, ``g <- sign(g) max(|g| - rho lr, 0)``
  with the gate optimiser's current ``lr`` (a proximal-gradient step for ``rho * sum |g|``);
* ``l1`` (network slimming): a loss term ``sparsity/l1 = rho * sum |g|`` through the modules' loss hook;
* ``growing_reg`` (ASSL / SRP): no gates; the channels to remove are chosen at the start (smallest L1 norm of the
  group's filters, the same channels in every layer of a residual-coupled group, until the MAC budget
  ``target_macs`` is met) and an L2 penalty on their filters (``sparsity/growing_reg``) grows by ``reg_step`` every
  ``reg_interval`` steps until their norm is below ``reg_tolerance``: removing them is then (nearly) lossless.

At ``prune_at_step`` (default: the last step) channels whose gate is below ``threshold`` -- or, with ``target_macs``,
the smallest gates over all groups until the MACs fall to ``target_macs`` times the dense model's -- are removed
through the physical pruning code of ``channel_prune`` (one path: groups, MAC counting and removal are
:mod:`lightning_sr.transforms.channels`), every gate is folded into its layer (exact: it
only scales that layer's outputs), and training goes on as fine-tuning when steps remain. The final checkpoint is a
plain pruned model that reloads with ``weights_only=True``; a checkpoint taken while gates learn reloads with its
gates (:func:`lightning_sr.networks.registry.attach_saved_gates`).

Logged at every validation, to every logger: gate quantiles (``sparsity/gate_q{0,25,50,75,100}``), the fraction of
gates under ``threshold`` per group (``sparsity/<group>/below``), and the MACs the model would have if pruned now
(``sparsity/macs_if_pruned``, ``sparsity/macs_ratio_if_pruned``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from torch import nn

from lightning_sr.compression.base import (
    CompressionCallback,
    adapt_generator_on_load,
    generator_of,
    log_values,
    rebuild_optimizers,
    require_sr_module,
    restore_entry,
    restore_structure,
    resumed_state,
    short,
)
from lightning_sr.errors import check, check_choice, require
from lightning_sr.networks.gates import GATE, attach_gate, detach_gate
from lightning_sr.strategies import keep_gates_through_layer_sync
from lightning_sr.transforms.channels import (
    SPARSITY_KEY,
    Group,
    MacCounter,
    find_groups,
    macs_small,
    out_filters,
    remove_channels,
    sparsity_protect,
)

log = logging.getLogger(__name__)

KEY = SPARSITY_KEY
METHODS = ("proximal", "l1", "growing_reg")
GATE_OPTIMIZERS = {"sgd": 0.1, "adam": 0.01}  # name: default gate_lr (GAN Slimming's gs.py: SGD, lr 0.1, momentum 0.5)
GATE_SCHEDULES = ("cosine", "constant")


def slimming_under_ddp_message(world_size: int) -> str:
    """Channel sparsity followed by QAT (GAN Slimming): the removal happens mid-run and QAT then captures the slim
    network, i.e. the model DDP wraps is replaced during the run; on one process only."""
    return (f"{KEY} with compression.qat (GAN Slimming: channels removed mid-run, then the slim network captured "
            f"for QAT) is not supported under DDP ({world_size} processes); run it on one process "
            f"(trainer.devices=1, or trainer=cpu / trainer=gpu)")


class ChannelSparsity(CompressionCallback):
    """Learnable channel gates + a sparsity method, then physical removal (see the module docstring)."""

    name = "channel_sparsity"

    def __init__(self, method: str = "proximal", rho: float = 0.01, gate_lr: float | None = None,
                 gate_optimizer: str = "sgd", gate_momentum: float = 0.5, gate_schedule: str = "cosine",
                 threshold: float | None = 0.05, target_macs: float | None = None, prune_at_step: int | None = None,
                 protect: list[str] | None = None, reg_step: float = 1e-4, reg_interval: int = 10,
                 reg_tolerance: float = 1e-3, evaluate: bool = True, eval_images: int | None = None):
        check_choice(f"{KEY}.method", method, METHODS)
        check(isinstance(rho, (int, float)) and not isinstance(rho, bool) and rho >= 0, f"{KEY}.rho", rho,
              "is impossible; use a sparsity strength >= 0 (GAN Slimming's default is 0.01)")
        check_choice(f"{KEY}.gate_optimizer", gate_optimizer, GATE_OPTIMIZERS)
        check_choice(f"{KEY}.gate_schedule", gate_schedule, GATE_SCHEDULES)
        check(gate_lr is None or (isinstance(gate_lr, (int, float)) and gate_lr > 0), f"{KEY}.gate_lr", gate_lr,
              "must be > 0, or null (the optimiser's default: sgd 0.1, adam 0.01)")
        check(isinstance(gate_momentum, (int, float)) and 0 <= gate_momentum < 1, f"{KEY}.gate_momentum",
              gate_momentum, "must be in [0, 1) (GAN Slimming: 0.5)")
        check(threshold is None or (isinstance(threshold, (int, float)) and 0 < threshold < 1), f"{KEY}.threshold",
              threshold, "is impossible; use a gate value in (0, 1) below which a channel is removed, or null")
        check(target_macs is None or (isinstance(target_macs, (int, float)) and 0 < target_macs <= 1),
              f"{KEY}.target_macs", target_macs,
              "is impossible; use the fraction of the dense model's MACs to keep, in (0, 1] (e.g. 0.5), or null")
        check(threshold is not None or target_macs is not None, f"{KEY}.threshold", threshold,
              "and target_macs are both null: give one (which channels to remove at the end)")
        check(method != "growing_reg" or target_macs is not None, f"{KEY}.target_macs", target_macs,
              "must be set for method=growing_reg (the channels to push to zero are chosen to meet it)")
        check(prune_at_step is None or (isinstance(prune_at_step, int) and prune_at_step > 0), f"{KEY}.prune_at_step",
              prune_at_step, "is impossible; use a positive step or null (the last step)")
        check(protect is None or (isinstance(protect, (list, tuple)) and all(isinstance(p, str) for p in protect)),
              f"{KEY}.protect", protect, "must be null (the model's default) or a list of module names")
        for key, v in (("reg_step", reg_step), ("reg_tolerance", reg_tolerance)):
            check(isinstance(v, (int, float)) and v > 0, f"{KEY}.{key}", v, "must be > 0")
        check(isinstance(reg_interval, int) and reg_interval > 0, f"{KEY}.reg_interval", reg_interval, "must be > 0")
        self.method, self.rho = method, float(rho)
        self.gate_optimizer, self.gate_momentum, self.gate_schedule = gate_optimizer, float(gate_momentum), gate_schedule
        self.gate_lr = float(GATE_OPTIMIZERS[gate_optimizer] if gate_lr is None else gate_lr)
        self.threshold = None if threshold is None else float(threshold)
        self.target_macs = None if target_macs is None else float(target_macs)
        self.prune_at_step, self.protect = prune_at_step, None if protect is None else list(protect)
        self.reg_step, self.reg_interval, self.reg_tolerance = float(reg_step), reg_interval, float(reg_tolerance)
        super().__init__(evaluate, eval_images)
        self.groups: list[Group] = []
        self.pruned = False
        self.reg = 0.0
        self._opt: torch.optim.Optimizer | None = None
        self._opt_state: dict | None = None
        self._dense_macs: int | None = None
        self._counter: MacCounter | None = None

    def config(self) -> dict[str, Any]:
        return {"method": self.method, "rho": self.rho, "gate_optimizer": self.gate_optimizer, "gate_lr": self.gate_lr,
                "gate_momentum": self.gate_momentum, "gate_schedule": self.gate_schedule, "threshold": self.threshold,
                "target_macs": self.target_macs, "prune_at_step": self.prune_at_step, "protect": self.protect}

    # ----- set-up: gates on every group ---------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.groups or self.pruned:
            return
        resume = trainer.ckpt_path
        if resume:
            state = resumed_state(resume, self.state_key)
            if state.get("pruned"):  # pruned mid-run: the checkpoint holds the pruned structure, without gates
                restore_structure(pl_module, str(resume))
                self.load_state_dict(state)
                self.log_entry()
                return
        self.preflight(trainer, pl_module)
        gen = generator_of(pl_module, KEY)
        gen.to(trainer.strategy.root_device)
        self._dense_macs = macs_small(gen)
        self.groups = find_groups(gen, self.protect)
        require(bool(self.groups), f"{KEY}: nothing to gate in {type(gen).__name__}: every channel group contains a "
                                   f"protected layer (protect={self.protect or sparsity_protect(gen)})")
        if self.method == "growing_reg":
            self._choose_for_growing_reg(gen)
        else:
            for g in self.groups:
                g.gate = nn.Parameter(torch.ones(g.channels, device=trainer.strategy.root_device))
                g.gate.lsr_own_optimizer = True
                for layer, rep in g.writers:
                    attach_gate(layer, g.gate, rep)
            keep_gates_through_layer_sync(trainer.strategy)  # sync_batchnorm replaces the gated BatchNorms next
        if not resume:
            before = self.measure(trainer, pl_module)
            self.entry = {"technique": self.name, **self.config(), "groups": len(self.groups),
                          "gated_channels": sum(g.channels for g in self.groups), "before": before}
        self._warn_if_nothing_can_slim(trainer, pl_module)
        log.info("%s: %d channel groups (%d channels), method=%s", KEY, len(self.groups),
                 sum(g.channels for g in self.groups), self.method)

    def preflight(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_sr_module(pl_module, KEY)
        generator_of(pl_module, KEY)
        require(self.prune_at_step is None or not trainer.max_steps or trainer.max_steps < 0
                or self.prune_at_step <= trainer.max_steps,
                f"{KEY}.prune_at_step={self.prune_at_step} is after the last step (trainer.max_steps="
                f"{trainer.max_steps}): nothing would be removed; use a step <= {trainer.max_steps} or null (the last)")
        mid_run = self.prune_at_step is not None and self.prune_at_step < (trainer.max_steps or 0)
        quantizes_after = any(callable(getattr(cb, "check_after_structure", None)) for cb in trainer.callbacks)
        require(not (trainer.world_size > 1 and quantizes_after), slimming_under_ddp_message(trainer.world_size))
        require(not (mid_run and trainer.world_size > 1),
                f"{KEY}.prune_at_step={self.prune_at_step} prunes in the middle of a multi-process run, which would "
                f"rebuild every rank's model under DDP; prune at the end (null) and fine-tune with "
                f"model.init_from=<the pruned checkpoint>")

    def _warn_if_nothing_can_slim(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """With a threshold (no MAC target), say before training when the L1 shrink of the whole gating phase cannot
        carry a gate from 1 to the threshold: such a run removes only channels the loss itself drives to zero."""
        if self.method != "proximal" or self.threshold is None or self.target_macs is not None \
                or not self._gating_end(trainer) or not trainer.is_global_zero:
            return
        shrink = self.total_shrink(self._gating_end(trainer), getattr(pl_module, "optimizer_steps_per_batch", 1))
        if shrink < 1 - self.threshold:
            log.warning("%s: rho x the gate learning rates over the %d gating steps shrinks a gate by %.3g in all, "
                        "less than the %.3g from 1 to threshold=%s: the run may remove no channel; raise rho or "
                        "gate_lr, train longer, or set target_macs (a MAC budget)", KEY, self._gating_end(trainer),
                        shrink, 1 - self.threshold, self.threshold)

    # ----- the gates' optimiser -------------------------------------------------------------------------------------
    def _gates(self) -> list[nn.Parameter]:
        return [g.gate for g in self.groups if g.gate is not None]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The strategy may have replaced gated layers since ``setup`` (sync_batchnorm): follow them by name, and stop
        with one line if a replacement lost its gate (the gates would be trained while the model ignored them)."""
        if self.pruned or not self._gates():
            return
        gen = pl_module.generator
        for g in self.groups:
            now = [gen.get_submodule(name) for name in g.writer_names]
            for name, layer in zip(g.writer_names, now, strict=True):
                require(getattr(layer, GATE, None) is g.gate,
                        f"{KEY}: the channel gate of generator.{name} was lost when the strategy replaced the layer "
                        f"({type(layer).__name__}); use lightning_sr.strategies.GateKeepingSyncBatchNorm as the "
                        f"Trainer's layer sync plugin, or trainer.sync_batchnorm=false")
            g.writers = [(layer, rep) for layer, (_, rep) in zip(now, g.writers, strict=True)]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pruned or not self._gates():
            return
        if self.gate_optimizer == "sgd":
            self._opt = torch.optim.SGD(self._gates(), lr=self.gate_lr, momentum=self.gate_momentum)
        else:
            self._opt = torch.optim.Adam(self._gates(), lr=self.gate_lr)
        if self._opt_state:
            self._opt.load_state_dict(self._opt_state)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        """A run resumed exactly at prune_at_step (a checkpoint saved before the removal) prunes now, before any later
        callback (QAT joining at that step) sees the gated model."""
        if not self.pruned and self.groups and self.prune_at_step is not None \
                and trainer.global_step >= self.prune_at_step:
            self.prune(trainer, pl_module)

    def loss_terms(self, trainer, pl_module, stage: str = "generator", **context) -> dict[str, torch.Tensor]:
        if stage != "generator" or self.pruned:
            return {}
        if self.method == "l1" and self.rho > 0:
            return {"sparsity/l1": self.rho * sum(g.abs().sum() for g in self._gates())}
        if self.method == "growing_reg" and self.reg > 0:
            pen = sum((out_filters(m)[self._rows(g, rep)] ** 2).sum() for g in self.groups if g.chosen
                      for m, rep in g.filters)
            return {"sparsity/growing_reg": self.reg * pen}
        return {}

    @staticmethod
    def _rows(g: Group, rep: int) -> list[int]:
        return [c * rep + k for c in g.chosen for k in range(rep)]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.pruned:
            return
        if self._opt is not None:
            spb = getattr(pl_module, "optimizer_steps_per_batch", 1)  # the batch started spb optimiser steps ago
            lr = self.current_gate_lr(trainer.global_step - spb, self._gating_end(trainer))
            for group in self._opt.param_groups:
                group["lr"] = lr
            self._opt.step()
            self._opt.zero_grad(set_to_none=True)
            if self.method == "proximal" and self.rho > 0:
                t = self.rho * lr
                with torch.no_grad():
                    for g in self._gates():
                        g.copy_(torch.sign(g) * torch.clamp(g.abs() - t, min=0))
        if self.method == "growing_reg" and trainer.global_step % self.reg_interval == 0:
            if self._chosen_norm() > self.reg_tolerance:
                self.reg += self.reg_step
        end = self.prune_at_step or trainer.max_steps
        if end and trainer.global_step >= end:
            self.prune(trainer, pl_module)

    def _gating_end(self, trainer: L.Trainer) -> int:
        """The optimiser step the gates learn until (0 when unknown: an epoch-based run without max_steps, where the
        gate lr stays constant)."""
        return max(0, int(self.prune_at_step or trainer.max_steps or 0))

    def current_gate_lr(self, step: int, end: int) -> float:
        """The gate optimiser's learning rate at optimiser step ``step`` of a gating phase ending at ``end``: cosine
        from ``gate_lr`` to 0 (as gs.py anneals its gamma optimiser over the run), or constant. Stateless, so a
        resumed run continues the schedule exactly."""
        if self.gate_schedule == "constant" or end <= 0:
            return self.gate_lr
        return self.gate_lr * 0.5 * (1 + math.cos(math.pi * min(max(step, 0), end) / end))

    def total_shrink(self, end: int, steps_per_batch: int = 1) -> float:
        """How far the proximal steps alone move a gate over the gating phase (rho x the sum of the learning rates):
        a gate starting at 1 cannot fall below ``threshold`` unless its gradient helps when this is < 1 - threshold."""
        if self.method != "proximal":
            return 0.0
        return self.rho * sum(self.current_gate_lr(k, end) for k in range(0, end, steps_per_batch))

    # ----- choosing and removing -----------------------------------------------------------------------------------
    def _chosen_norm(self) -> float:
        vals = [float(out_filters(m)[self._rows(g, rep)].norm()) for g in self.groups if g.chosen
                for m, rep in g.filters]
        return max(vals, default=0.0)

    def _choose_for_growing_reg(self, gen: nn.Module) -> None:
        """The channels with the smallest filter L1 norm over the group, until the MAC budget is met."""
        scores = {}
        for g in self.groups:  # a channel's rows are consecutive (r^2 of them before a PixelShuffle)
            scores[g.name] = sum(out_filters(m).detach().abs().reshape(g.channels, -1).sum(1).cpu()
                                 for m, _ in g.filters)
        removal = self._by_budget(gen, scores)
        for g in self.groups:
            g.chosen = removal.get(g.name, [])

    def _by_threshold(self) -> dict[str, list[int]]:
        out = {}
        for g in self.groups:
            vals = g.gate.detach().abs().cpu()
            idx = [int(i) for i in torch.nonzero(vals < self.threshold).flatten()]
            if len(idx) >= g.channels:  # every group keeps its strongest channel
                idx.remove(int(vals.argmax()))
            out[g.name] = idx
        return out

    def _by_budget(self, gen: nn.Module, scores: dict[str, torch.Tensor]) -> dict[str, list[int]]:
        """The fewest lowest-scoring channels (over all groups) whose removal brings the MACs to target_macs x dense."""
        ranked = sorted(((float(v), g.name, i) for g in self.groups for i, v in enumerate(scores[g.name])))
        cap = {g.name: g.channels - 1 for g in self.groups}

        def removal_of(k: int) -> dict[str, list[int]]:
            out: dict[str, list[int]] = {g.name: [] for g in self.groups}
            for _, name, i in ranked:
                if k <= 0:
                    break
                if len(out[name]) < cap[name]:
                    out[name].append(i)
                    k -= 1
            return out

        budget = self.target_macs * (self._dense_macs or macs_small(gen))
        if self._counter is None or self._counter.groups is not self.groups:
            self._counter = MacCounter(gen, self.groups)
        lo, hi = 0, sum(cap.values())
        if self._macs_after(gen, removal_of(hi)) > budget:
            log.warning("%s: even removing all but one channel per group leaves more than target_macs=%s",
                        KEY, self.target_macs)
            return removal_of(hi)
        while lo < hi:  # the smallest k that meets the budget
            mid = (lo + hi) // 2
            if self._macs_after(gen, removal_of(mid)) <= budget:
                hi = mid
            else:
                lo = mid + 1
        return removal_of(lo)

    def _macs_after(self, gen: nn.Module, removal: dict[str, list[int]]) -> int:
        if self._counter is None or self._counter.groups is not self.groups:
            self._counter = MacCounter(gen, self.groups)
        return self._counter.macs(removal)

    def removal_now(self, gen: nn.Module) -> dict[str, list[int]]:
        if self.method == "growing_reg":
            return {g.name: list(g.chosen) for g in self.groups}
        if self.target_macs is not None:
            return self._by_budget(gen, {g.name: g.gate.detach().abs().cpu() for g in self.groups})
        return self._by_threshold()

    def changes_structure_until(self) -> int | None:
        """Declared capability (read by QAT): gates are learned until ``prune_at_step`` (0: the last step); None
        once the channels are removed or nothing is gated."""
        if self.pruned or not self.groups:
            return None
        return int(self.prune_at_step or 0)

    def prune(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for cb in trainer.callbacks:  # declared hook: e.g. eager fake quantization comes off before the surgery
            hook = getattr(cb, "before_structure_change", None)
            if hook is not None and cb is not self:
                hook(trainer, pl_module)
        gen = pl_module.generator
        removal = self.removal_now(gen)
        changed = remove_channels(gen, self.groups, removal)
        for g in self.groups:
            for layer, _ in g.writers:
                detach_gate(layer)
        self.pruned, self._opt = True, None
        after = self.measure(trainer, pl_module)
        self.entry = {**(self.entry or {"technique": self.name, **self.config()}), "at_step": trainer.global_step,
                      "removed_channels": {k: len(v) for k, v in removal.items() if v},
                      "pruned_out_channels": changed, "after": after}
        if self._dense_macs:
            self.entry["macs_ratio"] = round(macs_small(pl_module.generator) / self._dense_macs, 4)  # same input as the dense count
        self.log_entry()
        adapt_generator_on_load(pl_module)
        self._log(trainer, {f"compression/{self.name}/{k}_after": float(after[k]) for k in ("psnr", "params", "macs")
                            if k in after})
        log.info("%s: pruned at step %d: %s", KEY, trainer.global_step, short(after))
        if trainer.max_steps and trainer.global_step < trainer.max_steps:  # fine-tuning goes on: new parameters
            rebuild_optimizers(trainer)  # new parameters; the LR schedule goes on where it was

    # ----- what is logged --------------------------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pruned or trainer.sanity_checking or not self.groups:
            return
        out: dict[str, float] = {}
        if self._gates():
            allg = torch.cat([g.detach().abs().flatten().cpu() for g in self._gates()])
            for q in (0, 25, 50, 75, 100):
                out[f"sparsity/gate_q{q}"] = float(torch.quantile(allg, q / 100))
            if self.threshold is not None:
                for g in self.groups:
                    out[f"sparsity/{g.name}/below"] = float((g.gate.detach().abs() < self.threshold).float().mean())
                out["sparsity/below_threshold"] = float((allg < self.threshold).sum())
            out["sparsity/gates"] = float(allg.numel())
            out["sparsity/gate_lr"] = self.current_gate_lr(trainer.global_step, self._gating_end(trainer))
        else:
            out["sparsity/reg"] = self.reg
            out["sparsity/chosen_norm"] = self._chosen_norm()
        macs = self._macs_after(pl_module.generator, self.removal_now(pl_module.generator))
        out["sparsity/macs_if_pruned"] = float(macs)
        if self._dense_macs:
            out["sparsity/macs_ratio_if_pruned"] = macs / self._dense_macs
        self._log(trainer, out)

    @staticmethod
    def _log(trainer: L.Trainer, values: dict[str, float]) -> None:
        log_values(trainer, values, "sparsity")

    # ----- checkpoints ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned, "entry": self.entry, "reg": self.reg,
                "chosen": {g.name: g.chosen for g in self.groups},
                "opt_state": self._opt.state_dict() if self._opt is not None else self._opt_state,
                "dense_macs": self._dense_macs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pruned = bool(state_dict.get("pruned", False))
        self.entry = restore_entry(self.entry, state_dict.get("entry"))
        self.reg = float(state_dict.get("reg", 0.0))
        self._opt_state = state_dict.get("opt_state")
        self._dense_macs = state_dict.get("dense_macs", self._dense_macs)
        for g in self.groups:
            g.chosen = list((state_dict.get("chosen") or {}).get(g.name, g.chosen))

