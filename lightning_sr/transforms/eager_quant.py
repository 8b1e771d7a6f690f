"""Fake quantization of an eager generator: the int8 recipe's observers on a network no graph can hold yet.

GAN Slimming quantizes from its first step, while channel gates are learned and before any channel is removed.
torchao's PT2E flow (:mod:`lightning_sr.transforms.pt2e_quant`) needs a captured graph that stays fixed, and its x86
quantizer cannot annotate a gated convolution. Until the removal, the generator itself is fake-quantized here with
the same fake quantizers the int8 conversion uses (built from :class:`~lightning_sr.transforms.pt2e_quant.SRQuantizer`'s
own quantization specs: int8 per-channel symmetric weights, uint8 per-tensor affine activations, 7-bit where
``reduce_range``), at the places the int8 graph quantizes: every convolution's input and weight (not under
``fp32_layers``); a residual block's input, once, so the skip connection reads the same uint8 tensor, as the int8
graph's convolution + addition does; with ``act_int8``, the input and output of every PReLU/LeakyReLU.

The fake quantizers are kept outside the generator's parameters and buffers (its state dict, checkpoints, channel
surgery and Torch-Pruning's tracing see the plain model) and follow the input's device; their observed ranges are
saved by layer name. At the removal they are taken off, the slim generator is captured and prepared for PT2E QAT,
and the activation ranges learned so far go to the graph's fake quantizers (same class, same layer); weight ranges
are observed from the final (folded, pruned) weights, as per-channel symmetric weights need no data. Observers
update in training mode only, as in the prepared graph (``freeze_observers_after`` counts from the capture). Known
difference: in a network with BatchNorm, PT2E quantizes the convolution folded with its BatchNorm; here the
convolution's own weight is quantized (the gates sit on the BatchNorm until the removal).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import torch
import torch.nn.functional as F
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86q
from torch import nn
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.prepare import (
    _create_obs_or_fq_from_qspec,  # torchao's own constructor (no alias)
)
from torchao.quantization.pt2e.quantizer.utils import get_input_act_qspec, get_weight_qspec

from lightning_sr.networks.blocks import ResidualBlock
from lightning_sr.transforms.pt2e_quant import QuantSettings, module_names, under_prefix

FQ = "_lsr_fake_quant"  # {"input": fq, "weight": fq} in the module's __dict__ (not registered)
CONVS = (nn.Conv2d, nn.ConvTranspose2d)
ACT_MODULES = (nn.PReLU, nn.LeakyReLU)
aten = torch.ops.aten
GRAPH_OPS = {aten.conv2d.default: "conv", aten.conv_transpose2d.input: "conv", aten.prelu.default: "act",
             aten.leaky_relu.default: "act", aten.leaky_relu_.default: "act"}


def _make(qspec) -> nn.Module:
    return _create_obs_or_fq_from_qspec(qspec, {}, is_qat=True)


def _ready(fq: nn.Module, x: torch.Tensor, on: bool) -> nn.Module:
    """``fq`` on ``x``'s device (the fake quantizers are not the model's buffers: they do not follow ``.to()``),
    observing only when ``on`` (training), as the prepared graph's observers do."""
    if fq.scale.device != x.device:
        fq.to(x.device)
    fq.observer_enabled[0] = int(on)
    return fq


def _fq_conv_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    fq = self.__dict__[FQ]
    if not self.__dict__.get("_lsr_input_by_block", False):  # else the residual block quantized it already
        x = _ready(fq["input"], x, self.training)(x)
    w = _ready(fq["weight"], self.weight, self.training)(self.weight)
    if isinstance(self, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, w, self.bias, self.stride, self.padding, self.output_padding, self.groups,
                                  self.dilation)
    return self._conv_forward(x, w, self.bias)


def _fq_input_hook(module: nn.Module, args):
    return (_ready(module.__dict__[FQ]["input"], args[0], module.training)(args[0]), *args[1:])


def _fq_block_input_hook(block: nn.Module, args):
    conv = block.__dict__["_lsr_first_conv"]
    return (_ready(conv.__dict__[FQ]["input"], args[0], conv.training)(args[0]), *args[1:])


def _first_conv(block: nn.Module) -> nn.Module | None:
    """The convolution that reads a residual block's input (``x + f(x)``: the project's ResidualBlock)."""
    if not isinstance(block, ResidualBlock):
        return None
    return block.conv1 if isinstance(block.conv1, CONVS) else None


def _fq_output_hook(module: nn.Module, args, output):
    return _ready(module.__dict__[FQ]["output"], output, module.training)(output)


def quant_layers(gen: nn.Module, settings: QuantSettings) -> dict[str, str]:
    """{module name: "conv" | "act"} of the layers that are fake-quantized (see the module docstring)."""
    out = {}
    for name, m in gen.named_modules():
        if settings.fp32_layers and under_prefix(name, settings.fp32_layers):
            continue
        if isinstance(m, CONVS):
            out[name] = "conv"
        elif settings.act_int8 and isinstance(m, ACT_MODULES):
            out[name] = "act"
    return out


