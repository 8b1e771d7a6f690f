"""Per-image evaluation records as a torchmetrics ``Metric``: its states are gathered across DDP ranks by
torchmetrics (``dist_reduce_fx="cat"``), so every rank ends with every image's numbers.

One record is (kind, set, output, image index) plus the value of each metric. Kinds: ``model`` (the
generator's output) and ``bicubic`` (the baseline); sets and outputs are stored as positions in name
lists that every rank builds identically (the datamodule's set names, the generator's output names).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_sr.metrics.sr_metrics import METRIC_MODES

FIELDS = ("set", "output", "index")


class EvalRecords(Metric):
    full_state_update = False
    higher_is_better = None

    def __init__(self, metrics: tuple[str, ...] = tuple(METRIC_MODES), **kwargs: Any):
        super().__init__(**kwargs)
        self.metric_names = tuple(metrics)
        for name in (*FIELDS, *self.metric_names):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)

    def update(self, set_id: int, output_id: int, index: int, values: dict[str, float]) -> None:  # type: ignore[override]
        for name, v in zip(FIELDS, (set_id, output_id, index), strict=True):
            getattr(self, name).append(torch.tensor([float(v)], dtype=torch.float64, device=self.device))
        for m in self.metric_names:
            getattr(self, m).append(torch.tensor([float(values.get(m, math.nan))], dtype=torch.float64,
                                                 device=self.device))

    def compute(self) -> list[dict[str, Any]]:
        """Every record (all ranks), sorted by (set, output, index); a metric not measured is left out."""
        cols = {}
        for name in (*FIELDS, *self.metric_names):
            state = getattr(self, name)
            cols[name] = (dim_zero_cat(state) if isinstance(state, list) and state else
                          state if isinstance(state, torch.Tensor) else torch.zeros(0, dtype=torch.float64)).cpu()
        n = cols["index"].numel()
        rows = []
        for i in range(n):
            r: dict[str, Any] = {k: int(cols[k][i]) for k in FIELDS}
            for m in self.metric_names:
                v = float(cols[m][i])
                if not math.isnan(v):
                    r[m] = v
            rows.append(r)
        uniq = {(r["set"], r["output"], r["index"]): r for r in rows}  # a padded sampler never counts twice
        return [uniq[k] for k in sorted(uniq)]
