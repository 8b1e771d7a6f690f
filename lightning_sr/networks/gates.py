"""Channel gates: a learnable scale per output channel of a layer (channel sparsity, GAN Slimming).

A gate is a parameter ``lsr_gate`` registered on the layer it scales (a convolution, or the BatchNorm right after
it) plus a forward hook that multiplies the layer's output channels by it; channels coupled by residual additions
share one gate object. A gated generator saves its gates in its state dict (``<layer>.lsr_gate``), and
:func:`lightning_sr.networks.registry.adapt_to_state_dict` re-attaches them when such a checkpoint is loaded, so a
checkpoint taken while gates are being learned evaluates exactly as it was validated.
:func:`lightning_sr.transforms.channels.fold_gate` multiplies a gate into the layer's weight and bias and removes it
(exact: the gate only scales that layer's output).
A gate can repeat each value ``repeat`` times (a convolution before a PixelShuffle(r): r^2 filters per channel).

Module replacement (``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, which Lightning runs on the whole model after
the callbacks' ``setup`` under ``sync_batchnorm=true``) copies a BatchNorm's weight, bias and statistics only: the
gate and its hook would be lost. :func:`carry_gates` re-attaches them (the same parameter objects) to the modules
that now stand at the same names.
"""

from __future__ import annotations

import torch
from torch import nn

GATE = "lsr_gate"


def _gate_hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    g = getattr(module, GATE)
    rep = getattr(module, "lsr_gate_repeat", 1)
    g = g.repeat_interleave(rep) if rep > 1 else g
    return output * g.view(1, -1, *([1] * (output.dim() - 2))).to(output.dtype)


def attach_gate(module: nn.Module, gate: nn.Parameter, repeat: int = 1) -> None:
    """Scale ``module``'s output channels by ``gate`` (shared objects stay shared)."""
    detach_gate(module)
    module.register_parameter(GATE, gate)
    module.lsr_gate_repeat = int(repeat)
    module.lsr_gate_handle = module.register_forward_hook(_gate_hook)


def detach_gate(module: nn.Module) -> None:
    handle = getattr(module, "lsr_gate_handle", None)
    if handle is not None:
        handle.remove()
        del module.lsr_gate_handle
    if GATE in module._parameters:
        del module._parameters[GATE]


def has_gate(module: nn.Module) -> bool:
    return GATE in module._parameters


def gated_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if has_gate(m)]


def gates_by_name(model: nn.Module) -> dict[str, tuple[nn.Parameter, int]]:
    """{module name: (gate, repeat)} of every gated module (what :func:`carry_gates` needs to re-attach them)."""
    return {n: (getattr(m, GATE), getattr(m, "lsr_gate_repeat", 1)) for n, m in gated_modules(model)}


def carry_gates(model: nn.Module, gates: dict[str, tuple[nn.Parameter, int]]) -> None:
    """Attach ``gates`` (from :func:`gates_by_name` before some modules were replaced) to the modules of ``model``
    at the same names: shared gates stay shared, the forward and the folding are unchanged."""
    for name, (gate, rep) in gates.items():
        module = model.get_submodule(name)
        if not has_gate(module) or getattr(module, GATE) is not gate:
            attach_gate(module, gate, rep)
