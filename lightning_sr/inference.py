"""The one inference path: what ``evaluate.py`` scores and what ``lsr-upscale`` writes are the same numbers.

* :func:`sr_outputs` runs an LR -> SR function (one output or a dict of named outputs) on a float [0, 1] batch,
  whole or in overlapping LR tiles (:func:`lightning_sr.models.tiling.tiled_forward`), in fp32 with autocast off
  (``dtype=torch.bfloat16``: autocast to bf16, for deployment on a GPU; not what evaluation scores).
* :func:`stream_frames` turns a stream of LR frames into SR frames: a recurrent video generator (one with
  ``infer_sequence``/``step``) keeps its state between frames (tiled: every tile its own state,
  :func:`~lightning_sr.models.tiling.tiled_recurrent_step`), any other generator runs frame by frame. Only the
  previous frame and output are held: constant memory in the clip length.
* :func:`to_uint8` is the one rounding to 8 bit (clamp to [0, 1], x255, round half to even).

:class:`lightning_sr.modules.SRBaseModule` (validation, test, ``evaluate.py``), the video module and
:mod:`lightning_sr.upscale` all call these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from lightning_sr.models.tiling import tiled_forward, tiled_recurrent_step


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> H x W x C uint8 (the 8-bit image PSNR/SSIM are computed on)."""
    return (img.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def precision_context(device: torch.device | str, dtype: torch.dtype | None = None):
    """fp32 with autocast off (``dtype`` None: the evaluation path), or autocast to ``dtype``."""
    dev = torch.device(device).type
    if dtype is None or dtype == torch.float32:
        return torch.autocast(device_type=dev, enabled=False)
    return torch.autocast(device_type=dev, dtype=dtype)


@torch.no_grad()
def sr_outputs(fn: Callable, lr: torch.Tensor, scale: int, tile: int = 0, overlap: int = 16,
               dtype: torch.dtype | None = None):
    """``fn(lr)`` (LR -> SR, or LR -> {name: SR}) on a float batch, whole or in ``tile``-pixel LR tiles."""
    with precision_context(lr.device, dtype):
        return tiled_forward(fn, lr, scale, int(tile or 0), int(overlap))


def is_recurrent(gen: nn.Module) -> bool:
    """A video generator that carries state from frame to frame (``step(lr, lr_prev, hr_prev)``)."""
    return hasattr(gen, "infer_sequence") and hasattr(gen, "step")


@torch.no_grad()
def stream_frames(gen: nn.Module, frames: Iterable[torch.Tensor], scale: int, tile: int = 0, overlap: int = 16,
                  image_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  dtype: torch.dtype | None = None) -> Iterator[torch.Tensor]:
    """SR frames (N, C, sH, sW) of LR frames (N, C, H, W, float [0, 1]), one at a time.

    A recurrent ``gen`` streams (``infer_sequence``; with ``tile > 0`` each tile keeps its own previous output);
    otherwise every frame goes through ``image_fn`` (default: :func:`sr_outputs` of ``gen``). The precision context
    is entered around each frame's computation only, never across a ``yield``."""
    if image_fn is None and not is_recurrent(gen):
        image_fn = lambda x: sr_outputs(gen, x, scale, tile, overlap, dtype)  # noqa: E731
    if image_fn is not None:
        for f in frames:
            yield image_fn(f)
        return
    frames = iter(frames)
    if tile > 0:
        states: dict = {}
        prev = None
        for f in frames:
            with precision_context(f.device, dtype):
                out = tiled_recurrent_step(gen.step, f, f if prev is None else prev, states, scale, tile, overlap)
            prev = f
            yield out
        return
    device = next((p.device for p in gen.parameters()), torch.device("cpu"))
    outs = gen.infer_sequence(frames)  # pulls frames lazily: one LR frame and one output held at a time
    while True:
        with precision_context(device, dtype):
            out = next(outs, None)
        if out is None:
            return
        yield out


__all__ = ["is_recurrent", "precision_context", "sr_outputs", "stream_frames", "to_uint8"]
