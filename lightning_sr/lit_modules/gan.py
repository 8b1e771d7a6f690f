"""What the GAN modules share (SRGAN, TecoGAN): manual optimisation of a generator and a discriminator, each with its
own Adam and LR schedule, and fixed pretrained networks (VGG19 for the perceptual/feature loss) that stay out of
checkpoints.

Steps: with two optimisers ``trainer.global_step`` counts optimiser steps, so one batch advances it by 2
(``optimizer_steps_per_batch``; 1 for a module built without a discriminator, FRVSR). The LR schedules are stepped
once per batch. Under DDP, toggling the two optimisers needs ``find_unused_parameters`` (the strategy turns it on for
such modules: :class:`lightning_sr.strategies.HydraDDPStrategy`).
"""

from __future__ import annotations

from typing import Any

import torch

from lightning_sr.losses import GANLoss


class GANMixin:
    """Mixin of a :class:`~lightning_sr.lit_modules.base.TaskModule` with a ``discriminator`` (``None``: no GAN)."""

    # attributes holding fixed pretrained networks: left out of checkpoints, put back from the module on load
    frozen_losses: tuple[str, ...] = ()

    def init_gan(self, gan: dict | None, optim_d: dict | None, weight: float) -> None:
        """Manual optimisation, the adversarial loss (``gan.type``, ``gan.weight``; ``weight`` by default) and the
        discriminator's optimiser settings (``optim_d`` over ``optim``)."""
        g = dict(gan or {})
        self.automatic_optimization = False
        self.gan_loss = GANLoss(g.get("type", "vanilla"))
        self.gan_weight = float(g.get("weight", weight))
        self.optim_d_cfg = dict(optim_d or {})

    @property
    def optimizer_steps_per_batch(self) -> int:
        return 2 if getattr(self, "discriminator", None) is not None else 1

    def configure_optimizers(self):
        opt_g = self.make_optimizer(self.generator_parameters())
        if self.discriminator is None:
            return [opt_g], [self.make_scheduler(opt_g)]
        opt_d = self.make_optimizer(self.discriminator.parameters(), self.optim_d_cfg)
        return [opt_g, opt_d], [self.make_scheduler(opt_g), self.make_scheduler(opt_d)]

    def manual_step(self, opt, loss: torch.Tensor, update: bool = True) -> None:
        """One optimiser step on ``loss``; ``update=False``: the step counts but changes nothing (Adam skips
        parameters without gradients)."""
        opt.zero_grad()
        self.manual_backward(loss)
        if not update:
            opt.zero_grad(set_to_none=True)
        opt.step()

    def step_schedulers(self) -> None:
        """Every LR schedule one step (once per batch)."""
        scheds = self.lr_schedulers() or []
        for s in scheds if isinstance(scheds, list) else [scheds]:
            s.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        sd = checkpoint["state_dict"]  # the fixed VGG19 reloads from its file: keep checkpoints small
        for name in self.frozen_losses:
            for k in [k for k in sd if k.startswith(f"{name}.")]:
                del sd[k]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for name in self.frozen_losses:
            net = getattr(self, name, None)
            if net is not None:
                for k, v in net.state_dict().items():
                    checkpoint["state_dict"].setdefault(f"{name}.{k}", v)