def attach(gen: nn.Module, settings: QuantSettings) -> int:
    """Fake-quantize ``gen`` in place (see the module docstring); returns how many layers."""
    cfg = x86q.get_default_x86_inductor_quantization_config(is_qat=True,
                                                             reduce_range=settings.resolved_reduce_range())
    act, weight = get_input_act_qspec(cfg), get_weight_qspec(cfg)
    layers = quant_layers(gen, settings)
    for name, kind in layers.items():
        m = gen.get_submodule(name)
        device = next(gen.parameters()).device
        if kind == "conv":
            wspec = dataclasses.replace(weight, ch_axis=1) if isinstance(m, nn.ConvTranspose2d) else weight
            m.__dict__[FQ] = {"input": _make(act).to(device), "weight": _make(wspec).to(device)}
            m.forward = types.MethodType(_fq_conv_forward, m)
        else:
            m.__dict__[FQ] = {"input": _make(act).to(device), "output": _make(act).to(device)}
            m.__dict__["_lsr_fq_handles"] = (m.register_forward_pre_hook(_fq_input_hook),
                                             m.register_forward_hook(_fq_output_hook))
    for m in gen.modules():  # residual blocks: the block input is quantized once, for the convolution and the skip
        conv = _first_conv(m)
        if conv is not None and FQ in conv.__dict__:
            conv.__dict__["_lsr_input_by_block"] = True
            m.__dict__["_lsr_first_conv"] = conv
            m.__dict__["_lsr_fq_handles"] = (m.register_forward_pre_hook(_fq_block_input_hook),)
    return len(layers)


def attached(gen: nn.Module) -> dict[str, dict[str, nn.Module]]:
    return {name: m.__dict__[FQ] for name, m in gen.named_modules() if FQ in m.__dict__}


def states(gen: nn.Module) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """The observed ranges of every fake quantizer, by layer name (what a checkpoint stores)."""
    return {name: {k: {n: t.detach().cpu().clone() for n, t in q.state_dict().items()} for k, q in fqs.items()}
            for name, fqs in attached(gen).items()}


def load_states(gen: nn.Module, saved: dict[str, Any]) -> None:
    for name, fqs in attached(gen).items():
        for k, q in fqs.items():
            if name in saved and k in saved[name]:
                q.load_state_dict(saved[name][k])


def detach(gen: nn.Module) -> dict[str, Any]:
    """Take every fake quantizer off ``gen`` (the plain module again); returns their :func:`states`."""
    saved = states(gen)
    for m in gen.modules():
        if "_lsr_first_conv" in m.__dict__:
            del m.__dict__["_lsr_first_conv"]
            for handle in m.__dict__.pop("_lsr_fq_handles", ()):
                handle.remove()
    for name in list(attached(gen)):
        m = gen.get_submodule(name)
        del m.__dict__[FQ]
        m.__dict__.pop("_lsr_input_by_block", None)
        if "forward" in m.__dict__:
            del m.forward
        for handle in m.__dict__.pop("_lsr_fq_handles", ()):
            handle.remove()
    return saved


# ----- hand-over to the captured graph -------------------------------------------------------------------------
def _fq_module(gm: GraphModule, node: Any) -> nn.Module | None:
    if isinstance(node, Node) and node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if hasattr(mod, "activation_post_process"):
            return mod
    return None


def carry_ranges(prepared: GraphModule, saved: dict[str, Any]) -> list[str]:
    """Copy the eager fake quantizers' activation ranges (``saved``: :func:`detach`'s result) into the prepared
    graph's fake quantizer on the input of the same layer. Returns the layers carried over."""
    done = []
    for n in prepared.graph.nodes:
        if n.op != "call_function" or n.target not in GRAPH_OPS or not n.args:
            continue
        names = module_names(n)
        name = names[-1] if names else None
        fq = _fq_module(prepared, n.args[0])
        if name not in saved:
            continue
        if "input" in saved[name] and fq is not None:
            fq.load_state_dict(saved[name]["input"])
            done.append(name)
        outs = [f for f in (_fq_module(prepared, u) for u in n.users) if f is not None]
        if "output" in saved[name] and len(outs) == 1:
            outs[0].load_state_dict(saved[name]["output"])
    for n in prepared.graph.nodes:  # a pixel shuffle only moves values: its input's range is its output's
        if n.op == "call_function" and n.target == aten.pixel_shuffle.default:
            fq_in = _fq_module(prepared, n.args[0])
            fq_out = [f for f in (_fq_module(prepared, u) for u in n.users) if f is not None]
            if fq_in is not None and len(fq_out) == 1 and fq_out[0] is not fq_in:
                fq_in.load_state_dict(fq_out[0].state_dict())
    return done


def observe_weights(prepared: GraphModule) -> int:
    """Run each weight fake quantizer of a prepared graph once on its (final) weight with its observer on, so its
    per-channel range is the weight's own; returns how many."""
    n = 0
    for node in prepared.graph.nodes:
        fq = _fq_module(prepared, node)
        src = node.args[0] if fq is not None and node.args else None
        if isinstance(src, Node) and src.op == "get_attr":
            t = prepared.get_parameter(src.target) if "." in str(src.target) or hasattr(prepared, src.target) else None
            if isinstance(t, nn.Parameter):
                was = int(fq.observer_enabled[0])
                with torch.no_grad():
                    _ready(fq, t, True)(t)
                fq.observer_enabled[0] = was
                n += 1
    return n
