"""All LightningModules live here; ``build_module`` picks one from ``model.module``."""

from __future__ import annotations

from lightning_sr.errors import ConfigError
from lightning_sr.modules.base import SRBaseModule, metric_key
from lightning_sr.modules.multi_exit import MultiExitModule
from lightning_sr.modules.sr import SRModule
from lightning_sr.modules.srgan import SRGANModule

MODULES: dict[str, type[SRBaseModule]] = {"sr": SRModule, "srgan": SRGANModule, "eval": SRBaseModule}
MODULES["multi_exit"] = MultiExitModule


def register_module(name: str, cls: type[SRBaseModule]) -> None:
    MODULES[name] = cls


def module_class(name: str) -> type[SRBaseModule]:
    if name not in MODULES:
        raise ConfigError(f"model.module={name!r} is unknown; use one of {', '.join(sorted(MODULES))}")
    return MODULES[name]


__all__ = ["MODULES", "MultiExitModule", "SRBaseModule", "SRGANModule", "SRModule", "metric_key", "module_class",
           "register_module"]
