"""Channel surgery: tensors shrink for real (fewer MACs, smaller files, faster inference). No Lightning here.

**Groups.** Torch-Pruning's dependency graph finds the channels that must go together: the trunk channels of all
residual blocks are one group (coupled by the additions and the long skip from the head), each block's inner
channels (conv1 out = conv2 in) are a group of their own. ``compression=channel_prune`` ranks channels by
``importance`` (``l1``/``l2``: group magnitude; ``taylor``: ``|w * dL/dw|`` with the gradient of the L1 loss on a
calibration batch), per layer (``global_pruning: false``) or across all groups (``true``), and removes ``ratio`` of
them; ``compression=channel_sparsity`` gates the groups instead, and the gates are folded in before the removal.

Protection (``protect``, module-name prefixes; default: the model's ``default_protect``, ``[head, tail]`` for an
SRResNet, ``[fnet, srnet.head, srnet.tail]`` for the video generator): a protected convolution keeps its *output*
channels, and so does every group it belongs to. With the head protected the trunk width stays and the blocks'
inner channels (and the upsampler, below) are pruned; ``protect=[tail]`` prunes the trunk too. The tail's output
(RGB) is never pruned.

PixelShuffle: convolutions that feed a PixelShuffle are never handed to Torch-Pruning (it maps channels across the
shuffle wrongly). With ``upsampler: group`` (default) each upsampler stage ``Sequential(conv, PixelShuffle, act)``
is pruned as a stage, ranked by the same importance over its tensors (always per stage, at ``ratio``); with
``upsampler: ignore`` the upsampler keeps its width.

The network must have the SR layout (:mod:`lightning_sr.networks.layout`: head, body, upsampler, tail and, when no
``protect`` is given, ``default_protect``); one without is refused by :func:`~lightning_sr.networks.layout.check_layout`
with one line naming the missing part. A pruned checkpoint reloads without a config: ``lsr_arch`` +
``networks.registry.adapt_to_state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from lightning_sr.cost import count_macs
from lightning_sr.errors import check, check_choice, require
from lightning_sr.networks import conv_layers, is_conv, is_multi_output, named_outputs
from lightning_sr.networks.gates import GATE, detach_gate, gated_modules
from lightning_sr.networks.layout import PARTS, PROTECT, check_layout, layout_of
from lightning_sr.networks.recycle import require_plain_convs

IMPORTANCES = ("l1", "l2", "taylor")
UPSAMPLER_MODES = ("group", "ignore")
KEY = "compression.channel_prune"
SPARSITY_KEY = "compression.channel_sparsity"


# ----- structure ------------------------------------------------------------------------------------------
def all_outputs(gen: nn.Module, lr: torch.Tensor) -> list[torch.Tensor]:
    """Every output of the generator (all exits of a multi-exit model, else the one output)."""
    return list(named_outputs(gen, lr).values())


def is_pixel_shuffle_stage(m: nn.Module) -> bool:
    return isinstance(m, nn.Sequential) and len(m) >= 2 and is_conv(m[0]) \
        and isinstance(m[1], nn.PixelShuffle)


def pixel_shuffle_convs(gen: nn.Module) -> list[nn.Conv2d]:
    """Every convolution that feeds a PixelShuffle (stages ``Sequential(conv, PixelShuffle, ...)``)."""
    convs = [m[0] for m in gen.modules() if is_pixel_shuffle_stage(m)]
    n_shuffles = sum(isinstance(m, nn.PixelShuffle) for m in gen.modules())
    require(len(convs) == n_shuffles,
            f"{KEY}: {type(gen).__name__} has a PixelShuffle outside a Sequential(conv, PixelShuffle, act) "
            f"stage; channel pruning cannot map its channels safely")
    return convs


def upsampler_stages(gen: nn.Module) -> list[tuple[str, nn.Sequential, nn.Conv2d]]:
    """(name, stage, consumer conv) for every upsampler stage: in every module that has an ``upsampler``
    (stages) and a ``tail`` conv (an SRResNet, a multi-exit head), stage i feeds stage i+1's conv, the
    last stage feeds the tail."""
    names = {m: n for n, m in gen.named_modules()}
    out = []
    for owner in gen.modules():
        ups, tail = getattr(owner, "upsampler", None), getattr(owner, "tail", None)
        if not isinstance(ups, nn.Sequential) or not is_conv(tail):
            continue
        stages = [s for s in ups if is_pixel_shuffle_stage(s)]
        if len(stages) != len(ups):
            continue
        for i, st in enumerate(stages):
            consumer = stages[i + 1][0] if i + 1 < len(stages) else tail
            out.append((names[st], st, consumer))
    return out


def output_convs(gen: nn.Module) -> list[nn.Conv2d]:
    """The convolutions that write the RGB output (``tail`` of the model and of every exit head)."""
    return [m.tail for m in gen.modules() if is_conv(getattr(m, "tail", None))]


def default_protect(gen: nn.Module, what: str = KEY) -> list[str]:
    """The layout's ``default_protect`` of ``gen`` (checked: one line when the network has none)."""
    check_layout(gen, need=(PROTECT,), what=what)
    return list(gen.default_protect)


