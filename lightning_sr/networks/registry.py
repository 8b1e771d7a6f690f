"""Generators are built from a plain *spec* dict (``{"arch": ..., **kwargs}``).

The spec is what checkpoints carry (``checkpoint["lsr_arch"]``) so a model, pruned or not,
rebuilds without the original Hydra config, and the checkpoint loads with ``weights_only=True``.
Compression that changes tensor shapes (channel pruning) is rebuilt by :func:`adapt_to_state_dict`,
which resizes layers to the shapes the state dict holds.

Architectures register themselves where they are defined (``@register("srresnet", keys=(...))``);
this module imports none of them (``lightning_sr.networks`` imports every architecture module).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from lightning_sr.errors import ConfigError

ARCHS: dict[str, Callable[..., nn.Module]] = {}
# keys of the model config that are architecture arguments, per arch (the rest go to the LightningModule)
_ARCH_KEYS: dict[str, tuple[str, ...]] = {}


def register(name: str, keys: tuple[str, ...] = ()):
    """Class/function decorator: ``name`` builds with ``fn(**spec)``; ``keys`` are its model-config arguments."""

    def deco(fn):
        ARCHS[name] = fn
        _ARCH_KEYS[name] = tuple(keys)
        return fn

    return deco


def arch_keys(arch: str) -> tuple[str, ...]:
    return _ARCH_KEYS.get(arch, ())


def spec_from_config(model_cfg: Mapping[str, Any], scale: int) -> dict[str, Any]:
    """Model config node -> generator spec (plain python types)."""
    arch = model_cfg.get("arch", "srresnet")
    if arch not in ARCHS:
        raise ConfigError(f"model.arch={arch!r} is unknown; use one of {', '.join(sorted(ARCHS))}")
    conv = model_cfg.get("conv")
    if conv not in (None, "normal") and "conv" not in arch_keys(arch):
        able = sorted(a for a in ARCHS if "conv" in arch_keys(a))
        raise ConfigError(f"model.conv={conv} is not supported by model.arch={arch!r} (it has no convolution option); "
                          f"use model.conv=normal or one of the architectures {', '.join(able)}")
    spec: dict[str, Any] = {"arch": arch}
    for k in arch_keys(arch):
        if k == "scale":
            spec[k] = int(scale)
        elif k in model_cfg and model_cfg[k] is not None:
            v = model_cfg[k]
            spec[k] = list(v) if isinstance(v, (list, tuple)) or hasattr(v, "_iter_ex") else v
    if spec.get("conv", "normal") == "normal":  # ordinary convolutions: the spec stays as it always was
        for k in ("conv", "conv_scope", "recycle"):
            spec.pop(k, None)
    return spec


def build_generator(spec: Mapping[str, Any]) -> nn.Module:
    spec = dict(spec)
    arch = spec.pop("arch")
    if arch not in ARCHS:
        raise ConfigError(f"unknown architecture {arch!r} in checkpoint/spec; known: {', '.join(sorted(ARCHS))}")
    return ARCHS[arch](**{k: v for k, v in spec.items() if not k.startswith("_")})


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], new)


def adapt_to_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Resize Conv2d/ConvTranspose2d/BatchNorm2d/PReLU layers whose shapes differ from ``state_dict``
    (pruned models)."""
    for name, mod in list(model.named_modules()):
        key = f"{name}.weight" if name else "weight"
        if key not in state_dict:
            continue
        w = state_dict[key]
        if type(mod) is nn.Conv2d and tuple(w.shape) != tuple(mod.weight.shape):
            new = nn.Conv2d(w.shape[1] * mod.groups, w.shape[0], mod.kernel_size, mod.stride, mod.padding,
                            mod.dilation, mod.groups, mod.bias is not None, mod.padding_mode)
        elif type(mod) is nn.ConvTranspose2d and tuple(w.shape) != tuple(mod.weight.shape):
            new = nn.ConvTranspose2d(w.shape[0], w.shape[1] * mod.groups, mod.kernel_size, mod.stride, mod.padding,
                                     mod.output_padding, mod.groups, mod.bias is not None, mod.dilation)
        elif isinstance(mod, nn.BatchNorm2d) and w.shape[0] != mod.num_features:
            new = nn.BatchNorm2d(w.shape[0], mod.eps, mod.momentum, mod.affine, mod.track_running_stats)
        elif isinstance(mod, nn.PReLU) and w.numel() != mod.weight.numel():
            new = nn.PReLU(w.numel())
        elif hasattr(mod, "resized_like") and tuple(w.shape) != tuple(mod.weight.shape):
            new = mod.resized_like(w)  # other registered layer types resize themselves
        else:
            continue
        _replace(model, name, new)
    return model


def attach_saved_gates(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Channel gates saved in the state dict (``<layer>.lsr_gate``, a checkpoint taken while channel sparsity was
    learning) are attached again, so the model computes what was validated."""
    from lightning_sr.networks.gates import GATE, attach_gate

    for key, value in state_dict.items():
        if key.endswith("." + GATE):
            module = model.get_submodule(key[: -len(GATE) - 1])
            rep = 1
            out = module.weight.shape[1 if isinstance(module, nn.ConvTranspose2d) else 0] \
                if hasattr(module, "weight") else value.numel()
            if value.numel() and out != value.numel():
                rep = out // value.numel()
            attach_gate(module, nn.Parameter(torch.ones_like(value)), rep)


def load_generator_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    adapt_to_state_dict(model, state_dict)
    attach_saved_gates(model, state_dict)
    model.load_state_dict(state_dict)
    return model
