"""int8 quantization of a generator through torchao's PT2E flow: the part QAT and PTQ share (no Lightning here).

capture (``torch.export``, dynamic batch/height/width) -> prepare (``prepare_qat_pt2e`` or ``prepare_pt2e`` with
the SR quantizer) -> fake-quantized training or calibration -> convert (``convert_pt2e``: a graph of int8 weights and
quantize/dequantize pairs) -> ``torch.compile`` with inductor freezing, which fuses every ``dequantize -> conv ->
quantize`` into a oneDNN u8s8 convolution (:func:`lightning_sr.ops.compile.compile_cpu`).
:mod:`lightning_sr.transforms.int8_io` writes the converted program (``int8.pt2``) and reads it back.

The recipe is torchao's ``X86InductorQuantizer`` (int8 per-channel symmetric weights, uint8 per-tensor affine
activations; conv, linear, conv+add, mul quantized; pooling and cat pass int8 through), plus what an SR network
needs, each option switchable so the benchmark can show what it is worth. Before annotation, multiplications by
exactly 1 (``x + 1.0 * residual``, the residual scale of the blocks) are removed from the graph (exact), so that
each block's second convolution and its residual addition fuse.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torchao.quantization.pt2e as pt2e
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86q  # also registers inductor int8 passes
from torch import nn
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec
from torchao.quantization.pt2e.quantizer.utils import get_input_act_qspec, get_output_act_qspec

from lightning_sr.errors import require
from lightning_sr.networks.conv import conv_layers
from lightning_sr.networks.graph import (
    GraphGenerator,
    capture_target,
    example_input,
    export_dims,
    release_target,
)

log = logging.getLogger(__name__)
aten = torch.ops.aten

# ----- torchao's pattern rewrites, only where the graph can match ---------------------------------------------------
# torchao rewrites a QAT graph by exporting small pattern graphs and replacing their matches: conv + batch norm for
# every conv kind (conv1d, conv2d, conv_transpose1d, conv_transpose2d: 3 patterns each in prepare_qat_pt2e, 24 in
# convert_pt2e), and dropout / batch norm at every train/eval switch. Each export is a torch.export (0.2-0.5 s on
# this CPU), about 100 per QAT run of a batch-norm generator. A pattern whose op the graph does not contain cannot
# match, and a helper that finds no match changes only what the helper of the kind that is there changes too (dead
# code, duplicated dequantize nodes), so :func:`only_matching_patterns` skips those helpers. The result computes the
# same; on our generators the prepared and the int8 graph equal torchao's full path in code and tensors
# (tests/transforms/test_pt2e_quant.py), though another graph could get other node names. A torchao without these
# helpers runs its own path unchanged. Not thread-safe (it patches torchao's module for the duration of the block).
SKIP_ABSENT_PATTERNS = True
_CONV_KINDS = ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d")  # torchao's conv_fn.__name__ values


def _op_names(m: torch.fx.GraphModule) -> list[str]:
    return [str(n.target) for n in m.graph.nodes if n.op == "call_function"]


def _has(m: torch.fx.GraphModule, *fragments: str) -> bool:
    return any(f in name for name in _op_names(m) for f in fragments)


def _conv_helper(orig):
    def helper(m, conv_fn, *args, **kwargs):
        name = getattr(conv_fn, "__name__", "")
        if name in _CONV_KINDS and not _has(m, f"aten.{name}.", "aten.convolution.", "aten._convolution."):
            return m  # no conv of this kind (nor a generic convolution): none of its patterns can match
        return orig(m, conv_fn, *args, **kwargs)
    return helper


def _mode_helper(orig, fragments: tuple[str, ...]):
    def helper(m, *args, **kwargs):
        if not _has(m, *fragments):
            return None  # torchao's helpers rewrite in place and return nothing
        return orig(m, *args, **kwargs)
    return helper


@contextlib.contextmanager
def only_matching_patterns():
    """Within the block, torchao's conv + batch norm, dropout and batch norm rewrites skip the pattern families
    whose op the graph does not contain (see the comment above); outside it torchao is untouched."""
    from torchao.quantization.pt2e import export_utils, qat_utils

    patches = [(qat_utils, "_fuse_conv_bn_qat_helper", _conv_helper),
               (qat_utils, "_fold_conv_bn_qat_helper", _conv_helper),
               (export_utils, "_replace_dropout", lambda f: _mode_helper(f, ("dropout",))),
               (export_utils, "_replace_batchnorm", lambda f: _mode_helper(f, ("batch_norm",)))]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches if hasattr(mod, name)]
    if SKIP_ABSENT_PATTERNS and len(saved) == len(patches):
        for (mod, name, wrap), (_, _, orig) in zip(patches, saved, strict=True):
            setattr(mod, name, wrap(orig))
    try:
        yield
    finally:
        for mod, name, orig in saved:
            setattr(mod, name, orig)

_ANNOT = x86q.QUANT_ANNOTATION_KEY
_Annotation = x86q._X86InductorQuantizationAnnotation  # torchao's annotation class (private, no public alias)
ACTS = (aten.prelu.default, aten.leaky_relu.default, aten.leaky_relu_.default)
SHUFFLES = (aten.pixel_shuffle.default,)
Q_OPS = ("quantized_decomposed.quantize_per_tensor",)
DQ_OPS = ("quantized_decomposed.dequantize_per_tensor", "quantized_decomposed.dequantize_per_channel")


def has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX)."""
    try:
        return bool(torch.cpu._is_vnni_supported()) or bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


