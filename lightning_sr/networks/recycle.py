"""Weight Recycle convolution (paper 004, "Deep Neural Network Model Compression using Weight Recycle").

A recycled convolution stores one quarter of its filters, ``weight`` of shape ``(out/4, in, k, k)``, and builds
the full weight by rotating them by 90, 180 and 270 degrees (``torch.rot90`` over the two spatial axes,
counter-clockwise), concatenated along the output channels::

    W = cat([rot90(w, order[0]), rot90(w, order[1]), rot90(w, order[2]), rot90(w, order[3])], dim=0)

with ``order = (0, 1, 2, 3)`` by default: output channels ``j*out/4 .. (j+1)*out/4 - 1`` are the stored filters
rotated by ``order[j]`` x 90 degrees. The full weight is rebuilt from the parameter at every forward pass, so
gradients reach the stored quarter (the authors' public code builds it from ``self.weight.data``: its stored
filters never learn). A fixed 4x cut of the layer's weights; the MACs are those of the full convolution.

Bias (``bias_mode``): ``shared`` (default, as in the authors' code) stores ``out/4`` biases, repeated over the four
groups: the whole layer is then exactly rotation-equivariant (rotating the input by 90 degrees rotates the output
and moves every output group one place along ``order``); ``channel`` stores one bias per output channel.

As a model option: ``model.conv=recycle`` (``normal`` by default) with ``model.conv_scope`` = ``residual`` (the
convolutions of the residual blocks, default) or ``all`` (every convolution except the network's first and last
ones), and ``model.recycle.order`` / ``model.recycle.bias``. 1x1 convolutions are never recycled (a rotated 1x1
filter is itself: the four groups would be copies of each other).

:func:`materialize` turns every recycled convolution of a model into an ordinary ``nn.Conv2d`` holding the full
weight (same output to float precision), for tools that only know ``nn.Conv2d`` (Torch-Pruning, quantization,
ONNX); :func:`materialize_spec` is its spec (``conv=normal``). CLI: ``python -m lightning_sr.export
ckpt_path=IN.ckpt materialize=true``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_sr.errors import ConfigError, require
from lightning_sr.networks.conv import conv_layers, register_conv, replace_module

KIND = "recycle"
CONV_CHOICES = ("normal", KIND)
SCOPES = ("residual", "all")
BIAS_MODES = ("shared", "channel")
DEFAULT_ORDER = (0, 1, 2, 3)
DEFAULT_OPTIONS = {"order": list(DEFAULT_ORDER), "bias": "shared"}


def nearest_widths(n: int) -> str:
    """The nearest multiple(s) of 4 to ``n`` (never 0), as text: ``"28 or 32"``, ``"32"``."""
    lo, hi = (n // 4) * 4, (n // 4 + 1) * 4
    if lo <= 0 or n - lo > hi - n:
        return str(hi)
    if n - lo < hi - n:
        return str(lo)
    return f"{lo} or {hi}"


def check_order(order: Any, key: str = "model.recycle.order") -> tuple[int, int, int, int]:
    ok = isinstance(order, (list, tuple)) and len(order) == 4 and all(
        isinstance(k, int) and not isinstance(k, bool) for k in order) and sorted(order) == [0, 1, 2, 3]
    require(ok, f"{key}={list(order) if isinstance(order, (list, tuple)) else order!r} is impossible; list the "
                f"rotations 0, 1, 2, 3 (x 90 degrees) once each, e.g. [0, 1, 2, 3]")
    return tuple(int(k) for k in order)  # type: ignore[return-value]


class RecycleConv2d(nn.Module):
    """A convolution storing ``out_channels / 4`` filters; the others are their rotations (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], stride: int = 1,
                 padding: int = 0, bias: bool = True, order: Sequence[int] = DEFAULT_ORDER,
                 bias_mode: str = "shared"):
        super().__init__()
        k = tuple(kernel_size) if isinstance(kernel_size, (list, tuple)) else (int(kernel_size),) * 2
        require(out_channels % 4 == 0 and out_channels > 0,
                f"RecycleConv2d({in_channels}, {out_channels}, {k[0]}): out_channels={out_channels} is not "
                f"divisible by 4; use {nearest_widths(out_channels)}")
        require(k[0] == k[1], f"RecycleConv2d needs a square kernel (rotating a {k[0]}x{k[1]} filter changes its "
                              f"shape); got kernel_size={k}")
        require(bias_mode in BIAS_MODES,
                f"model.recycle.bias={bias_mode!r} is not supported; use one of {', '.join(BIAS_MODES)}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding = stride, padding
        self.order = check_order(order)
        self.bias_mode = bias_mode
        q = out_channels // 4
        self.weight = nn.Parameter(torch.empty(q, in_channels, *k))
        self.bias = nn.Parameter(torch.zeros(q if bias_mode == "shared" else out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default convolution initialisation on the stored quarter (same fan-in as the full layer)."""
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        if self.bias is not None:
            bound = 1 / (self.weight[0].numel() ** 0.5)
            nn.init.uniform_(self.bias, -bound, bound)

    def full_weight(self) -> torch.Tensor:
        """The ``(out, in, k, k)`` weight the layer computes with (differentiable in ``weight``)."""
        return torch.cat([torch.rot90(self.weight, k, dims=(2, 3)) for k in self.order], dim=0)

    def full_bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        return self.bias.repeat(4) if self.bias_mode == "shared" else self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.full_weight(), self.full_bias(), self.stride, self.padding)

    def to_conv2d(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` computing the same function (the full weight materialised)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         bias=self.bias is not None)
        conv = conv.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.full_weight())
            if self.bias is not None:
                conv.bias.copy_(self.full_bias())
        return conv.train(self.training)

    def resized_like(self, weight: torch.Tensor) -> RecycleConv2d:
        """A recycled convolution whose stored weight has ``weight``'s shape (``networks.adapt_to_state_dict``)."""
        return RecycleConv2d(weight.shape[1], 4 * weight.shape[0], self.kernel_size, self.stride, self.padding,
                             self.bias is not None, self.order, self.bias_mode).to(self.weight.device)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, stored={tuple(self.weight.shape)}, order={list(self.order)}, "
                f"bias={self.bias_mode if self.bias is not None else False}")


register_conv(KIND, RecycleConv2d)


# ----- the model option ---------------------------------------------------------------------------------------
def conv_choice(conv: str, recycle: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``model.conv`` (+ ``model.recycle`` options) as the ``conv`` argument of blocks (see
    :func:`lightning_sr.networks.conv.conv_kwargs`): ``{"kind": "normal"}`` or ``{"kind": "recycle", "order": ...,
    "bias_mode": ...}``."""
    require(conv in CONV_CHOICES, f"model.conv={conv!r} is not supported; use one of {', '.join(CONV_CHOICES)}")
    if conv != KIND:
        return {"kind": conv}
    opts = {**DEFAULT_OPTIONS, **dict(recycle or {})}
    unknown = sorted(set(opts) - set(DEFAULT_OPTIONS))
    require(not unknown, f"model.recycle.{unknown[0] if unknown else ''} is not an option of model.conv=recycle; "
                         f"use {', '.join(DEFAULT_OPTIONS)}")
    return {"kind": KIND, "order": check_order(opts["order"]), "bias_mode": opts["bias"]}


def check_scope(scope: str) -> str:
    require(scope in SCOPES, f"model.conv_scope={scope!r} is not supported; use residual (the residual blocks' "
                             f"convolutions) or all (every convolution but the first and last)")
    return scope


def check_width(conv: str, layer: str, channels: int, key: str = "model.channels") -> None:
    """A recycled layer with ``channels`` outputs: one line naming the layer and the nearest valid width."""
    if conv == KIND and channels % 4:
        raise ConfigError(f"model.conv=recycle: layer {layer} has {channels} output channels, not divisible by 4 "
                          f"(it stores out/4 filters and their 3 rotations); use {key}={nearest_widths(channels)}")


def recycled_layers(model: nn.Module) -> list[str]:
    return [n for n, m in conv_layers(model) if isinstance(m, RecycleConv2d)]


# ----- export to plain convolutions -----------------------------------------------------------------------------
def materialize(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every :class:`RecycleConv2d` replaced by an ``nn.Conv2d`` holding its full weight;
    same parameter names, so the state dict loads into the architecture built with ``conv=normal``."""
    out = copy.deepcopy(model)
    for name, mod in list(out.named_modules()):
        if isinstance(mod, RecycleConv2d):
            replace_module(out, name, mod.to_conv2d())
    args = getattr(out, "_srresnet_args", None)  # a multi-exit model builds its exported exits from these
    if isinstance(args, dict) and "conv" in args:
        args["conv"] = "normal"
    return out


def materialize_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of a materialised model: the same architecture with ordinary convolutions."""
    out = dict(spec)
    if "conv" in out:
        out["conv"] = "normal"
    return out


def require_plain_convs(model: nn.Module, what: str) -> None:
    """One line for tools that know only ``nn.Conv2d``/``nn.ConvTranspose2d`` (Torch-Pruning...)."""
    for name, m in conv_layers(model):
        if type(m) not in (nn.Conv2d, nn.ConvTranspose2d):
            raise ConfigError(
                f"{what}: layer {name} is a {type(m).__name__}, not an nn.Conv2d (model.conv=recycle); "
                f"materialise the model first: python -m lightning_sr.export ckpt_path=CKPT materialize=true "
                f"out=PLAIN.ckpt, then model.init_from=PLAIN.ckpt")
