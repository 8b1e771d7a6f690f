"""Lightning callbacks of lightning-sr that are not compression techniques."""

from lightning_sr.callbacks.last_checkpoint import LastCheckpoint
from lightning_sr.callbacks.train_clock import TrainClock

__all__ = ["LastCheckpoint", "TrainClock"]
