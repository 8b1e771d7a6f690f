"""Tiled inference: run a model over overlapping LR tiles and stitch them (for full-size frames).

Tiles overlap by ``overlap`` LR pixels. Each tile contributes only its centre: ``overlap // 2`` pixels are
trimmed from every side that touches another tile (the outputs there suffer from the tile's own zero padding
and border handling), so the stitched image matches whole-image inference except for the few pixels whose
receptive field exceeds the kept margin. Where two kept regions still meet (the last tile, aligned to the image
end), they are averaged.
"""

from __future__ import annotations

import torch


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _kept(start: int, size: int, length: int, margin: int) -> tuple[int, int]:
    """[begin, end) of the tile region that is written: trimmed by ``margin`` where another tile continues."""
    begin = start + (margin if start > 0 else 0)
    end = start + size - (margin if start + size < length else 0)
    return begin, end


@torch.no_grad()
def tiled_forward(fn, x: torch.Tensor, scale: int, tile: int, overlap: int = 16):
    """Apply ``fn`` (LR -> SR, or LR -> dict of SR) to ``x`` in ``tile``-pixel LR tiles (see the module docstring).

    ``tile <= 0`` or an image smaller than the tile runs whole.
    """
    n, c, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return fn(x)
    overlap = min(overlap, tile // 2)
    step, margin = tile - overlap, overlap // 2
    acc = weight = None
    out = None
    for top in _starts(h, tile, step):
        for left in _starts(w, tile, step):
            patch = x[..., top:top + tile, left:left + tile]
            out = fn(patch)
            outs = out if isinstance(out, dict) else {"": out}
            if acc is None:
                acc = {k: v.new_zeros(n, v.shape[1], h * scale, w * scale) for k, v in outs.items()}
                weight = x.new_zeros(1, 1, h * scale, w * scale)
            ph, pw = patch.shape[-2:]
            t0, t1 = _kept(top, ph, h, margin)
            l0, l1 = _kept(left, pw, w, margin)
            dst = (..., slice(t0 * scale, t1 * scale), slice(l0 * scale, l1 * scale))
            src = (..., slice((t0 - top) * scale, (t1 - top) * scale), slice((l0 - left) * scale, (l1 - left) * scale))
            for k, v in outs.items():
                acc[k][dst] += v[src]
            weight[dst] += 1
    res = {k: v / weight for k, v in acc.items()}
    return res if isinstance(out, dict) else res[""]


@torch.no_grad()
def tiled_recurrent_step(step, lr: torch.Tensor, lr_prev: torch.Tensor, states: dict, scale: int, tile: int,
                         overlap: int = 16) -> torch.Tensor:
    """One frame of a recurrent generator (``step(lr, lr_prev, hr_prev) -> (hr, ...)``) in LR tiles, each tile with
    its own previous output in ``states`` (kept between calls): constant memory in the clip length, stitched like
    :func:`tiled_forward`."""
    n, c, h, w = lr.shape
    overlap = min(overlap, tile // 2)
    step_px, margin = max(1, tile - overlap), overlap // 2
    out = lr.new_zeros(n, c, h * scale, w * scale)
    weight = lr.new_zeros(1, 1, h * scale, w * scale)
    for top in _starts(h, tile, step_px):
        for left in _starts(w, tile, step_px):
            sl = (..., slice(top, top + tile), slice(left, left + tile))
            patch, prev = lr[sl], lr_prev[sl]
            ph, pw = patch.shape[-2:]
            hr_prev = states.get((top, left))
            if hr_prev is None:
                hr_prev = patch.new_zeros(n, c, ph * scale, pw * scale)
            sr = step(patch, prev, hr_prev)[0]
            states[(top, left)] = sr
            t0, t1 = _kept(top, ph, h, margin)
            l0, l1 = _kept(left, pw, w, margin)
            dst = (..., slice(t0 * scale, t1 * scale), slice(l0 * scale, l1 * scale))
            src = (..., slice((t0 - top) * scale, (t1 - top) * scale), slice((l0 - left) * scale, (l1 - left) * scale))
            out[dst] += sr[src]
            weight[dst] += 1
    return out / weight
