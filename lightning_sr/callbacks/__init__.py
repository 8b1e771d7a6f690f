"""Lightning callbacks of lightning-sr that are not compression techniques."""

from lightning_sr.callbacks.last_checkpoint import LastCheckpoint

__all__ = ["LastCheckpoint"]
