"""SRGAN training with manual optimisation: generator (pixel + perceptual + adversarial, plus any callback's
terms) and discriminator steps on every batch. Defaults follow BasicSR's SRGAN recipe (pixel L1 1e-2,
perceptual VGG19 conv5_4 1.0, vanilla GAN 5e-3).

Steps: with two optimisers ``trainer.global_step`` counts optimiser steps, so one batch advances it by 2 and
``trainer.max_steps`` counts the same way (``optimizer_steps_per_batch = 2``). The LR schedules are stepped once
per batch and last ``max_steps / 2`` steps (they end at ``max_steps``); scheduler milestones count batches.
Under DDP, manual optimisation with the generator/discriminator toggling needs ``find_unused_parameters``
(the strategy turns it on for such modules: :class:`lightning_sr.strategies.HydraDDPStrategy`).
"""

from __future__ import annotations

from typing import Any

from lightning_sr.losses import GANLoss, PerceptualLoss, pixel_loss
from lightning_sr.models import VGGDiscriminator
from lightning_sr.modules.base import SRBaseModule


class SRGANModule(SRBaseModule):
    optimizer_steps_per_batch = 2

    def __init__(self, generator_spec: dict[str, Any], scale: int, loss: str = "l1", patch_size: int = 96,
                 pixel_weight: float = 1e-2, perceptual: dict | None = None, gan: dict | None = None,
                 discriminator: dict | None = None, optim_d: dict | None = None, **kwargs: Any):
        super().__init__(generator_spec, scale, loss=loss, patch_size=patch_size, pixel_weight=pixel_weight,
                         perceptual=perceptual, gan=gan, discriminator=discriminator, optim_d=optim_d, **kwargs)
        self.automatic_optimization = False
        p = dict(perceptual or {})
        g = dict(gan or {})
        d = dict(discriminator or {})
        self.discriminator = VGGDiscriminator(patch_size, d.get("channels", 64), norm=d.get("norm", "batch"))
        self.pixel_loss, self.pixel_weight = pixel_loss(loss), pixel_weight
        self.perceptual_weight = p.get("weight", 1.0)
        self.perceptual = (PerceptualLoss(p.get("layer", "conv5_4"), p.get("criterion", "l1"),
                                          p.get("pretrained", True), p.get("weights_path"))
                           if self.perceptual_weight > 0 else None)
        self.gan_loss, self.gan_weight = GANLoss(g.get("type", "vanilla")), g.get("weight", 5e-3)
        self.optim_d_cfg = dict(optim_d or {})

    def generator_terms(self, sr, hr) -> dict[str, Any]:
        terms = {"pixel": self.pixel_weight * self.pixel_loss(sr, hr)}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual_weight * self.perceptual(sr, hr)
        fake_logits = self.discriminator(sr)
        real_logits = self.discriminator(hr) if self.gan_loss.kind == "relativistic" else None
        terms["gan"] = self.gan_weight * self.gan_loss.generator_loss(fake_logits, real_logits)
        return terms

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        lr, hr = self._prep(batch["lr"]), batch["hr"]
        sr = self(lr)

        self.toggle_optimizer(opt_g)  # D's parameters stop requiring gradients during G's step
        loss_g = self.compose_loss(self.generator_terms(sr, hr), lr=lr, hr=hr, outputs={"": sr})
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        self.toggle_optimizer(opt_d)
        loss_d = self.gan_loss.discriminator_loss(self.discriminator(hr), self.discriminator(sr.detach()))
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        for s in self.lr_schedulers() or []:
            s.step()
        self.log("train/loss_d", loss_d.detach())

    def configure_optimizers(self):
        opt_g = self.make_optimizer(self.generator_parameters())
        opt_d = self.make_optimizer(self.discriminator.parameters(), self.optim_d_cfg)
        return [opt_g, opt_d], [self.make_scheduler(opt_g), self.make_scheduler(opt_d)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # perceptual VGG weights are fixed and can be reloaded: keep checkpoints small
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith("perceptual.")]:
            del sd[k]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.perceptual is not None:
            for k, v in self.perceptual.state_dict().items():
                checkpoint["state_dict"].setdefault(f"perceptual.{k}", v)
