"""Quantization-aware training to a real int8 model (``compression=qat``).

In ``setup(stage="fit")`` (after every earlier compression callback, before the optimiser is built): capture the
generator in training form, ``prepare_qat_pt2e``; ``pl_module.generator`` becomes the fake-quantized graph and
training goes on as usual (every module: SR, SRGAN's generator, multi-exit with every exit). Observers stop after
``freeze_observers_after`` steps and batch norm uses its running statistics after ``freeze_bn_after`` steps.
Validation sees the fake-quantized model. At the end of fit the graph is converted (``convert_pt2e``), the int8
model written and measured (:meth:`~lightning_sr.compression.quantization.Quantization.finish`), and the generator
goes back to the fp32 model with the trained weights (the run's final metrics).

With a callback still changing the structure at step 0 (one that declares ``changes_structure_until``: channel
sparsity learning gates with ``start_step: 0`` and a mid-run ``prune_at_step``, as in ``experiment=gan_slimming``),
the gated generator is fake-quantized eagerly from the first step (:mod:`lightning_sr.transforms.eager_quant`, the
same fake quantizers); at the removal they come off (the ``before_structure_change`` hook), the slim generator is
captured and prepared, and the activation ranges learned so far are carried into the graph, which trains on to the
end. ``start_step >= prune_at_step`` keeps the late join (fp32 until the removal).

A checkpoint taken during QAT holds the prepared graph's state; a resumed run captures and prepares the same graph
again in ``setup`` before Lightning loads it (``trainer.ckpt_path``), and re-applies the freezing it had reached.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from torch import nn

from lightning_sr.checkpoint import QAT_KEY, load_fp32_state
from lightning_sr.compression.base import rebuild_optimizers, resumed_state, short
from lightning_sr.compression.quantization import Quantization, eager_quant, pt2e_quant
from lightning_sr.errors import check, require
from lightning_sr.networks import build_generator
from lightning_sr.networks.graph import GraphGenerator

log = logging.getLogger(__name__)


class QAT(Quantization):
    """Quantization-aware training: the generator trains fake-quantized, then converts to int8 (module docstring)."""

    name = "qat"
    qat = True

    def __init__(self, freeze_observers_after: int | None = None, freeze_bn_after: int | None = None,
                 start_step: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        for k, v in (("freeze_observers_after", freeze_observers_after), ("freeze_bn_after", freeze_bn_after)):
            check(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1), f"{self.key}.{k}", v,
                  "is impossible; use null (never) or a number of QAT steps >= 1 (observers need data first)")
        check(isinstance(start_step, int) and not isinstance(start_step, bool) and start_step >= 0,
              f"{self.key}.start_step", start_step, "is impossible; use 0 (quantize from the start) or the step at "
              "which QAT joins (after a warm-up)")
        self.freeze_observers_after, self.freeze_bn_after = freeze_observers_after, freeze_bn_after
        self.join_step = int(start_step)  # configured: the step QAT joins at
        self.start_step: int | None = None  # the step the generator was actually captured at (None: not yet)
        self.frozen = {"observers": False, "bn": False}
        self.outputs: list[str] = []
        self.eager = False  # fake-quantizing the gated generator eagerly until the channel removal
        self.eager_states: dict[str, Any] | None = None  # its fake quantizers' ranges, once taken off
        self._resumed_attached: dict[str, Any] | None = None  # their ranges in a checkpoint taken while attached
        self._gen_ref: nn.Module | None = None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "freeze_observers_after": self.freeze_observers_after,
                "freeze_bn_after": self.freeze_bn_after, "start_step": self.join_step}

    def prepared(self, pl_module: L.LightningModule):
        gen = getattr(pl_module, "generator", None)
        return gen.captured if isinstance(gen, GraphGenerator) and self.start_step is not None else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:

        if stage != "fit" or self.prepared(pl_module) is not None:
            return
        self.preflight(trainer, pl_module)
        resume = trainer.ckpt_path
        if resume:
            self.load_state_dict(resumed_state(resume, self.state_key))
        if self.eager and self.eager_states is not None and self.start_step is None:
            return  # resumed between the channel removal and the capture: the next batch captures, as it would have
        if self.start_step is None and self._gates_pending(trainer):  # quantized from step 0, gates learned eagerly
            self.eager = True
            self.start_eager(trainer, pl_module, resumed=bool(resume))
            return
        if self.start_step is None and self.join_step > 0:
            log.info("%s: QAT joins at step %d (until then the generator trains in fp32)", self.name, self.join_step)
            return  # captured in on_train_batch_start when the step is reached
        self.capture(trainer, pl_module, resumed=bool(resume) and self.start_step is not None)

    @staticmethod
    def _structure_changers(trainer: L.Trainer) -> list:
        """Callbacks that still change the generator's structure mid-run (they declare ``changes_structure_until``)."""
        return [cb for cb in trainer.callbacks if getattr(cb, "changes_structure_until", lambda: None)() is not None]

    def _gates_pending(self, trainer: L.Trainer) -> bool:
        return self.join_step == 0 and bool(self._structure_changers(trainer))

    def start_eager(self, trainer: L.Trainer, pl_module: L.LightningModule, resumed: bool) -> None:
        """Fake-quantize the (gated) generator in place until the structure is final."""
        gen = self.check_module(pl_module)
        gen.to(trainer.strategy.root_device)
        if not resumed:
            self.warn_if_untrained(trainer, pl_module)
            self.open_entry(trainer, pl_module, fake_quant_from_step=int(trainer.global_step))
        self.log_entry()
        n = eager_quant.attach(gen, self.settings)
        self._gen_ref = gen
        if resumed and self._resumed_attached:
            eager_quant.load_states(gen, self._resumed_attached)
        log.info("%s: %d layers of the gated generator fake-quantized from step %d (eager) until the channel "
                 "removal", self.name, n, trainer.global_step)

    def before_structure_change(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Declared hook, called by a callback about to change the generator's structure: take the eager fake
        quantizers off (channel surgery and its tracing see the plain model); their ranges are kept."""
        if self.eager and self.eager_states is None:
            self.eager_states = eager_quant.detach(pl_module.generator)

    def preflight(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().preflight(trainer, pl_module)
        self.check_after_structure(trainer, pl_module)

    def check_after_structure(self, trainer: L.Trainer, pl_module: L.LightningModule | None = None) -> None:
        """QAT joins after every structural change: mid-run channel removal (channel sparsity) must come first, and
        a generator replaced mid-run cannot be re-wrapped by DDP."""
        module = pl_module if pl_module is not None else trainer.lightning_module
        spb = max(1, int(getattr(module, "optimizer_steps_per_batch", 1) or 1))
        first = -(-self.join_step // spb) * spb  # batches start at multiples of the optimiser steps per batch
        require(not trainer.max_steps or trainer.max_steps < 0 or first < trainer.max_steps,
                f"{self.key}.start_step={self.join_step} is not before the last batch (trainer.max_steps="
                f"{trainer.max_steps}, {spb} optimiser step(s) per batch): QAT would never train; use a smaller "
                f"start_step (0: from the start)")
        require(not (self.join_step > 0 and trainer.world_size > 1),
                f"{self.key}.start_step={self.join_step} replaces the generator in the middle of a multi-process run "
                f"(DDP wraps it once); use start_step=0, or join on one device")
        for cb in trainer.callbacks:
            until = getattr(cb, "changes_structure_until", lambda: None)()
            if until is None or cb is self:
                continue
            key = f"compression.{cb.name}.prune_at_step"
            if self.join_step == 0:  # fake-quantized eagerly until the removal, then captured: a batch must follow
                first = -(-int(until) // spb) * spb
                require(until > 0 and first < (trainer.max_steps or 0),
                        f"{self.key}.start_step=0 quantizes the gated network from the start and captures it after "
                        f"the channel removal, but {key}={until if until > 0 else 'null'} removes the channels at "
                        f"the last batch (trainer.max_steps={trainer.max_steps}): set {key}=N before the last batch "
                        f"(e.g. 75 % of the run) so the slim int8 network trains quantized after it")
                continue
            require(until > 0 and until <= self.join_step,
                    f"{self.key}.start_step={self.join_step} would quantize while channel gates are still learned"
                    f" ({key}={'null' if until <= 0 else until}: the channels are removed "
                    f"{'at the last step' if until <= 0 else f'at step {until}'}), and the x86 quantizer cannot "
                    f"annotate gated convolutions; use {self.key}.start_step=0 (fake-quantized from the start, "
                    f"eagerly until the removal) or set {key}=N and {self.key}.start_step>=N (late join)")

    def capture(self, trainer: L.Trainer, pl_module: L.LightningModule, resumed: bool) -> None:
        """Capture the generator, prepare it for QAT and put the fake-quantized graph in its place."""
        gen = self.check_module(pl_module)
        device = trainer.strategy.root_device
        resume = trainer.ckpt_path if resumed else None
        if not resumed:
            if self.eager:  # the entry was opened when fake quantization started (the log holds it already)
                self.entry = {**(self.entry or {}), "captured_at_step": int(trainer.global_step)}
            else:
                gen.to(device)
                self.warn_if_untrained(trainer, pl_module)
                self.open_entry(trainer, pl_module)
            self.start_step = int(trainer.global_step)
        self.log_entry()
        gm, self.outputs, features = pt2e_quant.capture(gen.cpu(), training=True)
        prepared = pt2e_quant.prepare(gm, self.settings, qat=True)
        if self.eager_states is not None and not resumed:  # the ranges the gated network learned go on
            carried = eager_quant.carry_ranges(prepared, self.eager_states)
            eager_quant.observe_weights(prepared)  # the folded, pruned weights' own per-channel ranges
            if self.entry is not None:
                self.entry["ranges_carried"] = len(carried)
            log.info("%s: activation ranges of %d layers carried from the eager fake quantization", self.name,
                     len(carried))
        missed = self.check_coverage(prepared, gen)
        wrapper = pt2e_quant.wrap_prepared(prepared, self.outputs, features, gen)
        wrapper.train(True)
        pt2e_quant.freeze(prepared, observers=self.frozen["observers"], bn=self.frozen["bn"])
        pl_module.generator = wrapper.to(device)
        if self.entry is not None:
            self.entry["fp32_layers_left"] = missed
        log.info("%s: generator captured and prepared for QAT (%s)%s", self.name, pl_module.generator_spec,
                 f", resuming {resume}" if resume else "")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        gm = self.prepared(pl_module)
        if gm is None:
            waiting = self.eager and self.eager_states is None  # the gated network trains fake-quantized eagerly
            if self.start_step is None and not self.finished and not waiting \
                    and trainer.global_step >= self.join_step:
                self.capture(trainer, pl_module, resumed=False)  # QAT joins after the warm-up or the removal
                rebuild_optimizers(trainer)  # new parameters; the LR schedule goes on where it was
                gm = self.prepared(pl_module)
            if gm is None:
                return
        done = int(trainer.global_step) - int(self.start_step or 0)
        for what, after in (("observers", self.freeze_observers_after), ("bn", self.freeze_bn_after)):
            if after is not None and done >= after and not self.frozen[what]:
                self.frozen[what] = True
                pt2e_quant.freeze(gm, **{what: True})
                log.info("%s: %s frozen at step %d", self.name, "observers" if what == "observers"
                         else "batch-norm statistics", trainer.global_step)
        if not getattr(gm, pt2e_quant.TRAINING_ATTR, False):  # Lightning restored the flags only after validation
            pl_module.generator.train(True)
        else:  # a resumed run's checkpoint may hold the observers off (written after a validation)
            pt2e_quant.sync_observers(gm)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self.prepared(pl_module) is not None:
            checkpoint[QAT_KEY] = {"prefix": "captured.", "settings": self.settings.describe(True)}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        prepared = self.prepared(pl_module)
        if self.start_step is None and not self.finished:
            log.warning("%s: the run ended at step %d before QAT joined (start_step=%d): no int8 model", self.key,
                        trainer.global_step, self.join_step)
        if prepared is None or self.finished:
            return
        wrapper = pl_module.generator
        device = next(wrapper.parameters()).device
        fp32 = build_generator(pl_module.generator_spec)
        load_fp32_state(fp32, {k: v.detach().cpu() for k, v in prepared.state_dict().items()})
        pl_module.generator = fp32.to(device)  # the run's final metrics: the fp32 model with the QAT weights
        details = {"qat_steps": int(trainer.global_step) - int(self.start_step or 0),
                   "frozen": dict(self.frozen)}
        self.finish(trainer, pl_module, prepared, self.outputs, details)
        if self.entry is not None:
            log.info("%s: %s -> int8 %s", self.name, short(self.entry["before"]), self.entry.get("after"))

    def state_dict(self) -> dict[str, Any]:
        out = {**super().state_dict(), "start_step": self.start_step, "frozen": dict(self.frozen), "eager": self.eager}
        if self.eager and self.start_step is None:  # the eager fake quantizers' ranges (taken off, or attached)
            out["eager_states"] = self.eager_states
            if self.eager_states is None and self._gen_ref is not None:
                out["eager_attached"] = eager_quant.states(self._gen_ref)
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        st = state_dict.get("start_step")
        self.start_step = None if st is None else int(st)
        self.frozen = {**self.frozen, **(state_dict.get("frozen") or {})}
        self.eager = bool(state_dict.get("eager", self.eager))
        self.eager_states = state_dict.get("eager_states", self.eager_states)
        self._resumed_attached = state_dict.get("eager_attached", self._resumed_attached)



__all__ = ["QAT"]