def image_channels(gen: nn.Module) -> int:
    """Channels of the network's input image: its ``in_channels``, else what its first convolution reads."""
    return getattr(gen, "in_channels", None) or next(m for _, m in conv_layers(gen)).in_channels


def protected_modules(gen: nn.Module, protect: Sequence[str]) -> list[nn.Module]:
    """Conv layers under the given module-name prefixes; ConfigError for a name the model does not have."""
    names = dict(gen.named_modules())
    mods = []
    for p in protect:
        require(p in names, f"{KEY}.protect names {p!r}, which is not a module of {type(gen).__name__}; use names "
                            f"such as head, tail, body.0, upsampler.0 (model.named_modules())")
        mods += [m for _, m in conv_layers(names[p])]
    return mods


def _is_protected(name: str, protect: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in protect)


# ----- the PixelShuffle stage: groups of r^2 channels -----------------------------------------------------------
def _rows(idxs: Sequence[int], r2: int) -> list[int]:
    return [c * r2 + k for c in idxs for k in range(r2)]


def prune_pixel_shuffle_stage(stage: nn.Sequential, consumer: nn.Conv2d, idxs: Sequence[int]) -> None:
    """Remove shuffled channels ``idxs`` of ``Sequential(conv, PixelShuffle(r), act...)``: the conv's output
    channels ``c*r^2 .. c*r^2+r^2-1`` for every c, per-channel PReLU/BatchNorm entries c, and input channel c
    of ``consumer`` (the conv that reads the stage's output).

    Torch-Pruning would map channel ``i`` of the convolution before a PixelShuffle(r) to channel ``i`` after it,
    but channel ``c`` after it is made of channels ``c*r^2 .. c*r^2+r^2-1`` before it: hence this stage pruning
    (``upsampler: group``), which removes the ``r^2`` filters of every shuffled channel together."""
    conv, shuffle = stage[0], stage[1]
    r2 = shuffle.upscale_factor ** 2
    n = conv.out_channels // r2
    idxs = sorted({int(i) for i in idxs})
    require(all(0 <= i < n for i in idxs) and len(idxs) < n,
            f"cannot prune shuffled channels {idxs} of a stage with {n} channels (at least one must stay)")
    require(consumer.in_channels == n, f"the conv after the PixelShuffle reads {consumer.in_channels} channels, "
                                       f"the stage gives {n}")
    if not idxs:
        return
    tp.prune_conv_out_channels(conv, _rows(idxs, r2))
    for m in list(stage)[2:]:
        if isinstance(m, nn.PReLU) and m.num_parameters > 1:
            tp.prune_prelu_out_channels(m, idxs)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            tp.prune_batchnorm_out_channels(m, idxs)
        else:
            require(not any(True for _ in m.parameters(recurse=True)) or isinstance(m, nn.PReLU),
                    f"{KEY}: cannot prune {type(m).__name__} after a PixelShuffle; use upsampler=ignore")
    tp.prune_conv_in_channels(consumer, idxs)


