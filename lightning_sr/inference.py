"""The one inference path: what ``evaluate.py`` scores and what ``lsr-upscale`` writes are the same numbers.

:class:`lightning_sr.lit_modules.SRBaseModule` (validation, test, ``evaluate.py``), the video module and
:mod:`lightning_sr.upscale` all run their models through here. Conventions: images are float [0, 1] batches, run
whole or in overlapping LR tiles (:func:`lightning_sr.networks.tiling.tiled_forward`); evaluation runs in fp32 with
autocast off (bf16 autocast is for deployment on a GPU, never what evaluation scores); there is one rounding to
8 bit. Video streams hold only the previous frame and output (constant memory in the clip length): a recurrent
generator keeps its state between frames (tiled: every tile its own state), any other runs frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from lightning_sr.networks.tiling import tiled_forward, tiled_recurrent_step

T = TypeVar("T")
# TecoGAN's official inference (thunil/TecoGAN lib/dataloader.py, main.py) runs frames 5, 4, 3, 2, 1 before the clip
# and keeps the outputs from the 6th on; TecoGAN-PyTorch's test configs do the same (padding_mode reflect,
# num_pad_front 5). docs/video.md
WARMUP_FRAMES = 5


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> H x W x C uint8 (the 8-bit image PSNR/SSIM are computed on): the one rounding
    to 8 bit (clamp to [0, 1], x255, round half to even)."""
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
    """``fn(lr)`` (LR -> SR, or LR -> {name: SR}) on a float [0, 1] batch, whole or in overlapping ``tile``-pixel
    LR tiles (:func:`lightning_sr.networks.tiling.tiled_forward`), in fp32 with autocast off
    (``dtype=torch.bfloat16``: autocast to bf16, for deployment on a GPU; not what evaluation scores)."""
    with precision_context(lr.device, dtype):
        return tiled_forward(fn, lr, scale, int(tile or 0), int(overlap))


def warmup_count(n_frames: int, warmup: int) -> int:
    """Warm-up frames for a clip of ``n_frames``: ``min(warmup, n_frames - 1)``, i.e. what TecoGAN's
    ``frames[warmup:0:-1]`` gives a short clip (a 3-frame clip is preceded by frames 2, 1)."""
    return max(0, min(int(warmup), int(n_frames) - 1))


def warmup_order(n_frames: int, warmup: int) -> list[int]:
    """The frame indices a recurrent model runs over: ``k, ..., 1, 0, 1, ..., n-1`` (``k`` = :func:`warmup_count`);
    its outputs from position ``k`` on are the clip's. The recipe for the exported recurrent step."""
    k = warmup_count(n_frames, warmup)
    return list(range(k, 0, -1)) + list(range(int(n_frames)))


def warm_up(frames: Iterable[T], warmup: int) -> tuple[Iterator[T], int]:
    """(the frames in :func:`warmup_order`, ``k``): a stream of any length, of which only the first ``warmup + 1``
    frames are held (memory stays constant in the clip length).

    TecoGAN's temporal warm-up of a recurrent model (``val.warmup_frames``, ``lsr-upscale warmup=``, the exported
    step's recipe): the clip is preceded by its frames ``k, k-1, ..., 1`` so the first scored output never comes
    from an empty state; the caller drops the ``k`` warm-up outputs."""
    it = iter(frames)
    head = list(islice(it, max(0, int(warmup)) + 1))
    k = warmup_count(len(head), warmup)
    return chain(head[k:0:-1], head, it), k


def is_recurrent(gen: nn.Module) -> bool:
    """A video generator that carries state from frame to frame (``step(lr, lr_prev, hr_prev)``)."""
    return hasattr(gen, "infer_sequence") and hasattr(gen, "step")


@torch.no_grad()
def stream_frames(gen: nn.Module, frames: Iterable[torch.Tensor], scale: int, tile: int = 0, overlap: int = 16,
                  image_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  dtype: torch.dtype | None = None, warmup: int = 0) -> Iterator[torch.Tensor]:
    """SR frames (N, C, sH, sW) of LR frames (N, C, H, W, float [0, 1]), one at a time.

    A recurrent ``gen`` streams (``infer_sequence``; with ``tile > 0`` each tile keeps its own previous output),
    after ``warmup`` warm-up frames (:func:`warm_up`; their outputs are not yielded; 0 = cold start from a zero
    state); otherwise every frame goes through ``image_fn`` (default: :func:`sr_outputs` of ``gen``), where a warm-up
    would change nothing. The precision context is entered around each frame's computation only, never across a
    ``yield``."""
    if image_fn is None and is_recurrent(gen) and warmup > 0:
        padded, k = warm_up(frames, warmup)
        for j, out in enumerate(stream_frames(gen, padded, scale, tile, overlap, None, dtype)):
            if j >= k:
                yield out
        return
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


__all__ = ["WARMUP_FRAMES", "is_recurrent", "precision_context", "sr_outputs", "stream_frames", "to_uint8", "warm_up",
           "warmup_count", "warmup_order"]
