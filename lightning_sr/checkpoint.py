"""Checkpoints that rebuild their own architecture.

Every checkpoint written by lightning-sr holds ``lsr_arch`` (the generator spec: plain python
types) next to Lightning's ``state_dict``; :func:`load_generator` rebuilds the generator from
the checkpoint alone (pruned layers are resized to the stored shapes) with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from lightning_sr.errors import ConfigError, WeightsError
from lightning_sr.fs import atomic_torch_save
from lightning_sr.models.registry import build_generator, load_generator_state

ARCH_KEY = "lsr_arch"
CONFIG_KEY = "lsr_config"  # the run's flat resolved config (resume refuses a checkpoint of another experiment)
PREFIX = "generator."


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise WeightsError(f"{what} {p} does not exist; check the path (e.g. <run dir>/checkpoints/last.ckpt)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot load {what} {p} with weights_only=True: {e.__class__.__name__}: "
                           f"{str(e).splitlines()[0]}") from e
    if not isinstance(ckpt, dict) or ARCH_KEY not in ckpt or "state_dict" not in ckpt:
        raise WeightsError(f"{p} is not a lightning-sr checkpoint (no '{ARCH_KEY}'); train with train.py first")
    return ckpt


def generator_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}


def load_generator(path: str | Path, expect_arch: str | None = None, expect_scale: int | None = None,
                   what: str = "checkpoint") -> tuple[nn.Module, dict[str, Any]]:
    """(generator with weights, its spec) from a checkpoint file; checks arch and scale when given. The one way
    every tool (evaluate, export, init_from, resume of a compressed run) rebuilds a generator."""
    return generator_from_checkpoint(read_checkpoint(path, what), path, expect_arch, expect_scale, what)


def generator_from_checkpoint(ckpt: dict[str, Any], path: str | Path, expect_arch: str | None = None,
                              expect_scale: int | None = None, what: str = "checkpoint"
                              ) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_generator` for a checkpoint already read with :func:`read_checkpoint`."""
    spec = dict(ckpt[ARCH_KEY])
    if expect_arch is not None and spec.get("arch") != expect_arch:
        raise ConfigError(f"{what} {path} holds a {spec.get('arch')!r} generator but model.arch={expect_arch!r}; "
                          f"choose the matching model config")
    if expect_scale is not None and spec.get("scale") not in (None, expect_scale):
        raise ConfigError(f"{what} {path} is a x{spec.get('scale')} model but scale={expect_scale}; "
                          f"set scale={spec.get('scale')}")
    model = build_generator(spec)
    load_generator_state(model, generator_state(ckpt))
    return model, spec


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO plugin that never leaves a half-written checkpoint (:func:`lightning_sr.fs.atomic_write`:
    temporary file, fsync, rename), so ``last.ckpt`` is always a complete file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)
