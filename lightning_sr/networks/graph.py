"""A generator made of a captured graph (``torch.export``): QAT's prepared graph, a loaded int8 program.

The wrapped ``fx.GraphModule`` looks like a normal generator to the rest of the framework: ``forward(x)`` is the
main output; when the captured function returned several named outputs (every exit of a multi-exit model), it is a
:class:`~lightning_sr.networks.outputs.MultiOutput`, so ``named_outputs``/``forward_outputs`` work unchanged.

Train/eval: what ``.train()`` changes in an eager model (batch norm, dropout) is baked into a captured graph, and
an exported graph refuses ``.train()``/``.eval()``; the wrapper switches modes through a function its owner gives
(QAT: ``lightning_sr.transforms.pt2e_quant.set_mode``). Lightning restores modes after validation by writing the
``training`` attributes directly, which bypasses this: the QAT callback calls ``.train()`` again at each training
batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from lightning_sr.networks.outputs import MAIN, MultiOutput, is_multi_output
from lightning_sr.ops.compile import compile_cpu

MIN_SIZE = 3  # smallest LR height/width a captured graph accepts (the bicubic skip's border needs 2 pixels)
MAX_SIZE = 8192
MAX_BATCH = 4096

# attributes of the source generator that modules read (multi-exit: exit names); copied onto the wrapper
COPIED_ATTRS = ("scale", "deepest", "exit_names", "exits", "res_blocks")


class _AllOutputs(nn.Module):
    """What is captured for a multi-output generator: every output, then every exit's trunk features, as a tuple."""

    def __init__(self, gen: nn.Module):
        super().__init__()
        self.gen = gen

    def forward(self, x: torch.Tensor):
        outs, feats = self.gen.forward_outputs(x, return_features=True)
        return (*outs.values(), *feats.values())


def export_dims() -> dict[int, Any]:
    """The dynamic batch, height and width every generator is captured (and an int8 program saved) with."""
    d = torch.export.Dim
    return {0: d("N", min=1, max=MAX_BATCH), 2: d("H", min=MIN_SIZE, max=MAX_SIZE),
            3: d("W", min=MIN_SIZE, max=MAX_SIZE)}


def example_input(channels: int = 3, device: torch.device | str = "cpu") -> torch.Tensor:
    # batch 2 and H != W: a size-1 or duplicated size would be specialised by torch.export
    return torch.rand(2, channels, 16, 20, device=device)


def capture_target(gen: nn.Module) -> tuple[nn.Module, list[str], bool]:
    """(module to capture, output names, whether features follow the outputs) for a generator. A multi-output
    generator is captured as itself with ``forward`` returning every output then every exit's features (an
    instance attribute: remove it with :func:`release_target`), so the graph's tensors keep the generator's names."""
    if is_multi_output(gen):
        gen.forward = _AllOutputs.forward.__get__(_Self(gen))  # type: ignore[method-assign]
        return gen, list(gen.output_names), True
    return gen, [MAIN], False


class _Self:
    def __init__(self, gen: nn.Module):
        self.gen = gen


def release_target(gen: nn.Module) -> None:
    """Undo :func:`capture_target` (the generator's own ``forward`` again)."""
    if "forward" in gen.__dict__:
        del gen.forward


def _copied_attrs(gen: nn.Module | None, attrs: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(attrs or {})
    if gen is not None:
        for k in COPIED_ATTRS:
            v = getattr(gen, k, None)
            if v is not None and not isinstance(v, (nn.Module, torch.Tensor)):
                out.setdefault(k, list(v) if isinstance(v, (list, tuple)) else v)
    return out


class GraphGenerator(nn.Module):
    """A captured graph as a generator (see the module docstring). The graph is the ``captured`` child, so its
    tensors are ``captured.<original name>`` in a state dict (``head.0.weight`` stays ``head.0.weight``)."""

    def __init__(self, graph: nn.Module, outputs: Sequence[str] = (MAIN,), features: bool = False,
                 set_mode: Callable[[nn.Module, bool], Any] | None = None, source: nn.Module | None = None,
                 attrs: dict[str, Any] | None = None, runner: Callable | None = None):
        super().__init__()
        self.captured = graph
        self.runner = runner  # runs the graph instead of calling it (a compiled version of it)
        self.outputs = list(outputs)
        self.features = bool(features)
        self._set_mode = set_mode
        for k, v in _copied_attrs(source, attrs).items():
            setattr(self, k, v)

    @staticmethod
    def wrap(graph: nn.Module, outputs: Sequence[str] = (MAIN,), **kw) -> GraphGenerator:
        """A :class:`GraphMultiOutput` when ``outputs`` names several outputs, else a :class:`GraphGenerator`."""
        cls = GraphMultiOutput if len(outputs) > 1 else GraphGenerator
        return cls(graph, outputs, **kw)

    def attrs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in COPIED_ATTRS if hasattr(self, k)}

    def train(self, mode: bool = True) -> GraphGenerator:
        """Set the ``training`` flags and call the ``set_mode(graph, training)`` function the owner gave (QAT:
        torchao's ``move_exported_model_to_train/eval`` plus observer and batch-norm freezing,
        ``lightning_sr.transforms.pt2e_quant.set_mode``); without one (an int8 program: inference only) only set
        the flags."""
        self.training = mode
        for m in self.captured.modules():  # flags only: the graph's behaviour is switched by set_mode
            m.training = mode
        if self._set_mode is not None:
            self._set_mode(self.captured, mode)
        return self

    def compiled(self) -> GraphGenerator:
        """The same generator running its graph compiled for the CPU (:func:`lightning_sr.ops.compile.compile_cpu`:
        inductor with freezing; for an int8 program, oneDNN int8 kernels). Inference only."""
        return GraphGenerator.wrap(self.captured, self.outputs, features=self.features, attrs=self.attrs(),
                                   runner=compile_cpu(self.captured)).train(False)

    def _run(self, x: torch.Tensor):
        out = (self.runner or self.captured)(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]


class GraphMultiOutput(MultiOutput, GraphGenerator):
    """A captured multi-output generator: the graph returns every output (main first), then (``features``)
    every exit's trunk features."""

    def forward_outputs(self, x: torch.Tensor, return_features: bool = False):
        res = self._run(x)
        n = len(self.outputs)
        outs = dict(zip(self.outputs, res[:n], strict=True))
        if not return_features:
            return outs
        if not self.features:
            raise RuntimeError("this captured graph returns no features (an int8 program); use forward_outputs(x)")
        return outs, dict(zip(self.outputs, res[n:2 * n], strict=True))

    @property
    def output_names(self) -> list[str]:
        return list(self.outputs)


__all__ = ["COPIED_ATTRS", "GraphGenerator", "GraphMultiOutput", "capture_target", "example_input", "export_dims",
           "release_target"]
