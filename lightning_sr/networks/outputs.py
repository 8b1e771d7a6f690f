"""What a generator's outputs are: the one function every module, callback and tool asks.

A plain generator has one output, named ``""`` (:data:`MAIN`). A generator with several outputs
(the early exits of a multi-exit network) derives from :class:`MultiOutput` and implements
:meth:`MultiOutput.forward_outputs`, which returns ``{name: SR image}`` with its main (deepest)
output under ``""``; ``forward(x)`` stays the main output alone, so it is a plain generator everywhere else.
"""

from __future__ import annotations

import torch
from torch import nn

MAIN = ""


class MultiOutput:
    """Mixin for generators with named outputs besides the main one."""

    def forward_outputs(self, x: torch.Tensor, return_features: bool = False):
        """``{name: SR}`` (main output under ``""``); with ``return_features`` also ``{name: features}``."""
        raise NotImplementedError

    @property
    def output_names(self) -> list[str]:
        raise NotImplementedError


def is_multi_output(gen: nn.Module) -> bool:
    return isinstance(gen, MultiOutput)


def named_outputs(gen: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every output of ``gen`` for input ``x``: ``{"": sr}``, plus ``{"exit8": ...}`` for a multi-exit model."""
    if isinstance(gen, MultiOutput):
        return gen.forward_outputs(x)
    return {MAIN: gen(x)}


def output_names(gen: nn.Module) -> list[str]:
    return list(gen.output_names) if isinstance(gen, MultiOutput) else [MAIN]
