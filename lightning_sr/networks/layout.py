"""The SR layout: the parts of an SR network that compression transforms address by name.

``head`` (features from the image) -> ``body`` (the residual blocks: an ``nn.ModuleList``, addressed by index) ->
``body_tail`` (after the blocks, before the long skip from the head; ``None`` where there is no long skip) ->
``upsampler`` (a ``Sequential`` of upsampling stages; an SRResNet's are ``Sequential(conv, PixelShuffle, act)``) ->
``tail`` (the output convolution). A network whose parts live in a submodule names it in ``blocks_owner`` (the video
generator: ``srnet``). ``default_protect`` lists the module names, relative to the network, that channel pruning
leaves alone unless told otherwise (their widths are the image's channels).

:class:`SRLayout` is the contract as a :class:`typing.Protocol`; :func:`check_layout` is the one check a transform
runs before it touches a network: one line naming the architecture, the missing part and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from torch import nn

from lightning_sr.errors import ConfigError
from lightning_sr.networks.registry import ARCHS

PARTS = ("head", "body", "body_tail", "upsampler", "tail")
PROTECT = "default_protect"


@runtime_checkable
class SRLayout(Protocol):
    """The parts of an SR network, on the module that holds them (:func:`layout_of`)."""

    head: nn.Module
    body: nn.ModuleList
    body_tail: nn.Module | None
    upsampler: nn.Module
    tail: nn.Module


def layout_of(model: nn.Module) -> nn.Module:
    """The module that holds the layout's parts: ``model``, or its ``blocks_owner`` submodule."""
    owner = getattr(model, "blocks_owner", None)
    return model.get_submodule(owner) if owner else model


def arch_name(model: nn.Module) -> str:
    """The registered architecture name of ``model`` (its class name when it is not registered)."""
    return next((name for name, cls in ARCHS.items() if cls is type(model)), type(model).__name__)


def check_layout(model: nn.Module, need: Iterable[str] = (*PARTS, PROTECT), what: str = "this transform"
                 ) -> nn.Module:
    """The module holding ``model``'s layout (:func:`layout_of`), after checking that it has every part in ``need``
    (layout parts, and ``default_protect`` on the network); :class:`~lightning_sr.errors.ConfigError` (one line)
    naming the architecture and the first missing part otherwise."""
    arch, kind = arch_name(model), type(model).__name__
    try:
        owner = layout_of(model)
    except AttributeError:
        owner = None
    where = f" (in its blocks_owner {model.blocks_owner!r})" if owner is not model else ""
    for part in need:
        if part == PROTECT:
            _check_protect(model, arch, kind, what)
            continue
        if part not in PARTS:
            raise ValueError(f"check_layout(need=...): {part!r} is not a layout part; use {', '.join(PARTS)}, "
                             f"{PROTECT}")
        if owner is None or not hasattr(owner, part):
            raise ConfigError(f"{what} needs the SR layout part `{part}` (lightning_sr/networks/layout.py); "
                              f"model.arch={arch!r} ({kind}) has none{where}: use an architecture with the SR layout "
                              f"(srresnet, multi_exit, frnet) or give {kind} a `{part}`")
        value = getattr(owner, part)
        if part == "body" and not isinstance(value, nn.ModuleList):
            raise ConfigError(f"{what} needs the SR layout part `body` as an nn.ModuleList of residual blocks "
                              f"(lightning_sr/networks/layout.py); model.arch={arch!r} ({kind}) has a "
                              f"{type(value).__name__}{where}: build the blocks as nn.ModuleList")
        if value is None and part != "body_tail":
            raise ConfigError(f"{what} needs the SR layout part `{part}` (lightning_sr/networks/layout.py); "
                              f"model.arch={arch!r} ({kind}) sets it to None{where}: only body_tail may be None")
    return owner


def _check_protect(model: nn.Module, arch: str, kind: str, what: str) -> None:
    protect = getattr(model, PROTECT, None)
    head = f"{what} needs the SR layout's {PROTECT} (lightning_sr/networks/layout.py); model.arch={arch!r} ({kind})"
    if protect is None or isinstance(protect, str):
        raise ConfigError(f"{head} has none: give {kind} a class attribute {PROTECT} = a tuple of the module names "
                          f"channel pruning keeps, e.g. ('head', 'tail')")
    names = dict(model.named_modules())
    unknown = [p for p in protect if p not in names]
    if unknown:
        raise ConfigError(f"{head} names {unknown}, which are not modules of it: list existing module names")
