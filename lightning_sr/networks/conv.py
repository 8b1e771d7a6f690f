"""The one place convolutions of the generators come from, and the one test for "is this a convolution".

Architectures build every convolution here from a ``kind`` (``normal`` by default); a new convolution type (Weight
Recycle, a quantized form...) is registered here once and becomes a model option without touching the
architectures. Pruning, cost and export code recognise convolutions through this module's test, never through
``isinstance(m, nn.Conv2d)`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from torch import nn

from lightning_sr.errors import require

# kind -> factory(in_channels, out_channels, kernel_size, stride, padding, bias, **options) -> module
CONV_KINDS: dict[str, Callable[..., nn.Module]] = {"normal": nn.Conv2d}
# every module type that is a convolution (subclasses included)
CONV_TYPES: tuple[type, ...] = (nn.Conv2d, nn.ConvTranspose2d)


def register_conv(kind: str, factory: Callable[..., nn.Module], module_type: type | None = None) -> None:
    """Make ``kind`` available to :func:`make_conv` (``module_type``: the class it builds, for :func:`is_conv`)."""
    global CONV_TYPES
    CONV_KINDS[kind] = factory
    cls = module_type or (factory if isinstance(factory, type) else None)
    if cls is not None and cls not in CONV_TYPES:
        CONV_TYPES = (*CONV_TYPES, cls)


def make_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int | None = None,
              bias: bool = True, kind: str = "normal", **options: Any) -> nn.Module:
    """A ``kernel_size`` convolution ('same' padding unless given) of the requested ``kind``; ``options`` go to
    that kind's factory (e.g. ``order``/``bias_mode`` of ``recycle``)."""
    require(kind in CONV_KINDS, f"model.conv={kind!r} is not supported; use one of {', '.join(CONV_KINDS)}")
    pad = kernel_size // 2 if padding is None else padding
    return CONV_KINDS[kind](in_channels, out_channels, kernel_size, stride=stride, padding=pad, bias=bias, **options)


def conv_kwargs(conv: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """What architectures pass around as their ``conv`` argument, as :func:`make_conv` keyword arguments:
    a kind (``"recycle"``) or a mapping ``{"kind": "recycle", **options}``."""
    if conv is None:
        return {"kind": "normal"}
    return {"kind": conv} if isinstance(conv, str) else {"kind": "normal", **dict(conv)}


def is_conv(module: nn.Module) -> bool:
    return isinstance(module, CONV_TYPES)


def conv_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of every convolution of ``model``, in definition order."""
    return ((n, m) for n, m in model.named_modules() if is_conv(m))


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` of ``model`` is (``body.0.conv1``: the child ``conv1`` of ``body.0``)."""
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], new)
