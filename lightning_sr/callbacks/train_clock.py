"""TrainClock: the training wall time of a run summed over every segment of it (a killed and resumed run reports
the time of all its segments, not only the last one; the time since the last checkpoint of a killed segment is lost
with the steps it made). Its state (the time so far) is saved in every checkpoint and restored on resume."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class TrainClock(L.Callback):
    def __init__(self) -> None:
        self.before = 0.0               # seconds of earlier segments (from the checkpoint this run resumed)
        self.t0: float | None = None    # when this segment's fit started

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0 = time.perf_counter()

    def segment(self) -> float:
        """Seconds of this process's fit so far."""
        return time.perf_counter() - self.t0 if self.t0 is not None else 0.0

    def total(self) -> float:
        return self.before + self.segment()

    def state_dict(self) -> dict[str, Any]:
        return {"train_time_s": self.total()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict.get("train_time_s", 0.0))
