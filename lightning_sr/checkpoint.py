"""Checkpoints that rebuild their own architecture.

Every checkpoint written by lightning-sr holds ``lsr_arch`` (the generator spec: plain python
types) next to Lightning's ``state_dict``; :func:`load_generator` rebuilds the generator from
the checkpoint alone (pruned layers are resized to the stored shapes) with ``weights_only=True``.

Two more kinds of file load through the same function:

* a checkpoint taken during quantization-aware training (``compression=qat``) holds the prepared graph's state
  (``lsr_qat``: the fp32 weights under ``generator.captured.<name>`` plus fake-quantizer state): it loads as the
  fp32 generator with those weights;
* an int8 artefact (``int8.pt2``, written by ``compression=qat|ptq``) loads as the int8 program
  (:func:`lightning_sr.transforms.int8_io.read_int8`), a generator that runs on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from lightning_sr.errors import ConfigError, WeightsError
from lightning_sr.fs import atomic_torch_save
from lightning_sr.networks.registry import adapt_to_state_dict, build_generator, load_generator_state
from lightning_sr.transforms.int8_io import read_int8

ARCH_KEY = "lsr_arch"
CONFIG_KEY = "lsr_config"  # the run's flat resolved config (resume refuses a checkpoint of another experiment)
PREFIX = "generator."
QAT_KEY = "lsr_qat"  # set in checkpoints taken during QAT: {"prefix": where the fp32 weights are under generator.}
INT8_SUFFIX = ".pt2"


def is_int8_artefact(path: str | Path) -> bool:
    return str(path).endswith(INT8_SUFFIX)


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise WeightsError(f"{what} {p} does not exist; check the path (e.g. <run dir>/checkpoints/last.ckpt)")
    if is_int8_artefact(p):
        raise WeightsError(f"{what} {p} is an int8 program, not a training checkpoint; use the fp32 checkpoint it "
                           f"was made from (source_checkpoint in {p.with_suffix('.json').name})")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot load {what} {p} with weights_only=True: {e.__class__.__name__}: "
                           f"{str(e).splitlines()[0]}") from e
    if not isinstance(ckpt, dict) or ARCH_KEY not in ckpt or "state_dict" not in ckpt:
        raise WeightsError(f"{p} is not a lightning-sr checkpoint (no '{ARCH_KEY}'); train with train.py first")
    return ckpt


def generator_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The generator's tensors by their names in the generator (a QAT checkpoint: the prepared graph's, whose
    weights keep the generator's names)."""
    prefix = PREFIX + str((ckpt.get(QAT_KEY) or {}).get("prefix", ""))
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def load_fp32_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load the tensors of ``state`` that ``model`` has (layers resized to pruned shapes first): the fp32 weights
    of a QAT-prepared graph's state, whose fake quantizers the fp32 model does not have."""
    adapt_to_state_dict(model, state)
    keys = set(model.state_dict())
    return load_generator_state(model, {k: v for k, v in state.items() if k in keys})


def load_generator(path: str | Path, expect_arch: str | None = None, expect_scale: int | None = None,
                   what: str = "checkpoint") -> tuple[nn.Module, dict[str, Any]]:
    """(generator with weights, its spec) from a checkpoint file; checks arch and scale when given. The one way
    every tool (evaluate, export, init_from, resume of a compressed run) rebuilds a generator. An int8 artefact
    (``.pt2``) gives the int8 program and its spec with ``"_int8": True``."""
    if is_int8_artefact(path):
        return load_int8(path, expect_arch, expect_scale, what)
    return generator_from_checkpoint(read_checkpoint(path, what), path, expect_arch, expect_scale, what)


def load_int8(path: str | Path, expect_arch: str | None = None, expect_scale: int | None = None,
              what: str = "int8 model") -> tuple[nn.Module, dict[str, Any]]:
    """(int8 generator, spec) from an ``int8.pt2``; WeightsError (one line) for a missing, corrupt or foreign file,
    ConfigError for another scale or architecture."""
    model, meta = read_int8(path, what)
    spec = {**dict(meta["generator"]), "_int8": True}
    check_spec(spec, path, expect_arch, expect_scale, what, "int8 ")
    return model, spec


def check_spec(spec: dict[str, Any], path: str | Path, expect_arch: str | None, expect_scale: int | None,
               what: str, kind: str = "") -> None:
    """One line when a saved generator's architecture or scale is not the one asked for (``kind``: "int8 ")."""
    if expect_arch is not None and spec.get("arch") != expect_arch:
        raise ConfigError(f"{what} {path} holds {'an' if kind else 'a'} {kind}{spec.get('arch')!r} generator but "
                          f"model.arch={expect_arch!r}; choose the matching model config")
    if expect_scale is not None and spec.get("scale") not in (None, expect_scale):
        raise ConfigError(f"{what} {path} is a x{spec.get('scale')} {kind}model but scale={expect_scale}; "
                          f"set scale={spec.get('scale')}")


def generator_from_checkpoint(ckpt: dict[str, Any], path: str | Path, expect_arch: str | None = None,
                              expect_scale: int | None = None, what: str = "checkpoint"
                              ) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_generator` for a checkpoint already read with :func:`read_checkpoint`."""
    spec = dict(ckpt[ARCH_KEY])
    check_spec(spec, path, expect_arch, expect_scale, what)
    model = build_generator(spec)
    state = generator_state(ckpt)
    if ckpt.get(QAT_KEY):
        load_fp32_state(model, state)
    else:
        load_generator_state(model, state)
    return model, spec


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO plugin that never leaves a half-written checkpoint (:func:`lightning_sr.fs.atomic_write`:
    temporary file, fsync, rename), so ``last.ckpt`` is always a complete file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)
