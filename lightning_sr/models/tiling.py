"""Tiled inference: run a model over overlapping LR tiles and blend them (for full-size frames)."""

from __future__ import annotations

import torch


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


@torch.no_grad()
def tiled_forward(fn, x: torch.Tensor, scale: int, tile: int, overlap: int = 16):
    """Apply ``fn`` (LR -> SR, or LR -> dict of SR) to ``x`` in ``tile``-pixel LR tiles.

    Overlapping regions are averaged. ``tile <= 0`` or an image smaller than the tile runs whole.
    """
    n, c, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return fn(x)
    overlap = min(overlap, tile // 2)
    step = tile - overlap
    acc = weight = None
    for top in _starts(h, tile, step):
        for left in _starts(w, tile, step):
            patch = x[..., top:top + tile, left:left + tile]
            out = fn(patch)
            outs = out if isinstance(out, dict) else {"": out}
            if acc is None:
                acc = {k: v.new_zeros(n, v.shape[1], h * scale, w * scale) for k, v in outs.items()}
                weight = x.new_zeros(1, 1, h * scale, w * scale)
            ph, pw = patch.shape[-2:]
            sl = (..., slice(top * scale, (top + ph) * scale), slice(left * scale, (left + pw) * scale))
            for k, v in outs.items():
                acc[k][sl] += v
            weight[sl] += 1
    res = {k: v / weight for k, v in acc.items()}
    return res if isinstance(out, dict) else res[""]
