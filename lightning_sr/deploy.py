"""Loading a trained model for use outside training: the loader registry that ``lsr-upscale`` and
``python -m lightning_sr.export`` share.

A model file is loaded by the loader registered for its suffix, as the generator in eval mode (float RGB [0, 1],
NCHW -> the x``scale`` image), its spec and its scale. ``.ckpt`` / ``.pt`` / ``.pth`` are lightning-sr checkpoints
(``lsr_arch`` + ``state_dict``), rebuilt by :func:`lightning_sr.checkpoint.load_generator` (plain, pruned, an
exported exit, any registered conv kind); ``.pt2`` is a ``torch.export`` program (what ``export
format=exported_program`` writes), run as its ``ExportedProgram.module()``, its spec travelling in the file
(``lsr_arch.json``). A new kind of model file plugs in with one loader function. Export formats check the model
before writing: convolutions of a kind with no plain-convolution form registered are refused with one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_sr.checkpoint import load_generator
from lightning_sr.errors import ConfigError, WeightsError, require
from lightning_sr.networks.conv import conv_layers
from lightning_sr.networks.recycle import RecycleConv2d, materialize, materialize_spec

SPEC_FILE = "lsr_arch.json"      # the spec inside a .pt2 / TorchScript file
EXPORT_FILE = "lsr_export.json"  # what the file's inputs and outputs are


@dataclass
class Deployable:
    """A model ready for inference: ``module`` maps float RGB in [0, 1], NCHW, to the x``scale`` image."""

    module: nn.Module
    spec: dict[str, Any]
    scale: int
    source: Path
    kind: str = "checkpoint"             # which loader made it
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return str(self.spec.get("arch"))


# file suffix -> loader(path) -> Deployable
LOADERS: dict[str, Callable[[Path], Deployable]] = {}


def register_loader(suffixes: Iterable[str], loader: Callable[[Path], Deployable]) -> None:
    """Use ``loader`` for model files ending in any of ``suffixes`` (".ckpt", ".pt2"...). A new kind of model file
    plugs in with one function::

        from lightning_sr.deploy import Deployable, register_loader

        def load_mine(path: Path) -> Deployable:
            module, spec = ...                       # an nn.Module: float RGB [0, 1] NCHW -> x scale
            return Deployable(module, spec, int(spec["scale"]), path, kind="mine")

        register_loader((".mine",), load_mine)
    """
    for s in suffixes:
        LOADERS[s.lower()] = loader


def load_deployable(path: str | Path, what: str = "ckpt_path") -> Deployable:
    """The model in ``path`` through the loader of its file type; one-line errors for a missing or unknown file."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise WeightsError(f"{what} {p} does not exist; give a checkpoint written by train.py "
                           f"(<run dir>/checkpoints/last.ckpt) or a file written by lightning_sr.export")
    loader = LOADERS.get(p.suffix.lower())
    require(loader is not None, f"{what} {p}: no loader for '{p.suffix}' files; give one of "
                                f"{', '.join(sorted(LOADERS))} (or register one: lightning_sr.deploy.register_loader)")
    return loader(p)


def load_checkpoint(path: Path) -> Deployable:
    model, spec = load_generator(path, what="ckpt_path")
    require(spec.get("scale") is not None, f"ckpt_path {path}: its spec {spec} has no scale; it cannot upscale")
    return Deployable(model.eval(), spec, int(spec["scale"]), path, "checkpoint")


def torch_export_load(path: str | Path, extra: dict | None = None):
    """``torch.export.load`` that also reads int8 programs (torchao's quantized ops registered on demand)."""
    try:
        return torch.export.load(str(path), extra_files=extra)
    except Exception:  # programs with torchao's quantized ops need them registered first
        import torchao.quantization  # noqa: F401

        return torch.export.load(str(path), extra_files=extra)


def load_exported_program(path: Path) -> Deployable:
    """A ``torch.export`` program saved with :data:`SPEC_FILE` (``export format=exported_program``)."""
    extra = {SPEC_FILE: "", EXPORT_FILE: ""}
    try:
        ep = torch_export_load(path, extra)
    except Exception as e:
        raise WeightsError(f"cannot load {path} with torch.export.load: {type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not extra[SPEC_FILE]:
        raise WeightsError(f"{path} carries no lightning-sr spec ({SPEC_FILE}); write it with "
                           f"torch.export.save(..., extra_files={{'{SPEC_FILE}': json.dumps(spec)}}) or use the .ckpt")
    spec = json.loads(extra[SPEC_FILE])
    meta = json.loads(extra[EXPORT_FILE]) if extra[EXPORT_FILE] else {}
    require(len(meta.get("inputs", ["lr"])) == 1,
            f"{path} is the recurrent step of a video model ({', '.join(meta.get('inputs', []))}); upscale video "
            f"from its .ckpt (the exported step is for other runtimes)")
    return Deployable(ep.module(), spec, int(spec["scale"]), path, "exported_program", meta)


register_loader((".ckpt", ".pt", ".pth"), load_checkpoint)
register_loader((".pt2",), load_exported_program)


# ----- export readiness ----------------------------------------------------------------------------------------
# conv module type -> function(model, spec) -> (model with plain convolutions, spec): e.g. Weight Recycle
MATERIALIZERS: dict[type, Callable[[nn.Module, dict[str, Any]], tuple[nn.Module, dict[str, Any]]]] = {}


def register_materializer(conv_type: type, fn: Callable[[nn.Module, dict[str, Any]], tuple[nn.Module, dict]]) -> None:
    """``fn(model, spec)`` turns every ``conv_type`` layer of ``model`` into plain ``nn.Conv2d`` (same outputs)."""
    MATERIALIZERS[conv_type] = fn


def export_ready(model: nn.Module, spec: dict[str, Any], what: str = "ckpt_path") -> tuple[nn.Module, dict]:
    """The model with plain convolutions only (registered materializers applied), or a one-line ConfigError naming
    the layer kind that has no plain form yet."""
    for conv_type, fn in MATERIALIZERS.items():
        if any(isinstance(m, conv_type) for _, m in conv_layers(model)):
            model, spec = fn(model, spec)
    odd = sorted({type(m).__name__ for _, m in conv_layers(model) if type(m) not in (nn.Conv2d, nn.ConvTranspose2d)})
    if odd:
        raise ConfigError(f"{what}: the model has {', '.join(odd)} layers (model.conv={spec.get('conv', '?')}); "
                          f"materialise them into plain convolutions first (a checkpoint with model.conv=normal), "
                          f"then export")
    return model, spec


def _materialize_recycled(model: nn.Module, spec: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    return materialize(model), materialize_spec(spec)


def _register_builtin_materializers() -> None:
    register_materializer(RecycleConv2d, _materialize_recycled)


_register_builtin_materializers()


__all__ = ["Deployable", "EXPORT_FILE", "torch_export_load", "LOADERS", "MATERIALIZERS", "SPEC_FILE", "export_ready", "load_checkpoint",
           "load_deployable", "load_exported_program", "register_loader", "register_materializer"]