@dataclass
class QuantSettings:
    """The quantizer's options, what an SR network needs beyond torchao's x86 recipe; ``asdict`` goes into int8.json.

    * ``shuffle_int8``: ``pixel_shuffle`` passes int8 through (it only moves values: its output shares its input's
      scale and zero point), so the upsampler convolution writes uint8 instead of fp32.
    * ``act_int8``: PReLU/LeakyReLU (no int8 kernel, no oneDNN post-op in inductor) read and write int8: the
      convolution before them writes uint8 and inductor fuses dequantize -> PReLU -> quantize into one uint8 ->
      uint8 loop, instead of an fp32 tensor written by the convolution and read back (an fp32 "island").
    * ``skip_fp32``: an addition of the network's output and a fixed function of the input (the global bicubic
      skip) stays fp32: quantizing the bicubic image to uint8 would put a ~50 dB error floor under every output.
    * ``fp32_layers``: module-name prefixes kept fp32 (e.g. ``[head, tail, upsampler]``, the PAMS convention);
      default none: every convolution, head and tail included, is int8.
    * ``reduce_range``: 7-bit activations, needed on CPUs without VNNI (AVX2's ``vpmaddubsw`` saturates int16
      sums, and the compiled model then drifts from the reference graph); ``auto``: on when the CPU lacks VNNI.
    """

    shuffle_int8: bool = True
    act_int8: bool = True
    skip_fp32: bool = True
    fp32_layers: list[str] = field(default_factory=list)
    reduce_range: bool | str = "auto"

    def resolved_reduce_range(self) -> bool:
        return (not has_vnni()) if self.reduce_range == "auto" else bool(self.reduce_range)

    def describe(self, qat: bool) -> dict[str, Any]:
        return {"recipe": "torchao X86InductorQuantizer (PT2E)" + (" QAT" if qat else " PTQ"),
                "weights": "int8 per-channel symmetric", "activations": "uint8 per-tensor affine",
                **asdict(self), "reduce_range": self.resolved_reduce_range()}


def check_settings(key: str, s: QuantSettings) -> None:
    """One-line ConfigErrors for impossible quantizer options (``key``: the config prefix)."""
    for name in ("shuffle_int8", "act_int8", "skip_fp32"):
        v = getattr(s, name)
        require(isinstance(v, bool), f"{key}.{name}={v!r} must be true or false")
    require(s.reduce_range in ("auto", True, False),
            f"{key}.reduce_range={s.reduce_range!r} is not supported; use auto, true or false")
    require(isinstance(s.fp32_layers, (list, tuple)) and all(isinstance(n, str) and n for n in s.fp32_layers),
            f"{key}.fp32_layers={s.fp32_layers!r} must be a list of module names (e.g. [head, tail])")


