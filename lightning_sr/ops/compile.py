"""Compiling a model for the CPU, the one way latency is measured and int8 programs run fast (no dependency on
networks, data or metrics: ``networks.graph`` and ``cost`` both use it).

:func:`compile_cpu` is ``torch.compile`` with inductor freezing, which turns a converted int8 program's reference
quantize/dequantize graph into oneDNN int8 kernels (run eagerly it is a slow fp32 emulation); :func:`is_int8` tells
such a program from an fp32 model.
"""

from __future__ import annotations

import torch
from torch import nn


def is_int8(model: nn.Module) -> bool:
    """A converted int8 model: its weights are int8 buffers."""
    return any(b.dtype == torch.int8 for b in model.buffers())


def compile_cpu(model: nn.Module):
    """``torch.compile`` (inductor, freezing: weights are constants, which int8 needs to prepack its oneDNN
    kernels) of an eval-mode model, dynamic in height and width: a callable ``x -> model(x)`` without gradients."""
    if is_int8(model):
        # importing torchao's x86 quantizer registers inductor's int8 fusion passes; without it inductor compiles
        # the quantize/dequantize graph into fp32 kernels (a silent slow path)
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401
    import torch._inductor.config as inductor_config

    compiled = torch.compile(model)
    first = [True]

    def run(x: torch.Tensor):
        with inductor_config.patch(freezing=True), torch.no_grad():
            if first[0]:  # one graph for every image size
                torch._dynamo.mark_dynamic(x, x.dim() - 2)
                torch._dynamo.mark_dynamic(x, x.dim() - 1)
                first[0] = False
            return compiled(x)

    return run


__all__ = ["compile_cpu", "is_int8"]
