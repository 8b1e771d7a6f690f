"""Errors that reach the user as one clear line (no traceback) from the entry points."""


class LightningSRError(Exception):
    """Base class: the message names the thing at fault and how to fix it."""


class ConfigError(LightningSRError, ValueError):
    """An impossible or inconsistent configuration value."""


class DataError(LightningSRError):
    """A missing folder, an unreadable image, mismatched pairs..."""


class WeightsError(LightningSRError, FileNotFoundError):
    """Pretrained weights (VGG19, AlexNet) or a checkpoint that cannot be found or loaded."""


def require(cond: bool, message: str, exc: type[LightningSRError] = ConfigError) -> None:
    """Raise ``exc(message)`` unless ``cond`` holds. The shared way to validate values."""
    if not cond:
        raise exc(message)
