"""Errors that reach the user as one clear line (no traceback) from the entry points."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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


def check(cond: bool, key: str, value: Any, fix: str) -> None:
    """``ConfigError("<key>=<value> <fix>")`` unless ``cond``: the one way callbacks and transforms validate values."""
    require(bool(cond), f"{key}={value!r} {fix}")


def check_choice(key: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    check(value in choices, key, value, f"is not supported; use one of {', '.join(choices)}")
