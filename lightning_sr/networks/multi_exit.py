"""Multi-exit SRResNet for self-distillation (Lee & Park, "A Study of Lightening Super-Resolution
Networks Using Self-Distillation"; the method of Zhang et al., "Be Your Own Teacher", ICCV 2019).

One deep SRResNet, the *central* model with ``res_blocks`` residual blocks, gets early exits: after
block k (k in ``exits``) the trunk features go through an exit head of their own, made of exactly the
layers an SRResNet ends with (``body_tail`` conv + norm with the long skip from the shared head,
``upsampler``, 9x9 ``tail``). So the shared head, the first k blocks and exit k's head *are* an
SRResNet-k: :meth:`MultiExitSRResNet.export_exit` returns it as a plain :class:`SRResNet` with the
same weights, and :meth:`MultiExitSRResNet.export_state` gives its state dict with SRResNet key names.

Exits are named ``exit<k>`` (k = number of residual blocks before the exit); the deepest exit, the
full central model, is ``exit<res_blocks>`` and uses the SRResNet's own ``body_tail/upsampler/tail``.
``forward(x)`` returns the deepest output only, so the model is a plain generator everywhere;
:meth:`forward_exits` returns every exit by its own name (and, on request, the trunk features at each exit),
and :meth:`forward_outputs` (the :class:`~lightning_sr.networks.outputs.MultiOutput` interface that modules and
tools use) the same with the deepest exit as the main output ``""``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lightning_sr.errors import require
from lightning_sr.networks.outputs import MAIN, MultiOutput
from lightning_sr.networks.registry import build_generator, load_generator_state, register
from lightning_sr.networks.srresnet import SRResNet, srresnet_convs, validate_srresnet_args


def exit_name(k: int) -> str:
    return f"exit{k}"


def validate_exits(res_blocks: int, exits: Any) -> list[int]:
    """The exits as a sorted list of block indices; ConfigError (one line) for impossible ones."""
    require(isinstance(exits, (list, tuple)) and len(exits) > 0,
            f"model.exits={exits!r} is impossible; give a non-empty list of block indices, e.g. [8] "
            f"(for a network without early exits use model=srresnet)")
    for k in exits:
        require(isinstance(k, int) and not isinstance(k, bool),
                f"model.exits={list(exits)} holds {k!r}; exits are block indices (integers), e.g. [8]")
    dup = sorted({k for k in exits if list(exits).count(k) > 1})
    require(not dup, f"model.exits={list(exits)} repeats exit {', '.join(map(str, dup))}; list each block once")
    for k in exits:
        require(k != res_blocks,
                f"model.exits={list(exits)}: exit {k} is the last block, which is the deepest exit "
                f"(exit{res_blocks}) already; remove it or raise model.res_blocks")
        require(1 <= k < res_blocks,
                f"model.exits={list(exits)}: exit {k} is out of range; with model.res_blocks={res_blocks} "
                f"an early exit must be between 1 and {res_blocks - 1}")
    return sorted(int(k) for k in exits)


class ExitHead(nn.Module):
    """The end of an SRResNet (``body_tail``, ``upsampler``, ``tail``) for one early exit."""

    def __init__(self, body_tail: nn.Module, upsampler: nn.Module, tail: nn.Module):
        super().__init__()
        self.body_tail, self.upsampler, self.tail = body_tail, upsampler, tail

    def parts(self) -> dict[str, nn.Module]:
        return {"body_tail": self.body_tail, "upsampler": self.upsampler, "tail": self.tail}


@register("multi_exit", keys=("res_blocks", "exits", "channels", "scale", "norm", "act", "skip", "res_scale", "conv",
                              "conv_scope", "recycle"))
class MultiExitSRResNet(MultiOutput, SRResNet):
    """SRResNet-``res_blocks`` with an SRResNet head (exit) after each block index in ``exits``."""

    def __init__(self, res_blocks: int = 32, exits: list[int] | tuple[int, ...] = (8,), channels: int = 64,
                 scale: int = 4, norm: str = "batch", act: str = "prelu", skip: str = "none",
                 in_channels: int = 3, res_scale: float = 1.0, conv: str = "normal", conv_scope: str = "residual",
                 recycle: dict | None = None):
        # checks first: nothing is built for an impossible configuration
        validate_srresnet_args(res_blocks, channels, scale, norm, skip)
        exits = validate_exits(res_blocks, exits)
        srresnet_convs(conv, conv_scope, recycle, res_blocks, channels)
        convs = dict(conv=conv, conv_scope=conv_scope, recycle=recycle)
        super().__init__(res_blocks, channels, scale, norm, act, skip, in_channels, res_scale, **convs)
        self.res_blocks, self.exits = res_blocks, exits
        # the arguments of the SRResNet that each exit is (see exit_spec)
        self._srresnet_args = dict(channels=channels, scale=scale, norm=norm, act=act, skip=skip,
                                   res_scale=res_scale)
        if in_channels != 3:
            self._srresnet_args["in_channels"] = in_channels
        if conv != "normal":  # an exit of a recycled model is a recycled SRResNet (plain specs stay as they were)
            self._srresnet_args.update(conv=conv, conv_scope=conv_scope, recycle=recycle)
        heads = {}
        for k in exits:
            # the same constructor as every SRResNet's own end (no copied layer code)
            donor = SRResNet(0, channels, scale, norm, act, skip, in_channels, res_scale, **convs)
            heads[exit_name(k)] = ExitHead(donor.body_tail, donor.upsampler, donor.tail)
        self.exit_heads = nn.ModuleDict(heads)

    # ----- naming --------------------------------------------------------------------------------------------
    @property
    def deepest(self) -> str:
        return exit_name(self.res_blocks)

    @property
    def exit_names(self) -> list[str]:
        """All exits, shallow to deep; the last one is the full central model."""
        return [exit_name(k) for k in self.exits] + [self.deepest]

    def exit_depth(self, exit: int | str) -> int:
        """Block count of an exit given as 8, "8" or "exit8"; ConfigError when the model has no such exit."""
        s = str(exit).strip()
        s = s[4:] if s.startswith("exit") else s
        k = int(s) if s.lstrip("-").isdigit() else None
        require(k is not None and (k in self.exits or k == self.res_blocks),
                f"exit={exit!r} does not exist; this model has exits {', '.join(self.exit_names)} "
                f"(give the block count, e.g. exit={self.exits[0]})")
        return int(k)

    # ----- forward -------------------------------------------------------------------------------------------
    def forward_exits(self, x: torch.Tensor, return_features: bool = False):
        """{exit name: SR image} shallow to deep; with ``return_features`` also {exit name: trunk features}."""
        h = self.head(x)
        feat, start = h, 0
        outs: dict[str, torch.Tensor] = {}
        feats: dict[str, torch.Tensor] = {}
        for k in [*self.exits, self.res_blocks]:
            feat = self.trunk(feat, self.body[start:k])
            start = k
            name = exit_name(k)
            parts = self.exit_heads[name].parts() if name in self.exit_heads else {}
            outs[name] = self.reconstruct(h, feat, x, **parts)
            feats[name] = feat
        return (outs, feats) if return_features else outs

    def forward_outputs(self, x: torch.Tensor, return_features: bool = False):
        """:meth:`forward_exits` with the deepest exit as the main output ``""`` (first), then the early exits."""
        outs, feats = self.forward_exits(x, return_features=True)

        def rename(d):
            return {MAIN: d[self.deepest], **{k: v for k, v in d.items() if k != self.deepest}}

        return (rename(outs), rename(feats)) if return_features else rename(outs)

    @property
    def output_names(self) -> list[str]:
        return [MAIN, *(k for k in self.exit_names if k != self.deepest)]

    # forward(x) is SRResNet.forward: the deepest exit only (no early-exit heads are run)

    # ----- export --------------------------------------------------------------------------------------------
    def exit_spec(self, exit: int | str) -> dict[str, Any]:
        """The generator spec of an exit as a standalone SRResNet."""
        return {"arch": "srresnet", "res_blocks": self.exit_depth(exit), **self._srresnet_args}

    def export_state(self, exit: int | str) -> dict[str, torch.Tensor]:
        """State dict of an exit with SRResNet key names (head, body.0..k-1, body_tail, upsampler, tail)."""
        k = self.exit_depth(exit)
        name = exit_name(k)
        own_end = ("body_tail", "upsampler", "tail")
        out: dict[str, torch.Tensor] = {}
        for key, v in self.state_dict().items():
            first, _, rest = key.partition(".")
            if first == "head":
                out[key] = v
            elif first == "body" and int(rest.split(".", 1)[0]) < k:
                out[key] = v
            elif first in own_end and k == self.res_blocks:
                out[key] = v
            elif first == "exit_heads" and k != self.res_blocks and rest.startswith(name + "."):
                out[rest[len(name) + 1:]] = v
        return out

    def export_exit(self, exit: int | str) -> SRResNet:
        """A standalone SRResNet-k with the weights of exit k (a copy: later training does not change it)."""
        model = build_generator(self.exit_spec(exit))
        state = {key: v.detach().clone().cpu() for key, v in self.export_state(exit).items()}
        load_generator_state(model, state)  # resizes layers when the multi-exit model was channel-pruned
        return model.train(self.training)