# ----- capture ------------------------------------------------------------------------------------------------
def in_channels(gen: nn.Module) -> int:
    first = next((m for _, m in conv_layers(gen)), None)
    return int(getattr(first, "in_channels", 3) or 3)


def drop_identity_muls(gm: GraphModule) -> int:
    """Remove ``mul(x, 1.0)`` nodes (exact): a residual scale of 1 would otherwise split a convolution from the
    addition it fuses with. Returns how many were removed."""
    n = 0
    for node in list(gm.graph.nodes):
        if (node.op == "call_function" and node.target in (aten.mul.Tensor, aten.mul.Scalar)
                and len(node.args) == 2 and isinstance(node.args[1], (int, float)) and float(node.args[1]) == 1.0
                and isinstance(node.args[0], Node)):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            n += 1
    if n:
        gm.graph.lint()
        gm.recompile()
    return n


def capture(gen: nn.Module, training: bool) -> tuple[GraphModule, list[str], bool]:
    """(graph, output names, features follow) of ``gen`` captured by ``torch.export`` with dynamic batch, height
    and width, in train (QAT: batch norm in training form) or eval mode (PTQ). ``gen`` keeps its mode."""
    target, outputs, features = capture_target(gen)
    p = next(gen.parameters(), None)
    x = example_input(in_channels(gen), p.device if p is not None else "cpu")
    was = gen.training
    gen.train(training)
    try:
        ep = torch.export.export(target, (x,), dynamic_shapes={"x": export_dims()})
    finally:
        release_target(gen)
        gen.train(was)
    gm = ep.module()
    drop_identity_muls(gm)
    return gm, outputs, features


# ----- the quantizer ------------------------------------------------------------------------------------------
def module_names(node: Node) -> list[str]:
    return [str(v[0]) for v in (node.meta.get("nn_module_stack") or {}).values()]


