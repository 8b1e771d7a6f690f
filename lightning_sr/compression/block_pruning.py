"""Residual-block pruning: keep ``keep`` of the trained model's residual blocks, then fine-tune.

The SRGAN/TecoGAN seeds prune whole residual blocks (16 -> 12/8/4/2, 10 -> 7/5/3/1). The blocks
of ``generator.body`` (an ``nn.ModuleList``) that are dropped are chosen by ``criterion``:

* ``last``: drop the deepest blocks (keep ``body[:keep]``);
* ``l1``: drop the blocks whose residual branch has the smallest L1 weight norm (sum of ``|w|`` of
  the block's convolutions, times ``res_scale``);
* ``output_delta``: drop the blocks whose removal changes the trunk output (the features after the
  last block) least, measured one block at a time on a calibration batch (centre crops of the first
  validation images): ``||trunk(all) - trunk(all but i)||_2 / ||trunk(all)||_2``.

Kept blocks keep their order and weights; ``pl_module.generator_spec["res_blocks"]`` becomes ``keep``
so the checkpoint rebuilds without any config. Training a small model from scratch instead is
``model.res_blocks=N`` (see sweeps/block_pruning_vs_scratch.sh).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from lightning_sr.compression.common import StructuralCompression, calibration_batch, check, check_choice
from lightning_sr.errors import require
from lightning_sr.models import conv_layers, is_multi_output

CRITERIA = ("last", "l1", "output_delta")


def blocks_owner(gen: nn.Module) -> nn.Module:
    """The module whose ``body`` holds the residual blocks: the generator, or its ``blocks_owner`` submodule
    (the video generator's SRNet)."""
    name = getattr(gen, "blocks_owner", None)
    return gen.get_submodule(name) if name else gen


def residual_blocks(gen: nn.Module, what: str = "compression.block_prune") -> nn.ModuleList:
    body = getattr(blocks_owner(gen), "body", None)
    require(isinstance(body, nn.ModuleList),
            f"{what} needs a generator whose residual blocks are a ModuleList `body` (model.arch=srresnet); "
            f"{type(gen).__name__} has none")
    require(not is_multi_output(gen),
            f"{what} cannot prune a multi-exit model ({type(gen).__name__}): its exits are attached to block "
            f"indices; export an exit first (lightning_sr.export) or prune a model=srresnet checkpoint")
    return body


def l1_scores(gen: nn.Module) -> list[float]:
    """Per block: L1 norm of the residual branch's convolution weights (times res_scale)."""
    scores = []
    for block in residual_blocks(gen):
        s = sum(float(m.weight.detach().abs().sum()) for _, m in conv_layers(block))
        scores.append(s * abs(float(getattr(block, "res_scale", 1.0))))
    return scores


@torch.no_grad()
def output_delta_scores(gen: nn.Module, lr: torch.Tensor) -> list[float]:
    """Per block: relative L2 change of the trunk output when only that block is skipped."""
    blocks = list(residual_blocks(gen))
    require(blocks_owner(gen) is gen and hasattr(gen, "head") and hasattr(gen, "trunk"),
            f"compression.block_prune.criterion=output_delta needs an SRResNet-shaped generator; "
            f"{type(gen).__name__} has none: use criterion=l1 or criterion=last")
    was_training = gen.training
    gen.eval()
    try:
        feat = gen.head(lr)
        inputs = []  # the input of every block on the full path
        for b in blocks:
            inputs.append(feat)
            feat = b(feat)
        full, norm = feat, feat.norm().clamp_min(1e-12)
        scores = []
        for i in range(len(blocks)):
            out = gen.trunk(inputs[i], blocks[i + 1:])  # block i skipped: its input goes on to block i+1
            scores.append(float((out - full).norm() / norm))
    finally:
        gen.train(was_training)
    return scores


def select_blocks(scores: list[float] | None, n: int, keep: int) -> list[int]:
    """Indices (ascending) of the blocks to keep: the first ``keep`` (no scores) or the highest scores."""
    if scores is None:
        return list(range(keep))
    order = sorted(range(n), key=lambda i: (-scores[i], i))  # ties: keep the shallower block
    return sorted(order[:keep])


def prune_blocks(gen: nn.Module, kept: list[int]) -> nn.Module:
    """Keep only ``body[i] for i in kept`` (in order), in place."""
    body = residual_blocks(gen)
    require(all(0 <= i < len(body) for i in kept) and len(set(kept)) == len(kept),
            f"block indices {kept} are not distinct blocks of a {len(body)}-block model")
    blocks_owner(gen).body = nn.ModuleList(body[i] for i in sorted(kept))
    if hasattr(gen, "res_blocks"):
        gen.res_blocks = len(kept)
    return gen


class BlockPruning(StructuralCompression):
    """Keep ``keep`` residual blocks of the model chosen by ``criterion`` (then training fine-tunes it)."""

    name = "block_prune"

    def __init__(self, keep: int = 8, criterion: str = "last", calib_images: int = 1, calib_crop: int = 48,
                 evaluate: bool = True, eval_images: int | None = None):
        key = f"compression.{self.name}"
        check(isinstance(keep, int) and not isinstance(keep, bool) and keep >= 0, f"{key}.keep", keep,
              "is impossible; use the number of residual blocks to keep (an integer >= 0)")
        check_choice(f"{key}.criterion", criterion, CRITERIA)
        check(isinstance(calib_images, int) and calib_images > 0, f"{key}.calib_images", calib_images,
              "is impossible; use an integer > 0")
        check(isinstance(calib_crop, int) and calib_crop > 0, f"{key}.calib_crop", calib_crop,
              "is impossible; use an LR crop size > 0")
        super().__init__(evaluate, eval_images)
        self.keep, self.criterion = keep, criterion
        self.calib_images, self.calib_crop = calib_images, calib_crop

    def config(self) -> dict[str, Any]:
        return {"keep": self.keep, "criterion": self.criterion}

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = len(residual_blocks(pl_module.generator))
        key = f"compression.{self.name}.keep"
        require(n > 0, f"{key}={self.keep}: the model has no residual blocks to prune (res_blocks=0); "
                       f"start from a trained model with blocks (model.init_from=...)")
        require(self.keep <= n, f"{key}={self.keep} is more than the model's {n} residual blocks; "
                                f"use a value between 0 and {n}")

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        gen = pl_module.generator
        n = len(residual_blocks(gen))
        scores = None
        if self.criterion == "l1":
            scores = l1_scores(gen)
        elif self.criterion == "output_delta":
            lr, _ = calibration_batch(trainer, pl_module, self.calib_images, self.calib_crop)
            scores = output_delta_scores(gen, lr)
        kept = select_blocks(scores, n, self.keep)
        prune_blocks(gen, kept)
        pl_module.generator_spec = {**pl_module.generator_spec, "res_blocks": len(kept)}
        out: dict[str, Any] = {"blocks_before": n, "blocks_after": len(kept), "kept_blocks": kept,
                               "removed_blocks": [i for i in range(n) if i not in kept]}
        if scores is not None:
            out["scores"] = [round(s, 6) for s in scores]
        return out
