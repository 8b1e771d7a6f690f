"""Self-distillation of a multi-exit SRResNet (``model=multi_exit``, docs/self_distillation.md).

Loss of one batch (``pix`` is ``model.loss``, L1 by default; ``deep`` the deepest exit's output)::

    pix(deep, HR)
    + sum over early exits e of  (1 - alpha) * pix(e, HR) + alpha * pix(e, deep.detach())
                                 + feature_weight * mse(trunk_e, trunk_deep.detach())

alpha = 0.1 is the paper's 9:1 ratio of pixel to distillation loss; the feature term (FitNets-style
L2 between an exit's trunk features and the deepest trunk features) is off by default, as in the paper.
Validation reports every exit (``val/<Set>/exit8/psnr``...; the deepest exit is the main output,
``val/<Set>/psnr``), and :meth:`MultiExitModule.exit_costs` measures each exit as a standalone SRResNet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lightning_sr.cost import cost_from_config
from lightning_sr.errors import require
from lightning_sr.lit_modules.sr import SRModule
from lightning_sr.networks import MAIN, is_multi_output


def check_distillation_args(alpha: Any, feature_weight: Any) -> None:
    require(isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0.0 <= alpha <= 1.0,
            f"model.alpha={alpha!r} is impossible; use a number in [0, 1] (weight of the distillation term, "
            f"the paper's 9:1 pixel:distillation ratio is 0.1)")
    require(isinstance(feature_weight, (int, float)) and not isinstance(feature_weight, bool)
            and feature_weight >= 0, f"model.feature_weight={feature_weight!r} is impossible; use a number >= 0")


def self_distillation_loss(outs: Mapping[str, torch.Tensor], hr: torch.Tensor, deepest: str, alpha: float = 0.1,
                           feature_weight: float = 0.0, feats: Mapping[str, torch.Tensor] | None = None,
                           pixel: Callable = F.l1_loss) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total loss, {exit: its term}) for the outputs of every exit (see the module docstring)."""
    deep = outs[deepest]
    parts = {deepest: pixel(deep, hr)}
    teacher = deep.detach()
    for name, sr in outs.items():
        if name == deepest:
            continue
        term = (1.0 - alpha) * pixel(sr, hr) + alpha * pixel(sr, teacher)
        if feature_weight > 0:
            require(feats is not None, "feature_weight > 0 needs the trunk features of every exit")
            term = term + feature_weight * F.mse_loss(feats[name], feats[deepest].detach())
        parts[name] = term
    total = torch.stack(list(parts.values())).sum()
    return total, parts


class MultiExitModule(SRModule):
    """SRModule whose generator is a :class:`~lightning_sr.networks.multi_exit.MultiExitSRResNet`."""

    def __init__(self, generator_spec: dict[str, Any], scale: int, alpha: float = 0.1, feature_weight: float = 0.0,
                 loss: str = "l1", **kwargs: Any):
        check_distillation_args(alpha, feature_weight)
        super().__init__(generator_spec, scale, loss=loss, alpha=alpha, feature_weight=feature_weight, **kwargs)
        require(is_multi_output(self.generator),
                f"model.module=multi_exit needs a multi-exit generator (model.arch=multi_exit), "
                f"not {self.generator_spec.get('arch')!r}")
        self.alpha, self.feature_weight = float(alpha), float(feature_weight)

    @staticmethod
    def check_config(model_cfg: Mapping[str, Any]) -> None:
        """Module-argument checks that ``validate_config`` runs before anything is built."""
        check_distillation_args(model_cfg.get("alpha", 0.1), model_cfg.get("feature_weight", 0.0))

    # ----- training ------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        lr, hr = self._prep(batch["lr"]), batch["hr"]
        outs, feats = self.generator.forward_outputs(lr, return_features=True)
        _, parts = self_distillation_loss(outs, hr, MAIN, self.alpha, self.feature_weight, feats, self.pixel_loss)
        terms = {(name or self.generator.deepest): v for name, v in parts.items()}  # train/exit8, train/exit32...
        return self.compose_loss(terms, lr=lr, hr=hr, outputs=outs)

    # ----- cost of every exit as a standalone network --------------------------------------------------------
    def exit_costs(self, cost_cfg: Any | None = None) -> dict[str, dict[str, Any]]:
        """{exit: model_cost of the exported SRResNet-k} for every exit, the deepest included.

        ``run.build_metrics_json`` puts it under ``metrics.json["exit_cost"]``; the loggers get it from there
        (``cost/<exit>/params``, ``cost/<exit>/macs``, ``cost/<exit>/latency_ms``... in the run summary).
        """
        return {name: cost_from_config(self.generator.export_exit(name), cost_cfg)
                for name in self.generator.exit_names}