def under_prefix(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _in_layers(node: Node, prefixes: Iterable[str]) -> bool:
    return any(under_prefix(n, prefixes) for n in module_names(node))


def _attr(gm: GraphModule, target: str):
    obj: Any = gm
    for part in str(target).split("."):
        obj = getattr(obj, part, None)
    return obj


def skip_adds(gm: GraphModule) -> list[Node]:
    """Additions of a network output and a fixed function of the input (the global bicubic/bilinear skip): one
    operand depends on parameters, the other on none."""
    learned: dict[Node, bool] = {}
    out = []
    for n in gm.graph.nodes:  # topological order
        own = n.op == "get_attr" and isinstance(_attr(gm, n.target), nn.Parameter)
        learned[n] = own or any(learned.get(a, False) for a in n.all_input_nodes)
        if n.op == "call_function" and n.target in (aten.add.Tensor, aten.add_.Tensor):
            ins = [a for a in n.args[:2] if isinstance(a, Node)]
            if len(ins) == 2 and [learned[a] for a in ins].count(True) == 1:
                out.append(n)
    return out


class SRQuantizer(x86q.X86InductorQuantizer):
    """torchao's x86 recipe plus the SR options of :class:`QuantSettings` (see the module docstring)."""

    def __init__(self, settings: QuantSettings, qat: bool):
        super().__init__()
        self.settings = settings
        self.set_global(x86q.get_default_x86_inductor_quantization_config(
            is_qat=qat, reduce_range=settings.resolved_reduce_range()))

    def annotate(self, model: GraphModule) -> GraphModule:
        s = self.settings
        if s.fp32_layers:  # torchao matches a module name exactly, and a captured graph's module stacks skip some
            # containers (``body.0.conv1`` is under ``body.0`` but not ``body``): name every module under a prefix
            names = {m for n in model.graph.nodes for m in module_names(n)}
            for name in sorted(m for m in names if m and under_prefix(m, s.fp32_layers)):
                self.module_name_qconfig[name] = None
        if s.skip_fp32:  # annotated without quantization first: the recipe's conv+add pattern then skips them
            for n in skip_adds(model):
                n.meta[_ANNOT] = _Annotation(_annotated=True)
        super().annotate(model)
        cfg = self.global_config
        if cfg is None:
            return model
        act = get_input_act_qspec(cfg)
        for n in model.graph.nodes:
            if n.op != "call_function" or _ANNOT in n.meta and n.meta[_ANNOT]._annotated:
                continue
            if s.fp32_layers and _in_layers(n, s.fp32_layers):
                continue
            src = n.args[0] if n.args and isinstance(n.args[0], Node) else None
            if src is None:
                continue
            if s.shuffle_int8 and n.target in SHUFFLES:
                n.meta[_ANNOT] = _Annotation(input_qspec_map={src: act}, output_qspec=SharedQuantizationSpec((src, n)),
                                             _annotated=True, _is_output_of_quantized_pattern=True)
            elif s.act_int8 and n.target in ACTS:
                n.meta[_ANNOT] = _Annotation(input_qspec_map={src: act}, output_qspec=get_output_act_qspec(cfg),
                                             _annotated=True, _is_output_of_quantized_pattern=True)
        return model


# ----- prepare / train-eval / convert -------------------------------------------------------------------------
OBSERVERS_FROZEN, BN_FROZEN = "_lsr_observers_frozen", "_lsr_bn_frozen"
TRAINING_ATTR = "_exported_training"  # torchao's flag: which mode the graph's ops are in
BATCH_NORMS = (aten.batch_norm.default, aten._native_batch_norm_legit.default, aten.cudnn_batch_norm.default)


def prepare(gm: GraphModule, settings: QuantSettings, qat: bool) -> GraphModule:
    """Insert fake quantization (QAT) or observers (PTQ) into a captured graph."""
    q = SRQuantizer(settings, qat)
    with only_matching_patterns():
        prepared = (prepare_qat_pt2e if qat else prepare_pt2e)(gm, q)
    setattr(prepared, OBSERVERS_FROZEN, False)
    setattr(prepared, BN_FROZEN, False)
    pt2e.allow_exported_model_train_eval(prepared)  # anything calling .train()/.eval() on it directly works
    return prepared


def freeze_bn(gm: GraphModule) -> int:
    """Batch norm of the graph uses (and stops updating) its running statistics, also in training."""
    n = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in BATCH_NORMS and node.args[5] is not False:
            node.args = (*node.args[:5], False, *node.args[6:])
            n += 1
    if n:
        gm.recompile()
    return n


MODE_OPS = (*BATCH_NORMS, aten.dropout.default, aten.dropout_.default, aten.native_dropout.default)


def set_mode(gm: GraphModule, training: bool) -> None:
    """Train or eval mode of a prepared graph: torchao's graph rewrite (``move_exported_model_to_train/eval``:
    batch norm, dropout), observers on only in training and only until frozen, batch norm kept frozen once
    frozen. A graph without batch norm or dropout has nothing to rewrite: torchao's helpers (which export their
    patterns again at every call, seconds each) are skipped and only the mode flag is set."""
    if any(n.op == "call_function" and n.target in MODE_OPS for n in gm.graph.nodes):
        with only_matching_patterns():
            (pt2e.move_exported_model_to_train if training else pt2e.move_exported_model_to_eval)(gm)
    else:
        setattr(gm, TRAINING_ATTR, training)
    if getattr(gm, BN_FROZEN, False):
        freeze_bn(gm)
    sync_observers(gm)


def sync_observers(gm: GraphModule) -> None:
    """Observers on exactly when the graph is in training mode and they are not frozen. Their on/off flags are
    buffers, so a state dict can carry other values than the mode says: Lightning's last.ckpt at a validation step
    is written after the validation, with the observers off, and loading it into a graph in training mode must not
    leave them off (cheap: no graph rewrite)."""
    observe = getattr(gm, TRAINING_ATTR, False) and not getattr(gm, OBSERVERS_FROZEN, False)
    gm.apply(pt2e.enable_observer if observe else pt2e.disable_observer)


def freeze(gm: GraphModule, observers: bool = False, bn: bool = False) -> None:
    if observers:
        setattr(gm, OBSERVERS_FROZEN, True)
        gm.apply(pt2e.disable_observer)
    if bn:
        setattr(gm, BN_FROZEN, True)
        freeze_bn(gm)


def wrap_prepared(prepared: GraphModule, outputs: list[str], features: bool, source: nn.Module) -> GraphGenerator:
    return GraphGenerator.wrap(prepared, outputs, features=features, set_mode=set_mode, source=source)


def strip_unused(gm: GraphModule) -> int:
    """Delete the tensors no node reads (convert leaves the fp32 weights next to their int8 copies); bytes freed."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    freed = 0
    for name, t in [*gm.named_parameters(), *gm.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            freed += t.numel() * t.element_size()
            delattr(gm.get_submodule(owner) if owner else gm, leaf)
    return freed


def convert(prepared: GraphModule) -> GraphModule:
    """The int8 graph of a prepared one (a copy: ``convert_pt2e`` rewrites its argument), unused tensors removed."""
    gm = copy.deepcopy(prepared)
    with only_matching_patterns():
        pt2e.move_exported_model_to_eval(gm)
        int8 = convert_pt2e(gm)
    strip_unused(int8)
    return int8


def covered_layers(prepared: GraphModule, source: nn.Module) -> tuple[list[str], list[str]]:
    """(quantized, not quantized) weight layers of ``source`` in a prepared graph: a layer is covered when a fake
    quantizer/observer reads its weight (directly, or scaled by batch norm in a QAT conv-bn pattern)."""
    fq_types = (pt2e.FakeQuantizeBase, pt2e.ObserverBase)

    def is_fq(n: Node) -> bool:
        return n.op == "call_module" and isinstance(prepared.get_submodule(n.target), fq_types)

    covered = set()
    for n in prepared.graph.nodes:
        if not is_fq(n):
            continue
        stack, seen = [a for a in n.all_input_nodes], set()
        while stack:
            a = stack.pop()
            if a in seen or is_fq(a) or a.op == "placeholder":
                continue
            seen.add(a)
            if a.op == "get_attr":
                t = _attr(prepared, a.target)
                if isinstance(t, nn.Parameter) and t.dim() >= 2:
                    covered.add(str(a.target).rsplit(".", 1)[0])
            elif a.op == "call_function" and not str(a.target).startswith(("aten.conv", "aten.linear")):
                stack.extend(a.all_input_nodes)
    layers = [name for name, m in source.named_modules()
              if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2]
    return [n for n in layers if n in covered], [n for n in layers if n not in covered]


# ----- describing a converted graph ---------------------------------------------------------------------------
def _is(node: Any, prefixes: tuple[str, ...]) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and str(node.target).startswith(prefixes)


DESCRIBED = {"aten.conv2d": "conv2d", "aten.conv1d": "conv1d", "aten.linear": "linear",
             "aten.conv_transpose2d": "conv_transpose2d", "aten.add": "add", "aten.mul": "mul",
             "aten.prelu": "prelu", "aten.leaky_relu": "leaky_relu", "aten.relu": "relu",
             "aten.pixel_shuffle": "pixel_shuffle", "aten.cat": "cat", "aten.max_pool2d": "max_pool2d"}


def layer_precisions(int8: GraphModule) -> list[dict[str, str]]:
    """For each compute op of a converted graph: ``{"layer", "op", "precision"}`` with precision ``int8`` (runs on
    int8 data: quantized convolution, an addition fused into it, int8 passing through pixel_shuffle/cat/pooling)
    or ``fp32`` (computed in fp32; ``"io": "int8"`` when it reads and writes int8, a fused dequantize -> op ->
    quantize loop). Layers are named by module (``body.0.conv1``, ``upsampler.0.2``); ops written in a forward
    method by ``<module>:<op>`` (``body.0:add``; the generator itself is ``model``)."""
    rows = []
    counts: dict[str, int] = {}
    for n in int8.graph.nodes:
        if n.op != "call_function":
            continue
        op = next((v for k, v in DESCRIBED.items() if str(n.target).startswith(k + ".")), None)
        if op is None:
            continue
        tensors = [a for a in n.args if isinstance(a, Node) and not (a.op == "get_attr")]
        if op == "cat" and n.args and isinstance(n.args[0], (list, tuple)):
            tensors = [a for a in n.args[0] if isinstance(a, Node)]
        dq_in = bool(tensors) and all(_is(a, DQ_OPS) for a in tensors)
        q_out = any(_is(u, Q_OPS) for u in n.users)
        if op in ("conv2d", "conv1d", "linear", "conv_transpose2d"):
            w = n.args[1] if len(n.args) > 1 else None
            prec = "int8" if _is(n.args[0], DQ_OPS) and _is(w, DQ_OPS) else "fp32"
        elif op in ("add", "mul"):
            conv_in = [a for a in tensors if _is(a, ("aten.conv",)) or _is(a, ("aten.linear",))]
            others_q = all(_is(a, DQ_OPS) for a in tensors if a not in conv_in)
            prec = "int8" if q_out and (dq_in or (conv_in and others_q)) else "fp32"
        elif op in ("pixel_shuffle", "cat", "max_pool2d"):
            prec = "int8" if dq_in and q_out else "fp32"
        else:
            prec = "fp32"
        names = module_names(n)
        mod = names[-1] if names else ""
        if op in ("conv2d", "conv1d", "linear", "conv_transpose2d") and mod:
            layer = mod
        elif mod and not _module_is_root(n):
            layer = mod if _leaf_op(n) else f"{mod}:{op}"
        else:
            layer = f"model:{op}"
        key = layer
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > 1:
            layer = f"{layer}#{counts[key]}"
        row = {"layer": layer, "op": op, "precision": prec}
        if prec == "fp32" and op not in ("conv2d", "conv1d", "linear", "conv_transpose2d"):
            row["io"] = "int8" if dq_in and q_out else "fp32"
        rows.append(row)
    return rows


def _module_is_root(n: Node) -> bool:
    stack = list((n.meta.get("nn_module_stack") or {}).values())
    return len(stack) <= 1 or (len(stack) == 2 and str(stack[-1][0]) == "gen")


def _leaf_op(n: Node) -> bool:
    """Whether the op is the whole of its innermost module (an nn.PReLU, nn.PixelShuffle...)."""
    stack = list((n.meta.get("nn_module_stack") or {}).values())
    t = str(stack[-1][1]) if stack else ""
    return t.startswith("torch.nn.modules.") and not t.endswith(("Sequential", "ModuleList"))


def summarize_layers(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Counts and names: ``{"int8": [...], "fp32": [...], "convs_int8": "9/9", "fp32_islands": n}``."""
    # learned layers (named by their module); a functional conv in a forward method is a fixed filter (the
    # bicubic skip) and not counted
    convs = [r for r in rows if r["op"] in ("conv2d", "conv1d", "linear", "conv_transpose2d") and ":" not in r["layer"]]
    return {"int8": [r["layer"] for r in rows if r["precision"] == "int8"],
            "fp32": [r["layer"] + (" (int8 in/out)" if r.get("io") == "int8" else "") for r in rows
                     if r["precision"] == "fp32"],
            "convs_int8": f"{sum(r['precision'] == 'int8' for r in convs)}/{len(convs)}"}


__all__ = ["QuantSettings", "SRQuantizer", "capture", "check_settings", "convert",
           "covered_layers", "drop_identity_muls", "freeze", "freeze_bn", "has_vnni", "layer_precisions", "prepare",
           "set_mode", "skip_adds", "strip_unused", "summarize_layers", "wrap_prepared"]