def stage_importance(stage: nn.Sequential, consumer: nn.Conv2d, importance: str) -> torch.Tensor:
    """Importance of each shuffled channel: over its r^2 filters and the consumer's input channel
    (``l1``: sum |w|, ``l2``: sum w^2, ``taylor``: sum |w * grad|), like Torch-Pruning's group importance."""
    conv = stage[0]
    r2 = stage[1].upscale_factor ** 2
    n = conv.out_channels // r2

    def local(w: torch.Tensor) -> torch.Tensor:
        if importance == "taylor":
            require(w.grad is not None, f"{KEY}.importance=taylor needs gradients (none for this layer)")
            return (w.detach() * w.grad.detach()).abs()
        return w.detach().abs().pow(1 if importance == "l1" else 2)

    out = local(conv.weight).reshape(n, -1).sum(1)
    inp = local(consumer.weight).transpose(0, 1).reshape(n, -1).sum(1)
    return (out + inp).float()


def n_to_prune(channels: int, ratio: float, round_to: int | None = None) -> int:
    """Channels to remove from ``channels`` at ``ratio`` (Torch-Pruning's rounding), at least one kept."""
    n = channels - int(channels * (1 - ratio))
    if round_to:
        keep = channels - n
        keep -= keep % round_to
        n = channels - max(keep, round_to)
    return max(0, min(n, channels - 1))


# ----- the whole model ------------------------------------------------------------------------------------------
def _example(gen: nn.Module) -> torch.Tensor:
    return torch.rand(1, image_channels(gen), 16, 16, device=next(gen.parameters()).device)


