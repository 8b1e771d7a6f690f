"""Residual-block pruning: score the residual blocks of a generator and keep some of them. No Lightning here.

The SRGAN/TecoGAN seeds prune whole residual blocks (16 -> 12/8/4/2, 10 -> 7/5/3/1). The blocks
of ``generator.body`` (an ``nn.ModuleList``) that are dropped are chosen by ``criterion``:

* ``last``: drop the deepest blocks (keep ``body[:keep]``);
* ``l1``: drop the blocks whose residual branch has the smallest L1 weight norm (sum of ``|w|`` of
  the block's convolutions, times ``res_scale``);
* ``output_delta``: drop the blocks whose removal changes the trunk output (the features after the
  last block) least, measured one block at a time on a calibration batch (centre crops of the first
  validation images): ``||trunk(all) - trunk(all but i)||_2 / ||trunk(all)||_2``.

The blocks are found through the SR layout (:func:`lightning_sr.networks.layout.check_layout`): a network without
an ``nn.ModuleList`` ``body`` (in itself or its ``blocks_owner``) is refused with one line naming the missing part.
Kept blocks keep their order and weights; the callback (``compression=block_prune``,
:mod:`lightning_sr.compression.block_pruning`) sets ``pl_module.generator_spec["res_blocks"]`` to ``keep`` so the
checkpoint rebuilds without any config. Training a small model from scratch instead is
``model.res_blocks=N`` (see sweeps/block_pruning_vs_scratch.sh).
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sr.errors import require
from lightning_sr.networks import conv_layers, is_multi_output
from lightning_sr.networks.layout import check_layout

CRITERIA = ("last", "l1", "output_delta")


def residual_blocks(gen: nn.Module, what: str = "compression.block_prune") -> nn.ModuleList:
    """The layout's ``body`` (the residual blocks, in ``gen`` or its ``blocks_owner``), after checking the layout."""
    body = check_layout(gen, need=("body",), what=what).body
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
    what = "compression.block_prune.criterion=output_delta"
    blocks = list(residual_blocks(gen, what))
    require(check_layout(gen, need=("head", "body"), what=what) is gen and hasattr(gen, "trunk"),
            f"{what} needs an SRResNet-shaped generator (its layout parts and trunk() on the network itself); "
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
    check_layout(gen, need=("body",)).body = nn.ModuleList(body[i] for i in sorted(kept))
    if hasattr(gen, "res_blocks"):
        gen.res_blocks = len(kept)
    return gen
