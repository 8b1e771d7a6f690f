"""Compiling a model for the CPU, the one way latency is measured and int8 programs run fast (no dependency on
networks, data or metrics: ``networks.graph`` and ``cost`` both use it).

Compiling is ``torch.compile`` with inductor freezing, which turns a converted int8 program's reference
quantize/dequantize graph into oneDNN int8 kernels (run eagerly it is a slow fp32 emulation).

One-channel convolutions (a channel group pruned to one channel, a grayscale input) are compiled for fixed sizes:
inductor (torch 2.14) compiles a convolution whose input has one channel wrongly when height and width are dynamic.
Its output layout rule (``mkldnn_ir._prepare_convolution_fusion_create``, from pytorch#121400) predicts a
contiguous output for an input whose layout is contiguous, which a one-channel tensor always is (the stride of a
size-1 dimension does not count), but oneDNN's int8 convolution (prepacked weights) always writes channels-last,
and the fp32 one does too when its one-channel input came from a channels-last convolution. The program then stops
at its stride check (``expected size 4==4, stride 1==480 at dim=1``). With fixed sizes inductor predicts
channels-last, which is right; such a model is compiled once per input size.
"""

from __future__ import annotations

import logging

import torch
from torch import fx, nn

log = logging.getLogger(__name__)
CONV_OPS = ("aten.conv1d.", "aten.conv2d.", "aten.conv3d.", "aten.convolution.", "aten.conv_transpose")
STATIC_RECOMPILES = 64  # sizes a fixed-size compilation is made for before dynamo runs the model eagerly


def is_int8(model: nn.Module) -> bool:
    """A converted int8 model: its weights are int8 buffers."""
    return any(b.dtype == torch.int8 for b in model.buffers())


def single_channel_convs(model: nn.Module) -> list[str]:
    """The convolutions of ``model`` whose input has one channel: conv modules with ``in_channels == 1`` and, in a
    captured graph (an int8 program), convolution nodes whose input's recorded shape has one channel."""
    out = [name or "model" for name, m in model.named_modules()
           if isinstance(m, nn.modules.conv._ConvNd) and m.in_channels == 1]
    for gname, gm in model.named_modules():
        if not isinstance(gm, fx.GraphModule):
            continue
        for n in gm.graph.nodes:
            if n.op == "call_function" and str(n.target).startswith(CONV_OPS) and _graph_in_channels(gm, n) == 1:
                    stack = list((n.meta.get("nn_module_stack") or {}).values())
                    out.append(str(stack[-1][0]) if stack and stack[-1][0] else f"{gname or 'model'}:{n.name}")
    return out


def _graph_in_channels(gm: fx.GraphModule, conv: fx.Node) -> int | None:
    """Input channels of a convolution node: its input's recorded shape, else its weight's (a converted graph's new
    dequantize nodes record none): the first tensor found by following first arguments back to a stored tensor."""
    val = conv.args[0].meta.get("val") if conv.args and isinstance(conv.args[0], fx.Node) else None
    if isinstance(val, torch.Tensor) and val.dim() >= 3:
        return int(val.shape[1])
    w = conv.args[1] if len(conv.args) > 1 else None
    while isinstance(w, fx.Node) and w.op == "call_function" and w.args:
        w = w.args[0]
    if not (isinstance(w, fx.Node) and w.op == "get_attr"):
        return None
    t = gm
    for part in str(w.target).split("."):
        t = getattr(t, part, None)
    if not isinstance(t, torch.Tensor) or t.dim() < 3:
        return None
    if "transpose" in str(conv.target):  # (in, out / groups, k...)
        return int(t.shape[0])
    groups = conv.args[6] if len(conv.args) > 6 and isinstance(conv.args[6], int) else 1
    return int(t.shape[1]) * groups


def compile_cpu(model: nn.Module):
    """``torch.compile`` (inductor, freezing: weights are constants, which int8 needs to prepack its oneDNN
    kernels) of an eval-mode model, dynamic in height and width: a callable ``x -> model(x)`` without gradients.
    A model with a one-channel convolution is compiled for fixed sizes instead (see the module docstring)."""
    if is_int8(model):
        # importing torchao's x86 quantizer registers inductor's int8 fusion passes; without it inductor compiles
        # the quantize/dequantize graph into fp32 kernels (a silent slow path)
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    ones = single_channel_convs(model)
    if ones:
        log.warning("compile: %d convolution(s) read a single channel (%s%s); compiled for each input size (inductor "
                    "miscompiles them with dynamic sizes)", len(ones), ", ".join(ones[:4]), " ..." if len(ones) > 4 else "")
    compiled = torch.compile(model, dynamic=False if ones else None)
    first = [True]

    def run(x: torch.Tensor):
        with inductor_config.patch(freezing=True), torch.no_grad(), \
                dynamo_config.patch(recompile_limit=max(dynamo_config.recompile_limit, STATIC_RECOMPILES if ones else 0)):
            if first[0] and not ones:  # one graph for every image size
                # marked on an alias, not on the caller's tensor: a tensor marked here and then given to another
                # compiled model (latencies timed side by side on one input) made inductor miscompile that model
                x = x.detach()
                torch._dynamo.mark_dynamic(x, x.dim() - 2)
                torch._dynamo.mark_dynamic(x, x.dim() - 1)
            first[0] = False
            return compiled(x)

    return run


__all__ = ["compile_cpu", "is_int8", "single_channel_convs"]