class ChannelPlan:
    """What channel pruning would touch in ``gen``: Torch-Pruning's groups and the upsampler stages."""

    def __init__(self, gen: nn.Module, ratio: float, importance: str = "l2", global_pruning: bool = False,
                 protect: Sequence[str] | None = None, upsampler: str = "group", round_to: int | None = None,
                 what: str = KEY):
        check_layout(gen, need=PARTS if protect is not None else (*PARTS, PROTECT), what=what)
        require_plain_convs(gen, KEY)  # Torch-Pruning knows nn.Conv2d only (recycled convs: materialise first)
        self.gen, self.ratio, self.importance, self.round_to = gen, float(ratio), importance, round_to
        protect = list(protect) if protect is not None else default_protect(gen, what)
        shuffle_convs = pixel_shuffle_convs(gen)
        # protected layers, convs before a PixelShuffle (handled below) and the RGB output convs (never pruned)
        ignored = protected_modules(gen, protect) + shuffle_convs + output_convs(gen)
        imp = {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
               "l2": lambda: tp.importance.MagnitudeImportance(p=2),
               "taylor": lambda: tp.importance.TaylorImportance()}[importance]()
        trace_fn = forward_fn(gen)
        was_training = gen.training
        self.pruner = tp.pruner.MetaPruner(gen, _example(gen), importance=imp, pruning_ratio=self.ratio,
                                           global_pruning=global_pruning, ignored_layers=ignored,
                                           round_to=round_to, root_module_types=[nn.Conv2d, nn.ConvTranspose2d], forward_fn=trace_fn)
        gen.train(was_training)
        self.groups = list(self.pruner.DG.get_all_groups(ignored_layers=self.pruner.ignored_layers,
                                                         root_module_types=self.pruner.root_module_types))
        self.stages = [] if upsampler == "ignore" else [
            (name, st, cons) for name, st, cons in upsampler_stages(gen) if not _is_protected(name, protect)
            and not _is_protected(name + ".0", protect)]

    @property
    def prunable(self) -> int:
        return len(self.groups) + len(self.stages)

    def prune(self, calib: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
        gen = self.gen
        before = {n: m.out_channels for n, m in conv_layers(gen)}
        if self.importance == "taylor":
            require(calib is not None, f"{KEY}.importance=taylor needs a calibration batch")
            _taylor_gradients(gen, *calib)
        try:
            if self.ratio > 0:
                if self.groups:
                    self.pruner.step()
                for _, st, cons in self.stages:
                    n = st[0].out_channels // st[1].upscale_factor ** 2
                    k = n_to_prune(n, self.ratio, self.round_to)
                    if k:
                        order = torch.argsort(stage_importance(st, cons, self.importance), stable=True)
                        prune_pixel_shuffle_stage(st, cons, order[:k].tolist())
        finally:
            for p in gen.parameters():
                p.grad = None
        with torch.no_grad():  # every shape must still fit (raises here, never later in training)
            was_training = gen.training
            all_outputs(gen.eval(), _example(gen))
            gen.train(was_training)
        after = {n: m.out_channels for n, m in conv_layers(gen)}
        changed = {n: [before[n], after[n]] for n in before if n in after and before[n] != after[n]}
        return {"pruned_out_channels": changed, "groups": len(self.groups), "upsampler_stages": len(self.stages)}


def _taylor_gradients(gen: nn.Module, lr: torch.Tensor, hr: torch.Tensor) -> None:
    was_training = gen.training
    gen.eval()
    gen.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss = sum(F.l1_loss(o, hr) for o in all_outputs(gen, lr))
        loss.backward()
    gen.train(was_training)


def forward_fn(gen: nn.Module):
    return (lambda m, x: list(named_outputs(m, x).values())) if is_multi_output(gen) else None


def prune_out_channels(gen: nn.Module, name: str, idxs: Sequence[int]) -> None:
    """Remove output channels ``idxs`` of convolution ``name`` and everything coupled to them, in place.

    A conv before a PixelShuffle: ``idxs`` are channels after the shuffle, pruned by
    :func:`prune_pixel_shuffle_stage`. Any other conv: its Torch-Pruning group (e.g. ``head.0`` takes the
    trunk channel out of every block, the long skip and the first upsampler conv's input).
    """
    mod = gen.get_submodule(name)
    require(is_conv(mod), f"{name} is a {type(mod).__name__}, not a convolution")
    require_plain_convs(gen, KEY)
    for _, st, cons in upsampler_stages(gen):
        if st[0] is mod:
            prune_pixel_shuffle_stage(st, cons, idxs)
            return
    forbidden = set(pixel_shuffle_convs(gen)) | set(output_convs(gen))
    require(mod not in forbidden, f"{name} writes the RGB output or feeds an unrecognised PixelShuffle; "
                                  f"its output channels cannot be pruned")
    was_training = gen.training
    dg = tp.DependencyGraph().build_dependency(gen, example_inputs=_example(gen), forward_fn=forward_fn(gen))
    gen.train(was_training)
    group = dg.get_pruning_group(mod, tp.prune_conv_out_channels, [int(i) for i in idxs])
    for dep, _ in group:
        require(not (dg.is_out_channel_pruning_fn(dep.handler) and dep.target.module in forbidden),
                f"pruning {name} channels would prune the output channels of a protected layer")
    group.prune()


def prune_channels(gen: nn.Module, ratio: float, importance: str = "l2", global_pruning: bool = False,
                   protect: Sequence[str] | None = None, upsampler: str = "group", round_to: int | None = None,
                   calib: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """Prune ``gen`` in place (see the module docstring); returns which conv outputs changed."""
    validate_args(ratio, importance, global_pruning, protect, upsampler, round_to)
    plan = ChannelPlan(gen, ratio, importance, global_pruning, protect, upsampler, round_to)
    require(plan.prunable > 0, nothing_prunable_message(gen, protect, upsampler))  # noqa: E501
    return plan.prune(calib)


def nothing_prunable_message(gen: nn.Module, protect: Sequence[str] | None, upsampler: str) -> str:
    protect = default_protect(gen) if protect is None else protect
    hint = "remove 'head' from compression.channel_prune.protect (prunes the trunk width)" \
        if "head" in protect else "use a model with residual blocks"
    if upsampler == "ignore":
        hint += " or set compression.channel_prune.upsampler=group"
    return (f"{KEY}: nothing to prune in {type(gen).__name__} with "
            f"res_blocks={len(layout_of(gen).body)}: every channel group contains a protected layer "
            f"(protect={list(protect)}, upsampler={upsampler}); {hint}")


def validate_args(ratio, importance, global_pruning, protect, upsampler, round_to) -> None:
    check(isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0 <= ratio < 1, f"{KEY}.ratio", ratio,
          "is impossible; use the fraction of channels to remove, 0 <= ratio < 1 (e.g. 0.5)")
    check_choice(f"{KEY}.importance", importance, IMPORTANCES)
    check(isinstance(global_pruning, bool), f"{KEY}.global_pruning", global_pruning, "must be true or false")
    check(protect is None or (isinstance(protect, (list, tuple)) and all(isinstance(p, str) for p in protect)),
          f"{KEY}.protect", protect, "must be null (the model's default) or a list of module names, e.g. [head, tail]")
    check_choice(f"{KEY}.upsampler", upsampler, UPSAMPLER_MODES)
    check(round_to is None or (isinstance(round_to, int) and round_to > 0), f"{KEY}.round_to", round_to,
          "is impossible; use null or a positive integer (e.g. 8)")


# ----- channel groups for gating, MAC counting, removal ---------------------------------------------------------
@dataclass
class Group:
    """One prunable channel group: the layers that write its channels and its gate."""

    name: str
    channels: int
    writers: list[tuple[nn.Module, int]]   # (layer the gate scales, repeat per channel)
    filters: list[tuple[nn.Module, int]]   # (conv whose output filters hold the channels, repeat) for growing_reg
    readers: list[nn.Module] = field(default_factory=list)  # convs whose input channels are the group's channels
    root: nn.Module | None = None          # Torch-Pruning root conv (None for an upsampler stage)
    stage: tuple | None = None             # (stage, consumer) for a PixelShuffle stage
    gate: nn.Parameter | None = None
    chosen: list[int] = field(default_factory=list)  # growing_reg: channels to remove
    writer_names: list[str] = field(default_factory=list)  # the writers' names in the generator (they may be replaced)


def out_filters(conv: nn.Module) -> torch.Tensor:
    """``conv``'s weight with its output channels first (a transposed convolution stores (in, out/groups, k, k))."""
    w = conv.weight
    require(not isinstance(conv, nn.ConvTranspose2d) or conv.groups == 1,
            f"{SPARSITY_KEY}: grouped transposed convolutions are not supported ({type(conv).__name__}, groups={conv.groups})")
    return w.transpose(0, 1) if isinstance(conv, nn.ConvTranspose2d) else w


def _next_sibling(model: nn.Module, module: nn.Module) -> nn.Module | None:
    for parent in model.modules():
        kids = list(parent.children())
        for i, k in enumerate(kids):
            if k is module:
                return kids[i + 1] if i + 1 < len(kids) else None
    return None


def sparsity_protect(gen: nn.Module) -> list[str]:
    """The default protection of channel sparsity: the model's own (as channel_prune), minus its head, so the trunk
    width is a group too (SRResNet: [tail]; the video generator: [fnet, srnet.tail])."""
    return [p for p in default_protect(gen, SPARSITY_KEY) if not p.split(".")[-1] == "head"]


def find_groups(gen: nn.Module, protect) -> list[Group]:
    """Every prunable channel group of ``gen`` (see the module docstring)."""
    protect = sparsity_protect(gen) if protect is None else protect
    plan = ChannelPlan(gen, 0.5, "l1", False, protect, "group", None, what=SPARSITY_KEY)
    dg = plan.pruner.DG
    names = {m: n for n, m in gen.named_modules()}
    groups = []
    for grp in plan.groups:
        root = grp[0].dep.target.module
        n = len(grp[0].idxs)
        writers, filters, readers = [], [], []
        for item in grp:
            mod = item.dep.target.module
            if dg.is_in_channel_pruning_fn(item.dep.handler) and is_conv(mod):
                readers.append(mod)
            if not (dg.is_out_channel_pruning_fn(item.dep.handler) and is_conv(mod)):
                continue
            if sorted(item.idxs) != list(range(n)):  # a channel mapping other than identity: not gated
                break
            nxt = _next_sibling(gen, mod)
            writer = nxt if isinstance(nxt, nn.modules.batchnorm._BatchNorm) else mod
            writers.append((writer, 1))
            filters.append((mod, 1))
        else:
            if writers:
                groups.append(Group(names[root], n, writers, filters, readers, root=root))
    for name, st, cons in plan.stages:
        r2 = st[1].upscale_factor ** 2
        groups.append(Group(name, st[0].out_channels // r2, [(st[0], r2)], [(st[0], r2)], [cons], stage=(st, cons)))
    for g in groups:
        g.writer_names = [names[w] for w, _ in g.writers]
    return groups


class MacCounter:
    """MACs of the model after removing channels, without pruning anything: every convolution's MACs scale with its
    remaining input and output channels (one traced pass records them); the rest (the bicubic skip) is constant.
    Exact for these networks (tests compare it with a physical pruning), and instant, so a MAC-budget search over
    thousands of candidate removals costs nothing."""

    def __init__(self, gen: nn.Module, groups: list[Group]):
        self.groups = groups
        convs = [m for _, m in conv_layers(gen)]
        seen: dict[nn.Module, int] = {}

        def hook(m, i, o):
            k = m.weight.shape[2] * m.weight.shape[3]
            cin = m.in_channels // m.groups
            # as PyTorch's flop counter: a convolution visits its output positions, a transposed one its input's
            pos = i[0] if isinstance(m, nn.ConvTranspose2d) else o
            seen[m] = seen.get(m, 0) + cin * m.out_channels * k * pos.shape[-1] * pos.shape[-2] * pos.shape[0]

        handles = [m.register_forward_hook(hook) for m in convs]
        total = macs_small(gen)  # the same pass, with the flop counter: the hooks see every call
        for h in handles:
            h.remove()
        self.conv_macs = seen
        self.rest = total - sum(seen.values())
        self.out_groups = {m: [(g, rep) for g in groups for w, rep in g.filters if w is m] for m in seen}
        self.in_groups = {m: [g for g in groups if any(r is m for r in g.readers)] for m in seen}

    def macs(self, removal: dict[str, list[int]]) -> int:
        total = float(self.rest)
        for m, base in self.conv_macs.items():
            cout = m.out_channels - sum(len(removal.get(g.name, ())) * rep for g, rep in self.out_groups[m])
            cin_full = m.in_channels
            cin = cin_full - sum(len(removal.get(g.name, ())) for g in self.in_groups[m])
            total += base * (cout / m.out_channels) * (cin / cin_full)
        return int(round(total))


def macs_small(model: nn.Module) -> int:
    """MACs on a 32x32 LR input: for these fully convolutional networks MAC ratios do not depend on the input size,
    and the small input keeps the many trial prunings of a MAC-budget search cheap."""
    return count_macs(model, (image_channels(model), 32, 32))


def remove_channels(gen: nn.Module, groups: list[Group], removal: dict[str, list[int]]) -> dict[str, list[int]]:
    """Fold every gate, then remove ``removal[group name]`` channels physically (Torch-Pruning for coupled groups,
    the PixelShuffle-aware stage pruning for upsampler stages). Returns {layer: [before, after]} out channels.
    Works from any context (Torch-Pruning traces with autograd, so inference mode and no_grad are lifted)."""
    with torch.inference_mode(False), torch.enable_grad():
        return _remove_channels(gen, groups, removal)


def _remove_channels(gen: nn.Module, groups: list[Group], removal: dict[str, list[int]]) -> dict[str, list[int]]:
    before = {n: m.out_channels for n, m in conv_layers(gen)}
    fold_all_gates(gen)
    was_training = gen.training
    dg = None
    for g in groups:
        idxs = sorted(set(removal.get(g.name, [])))
        if not idxs:
            continue
        if g.stage is not None:
            prune_pixel_shuffle_stage(g.stage[0], g.stage[1], idxs)
            continue
        if dg is None:  # one dependency graph for every group (the groups are disjoint)
            example = torch.rand(1, image_channels(gen), 16, 16, device=next(gen.parameters()).device)
            dg = tp.DependencyGraph().build_dependency(gen, example_inputs=example, forward_fn=forward_fn(gen))
        dg.get_pruning_group(g.root, tp.prune_conv_out_channels, idxs).prune()
    gen.train(was_training)
    after = {n: m.out_channels for n, m in conv_layers(gen)}
    return {n: [before[n], after[n]] for n in before if n in after and before[n] != after[n]}


# ----- gate folding ------------------------------------------------------------------------------------------
@torch.no_grad()
def fold_gate(module: nn.Module) -> None:
    """Multiply the gate into the layer's output channels (weight and bias; BatchNorm: weight and bias) and remove it."""
    g = getattr(module, GATE).detach()
    rep = getattr(module, "lsr_gate_repeat", 1)
    g = g.repeat_interleave(rep) if rep > 1 else g
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.weight.mul_(g)
        module.bias.mul_(g)
    else:
        out_dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
        shape = [1] * module.weight.dim()
        shape[out_dim] = -1
        module.weight.mul_(g.view(shape))
        if module.bias is not None:
            module.bias.mul_(g)
    detach_gate(module)


def fold_all_gates(model: nn.Module) -> int:
    mods = gated_modules(model)
    for _, m in mods:
        fold_gate(m)
    return len(mods)
