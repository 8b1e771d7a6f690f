"""Test-only Lightning parts, instantiated through the real Hydra config (``+callbacks.x._target_=tests.helpers.X``):
the production code paths are the ones users run; these only inject a failure or observe."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import torch

from lightning_sr.data import SRDataModule


class CrashAt(L.Callback):
    """Raise when the training batch after global step ``step`` starts, on ``rank`` (all ranks when None): a crash
    mid-run, between two batches (every callback finished the batch before, as after a kill between batches)."""

    def __init__(self, step: int, rank: int | None = None):
        self.step, self.rank = int(step), rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step and (self.rank is None or trainer.global_rank == self.rank):
            raise RuntimeError(f"simulated crash at step {trainer.global_step} on rank {trainer.global_rank}")


class KillAt(L.Callback):
    """SIGKILL this process (a real kill: no handler, no checkpoint, no metrics.json) once, at ``hook``: ``batch``
    (when the training batch after global step ``step`` starts), ``setup`` (before the compression callbacks, placed
    after this one, change anything) or ``teardown`` (after fit ended, before train.py writes metrics.json). The
    kill happens only while ``marker`` does not exist (it is created just before), so the very same command run
    again continues instead of dying again. ``rank``: under DDP, only that rank is killed (all ranks when None)."""

    def __init__(self, marker: str, step: int = 0, hook: str = "batch", rank: int | None = None):
        assert hook in ("batch", "setup", "teardown"), hook
        self.marker, self.step, self.hook, self.rank = Path(marker), int(step), hook, rank

    def _kill(self, trainer) -> None:
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    def setup(self, trainer, pl_module, stage):
        if self.hook == "setup":
            self._kill(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.hook == "batch" and trainer.global_step >= self.step:
            self._kill(trainer)

    def teardown(self, trainer, pl_module, stage):
        if self.hook == "teardown":
            self._kill(trainer)


class KeepModule(L.Callback):
    """Keeps the trained LightningModule at the end of fit (``KeepModule.last``): the in-run model, for comparing
    with what the checkpoint rebuilds."""

    last: L.LightningModule | None = None

    def on_fit_end(self, trainer, pl_module):
        KeepModule.last = pl_module


class ConstantLossTerm(L.Callback):
    """Adds a loss term ``const`` = value * mean(main output) through the modules' loss hook, and counts calls."""

    calls: list[str] = []

    def __init__(self, value: float = 0.5):
        self.value = value

    def loss_terms(self, trainer, pl_module, stage, outputs=None, **context):
        ConstantLossTerm.calls.append(f"{type(pl_module).__name__}:{stage}")
        return {"const": self.value * outputs[""].mean()}


class RecordingDataModule(SRDataModule):
    """The default datamodule, marked: proves that ``data._target_`` chooses the class."""

    instances = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingDataModule.instances += 1


def generator_snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class GanStepProbe(L.Callback):
    """Records, at every optimiser step of a GAN module, which networks have gradients and which require them,
    and snapshots both networks before training (read back by the test through ``GanStepProbe.last``)."""

    last: GanStepProbe | None = None

    def __init__(self):
        self.steps: list[dict] = []
        self.start: dict[str, dict[str, torch.Tensor]] = {}
        GanStepProbe.last = self

    def on_train_start(self, trainer, pl_module):
        self.start = {"generator": {k: v.detach().clone() for k, v in pl_module.generator.state_dict().items()},
                      "discriminator": {k: v.detach().clone()
                                        for k, v in pl_module.discriminator.state_dict().items()}}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        which = "generator" if optimizer is trainer.optimizers[0] else "discriminator"
        info = {"which": which}
        for net in ("generator", "discriminator"):
            params = list(getattr(pl_module, net).parameters())
            info[f"{net}_requires_grad"] = any(p.requires_grad for p in params)
            info[f"{net}_has_grad"] = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)
        self.steps.append(info)


class GateRecorder(L.Callback):
    """Records every channel gate's value and gradient at the end of each training batch, before the channel
    sparsity callback (placed after this one) steps its optimiser and applies the soft threshold."""

    records: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        from lightning_sr.networks.gates import GATE, gated_modules

        seen = {}
        for _, m in gated_modules(pl_module.generator):
            g = getattr(m, GATE)
            if id(g) not in seen:
                seen[id(g)] = (g.detach().clone(), None if g.grad is None else g.grad.detach().clone())
        GateRecorder.records.append({"step": trainer.global_step, "gates": list(seen.values())})
