"""SRGAN training with manual optimisation: generator (pixel + perceptual + adversarial, plus any callback's
terms) and discriminator steps on every batch. Defaults follow BasicSR's SRGAN recipe (pixel L1 1e-2,
perceptual VGG19 conv5_4 1.0, vanilla GAN 5e-3).

Steps (:mod:`lightning_sr.lit_modules.gan`): one batch advances ``trainer.global_step`` by 2 and ``trainer.max_steps``
counts the same way. The LR schedules last ``max_steps / 2`` steps (they end at ``max_steps``); scheduler milestones
count batches.
"""

from __future__ import annotations

from typing import Any

from lightning_sr.lit_modules.gan import GANMixin
from lightning_sr.lit_modules.sr import SRBaseModule
from lightning_sr.losses import PerceptualLoss, pixel_loss
from lightning_sr.networks import VGGDiscriminator


class SRGANModule(GANMixin, SRBaseModule):
    frozen_losses = ("perceptual",)  # VGG19

    def __init__(self, generator_spec: dict[str, Any], scale: int, loss: str = "l1", patch_size: int = 96,
                 pixel_weight: float = 1e-2, perceptual: dict | None = None, gan: dict | None = None,
                 discriminator: dict | None = None, optim_d: dict | None = None, **kwargs: Any):
        super().__init__(generator_spec, scale, loss=loss, patch_size=patch_size, pixel_weight=pixel_weight,
                         perceptual=perceptual, gan=gan, discriminator=discriminator, optim_d=optim_d, **kwargs)
        p = dict(perceptual or {})
        d = dict(discriminator or {})
        self.discriminator = VGGDiscriminator(patch_size, d.get("channels", 64), norm=d.get("norm", "batch"))
        self.pixel_loss, self.pixel_weight = pixel_loss(loss), pixel_weight
        self.perceptual_weight = p.get("weight", 1.0)
        self.perceptual = (PerceptualLoss(p.get("layer", "conv5_4"), p.get("criterion", "l1"),
                                          p.get("pretrained", True), p.get("weights_path"))
                           if self.perceptual_weight > 0 else None)
        self.init_gan(gan, optim_d, weight=5e-3)

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

        with self.toggled_optimizer(opt_g):  # D's parameters stop requiring gradients during G's step
            self.manual_step(opt_g, self.compose_loss(self.generator_terms(sr, hr), lr=lr, hr=hr, outputs={"": sr}))
        with self.toggled_optimizer(opt_d):
            loss_d = self.gan_loss.discriminator_loss(self.discriminator(hr), self.discriminator(sr.detach()))
            self.manual_step(opt_d, loss_d)
        self.step_schedulers()
        self.log("train/loss_d", loss_d.detach())
