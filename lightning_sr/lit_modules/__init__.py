"""The LightningModules: how a network (:mod:`lightning_sr.networks`) is trained and evaluated, one class per
``model.module`` (``sr``, ``srgan``, ``multi_exit``, ``video``, ``classify``); ``build_module`` picks it."""

from __future__ import annotations

from lightning_sr.errors import ConfigError
from lightning_sr.lit_modules.base import TaskModule
from lightning_sr.lit_modules.classify import ClassifyModule
from lightning_sr.lit_modules.evaluation import metric_key
from lightning_sr.lit_modules.multi_exit import MultiExitModule
from lightning_sr.lit_modules.sr import SRBaseModule, SRModule
from lightning_sr.lit_modules.srgan import SRGANModule
from lightning_sr.lit_modules.video import VideoSRModule

MODULES: dict[str, type[TaskModule]] = {"sr": SRModule, "srgan": SRGANModule, "eval": SRBaseModule}
MODULES["multi_exit"] = MultiExitModule
MODULES["video"] = VideoSRModule


# the module that evaluates a generator of a given arch (evaluate.py); SRBaseModule for every image model
EVAL_MODULES: dict[str, type[TaskModule]] = {}


def register_module(name: str, cls: type[TaskModule], eval_for: tuple[str, ...] = ()) -> None:
    MODULES[name] = cls
    for arch in eval_for:
        EVAL_MODULES[arch] = cls


register_module("classify", ClassifyModule, eval_for=("lenet5", "resnet18"))


def eval_module_class(spec: dict, datamodule=None) -> type[TaskModule]:
    """The LightningModule class that evaluates a generator of this spec on this data (``evaluate.py``): the
    datamodule's ``eval_module`` when it names one (video clips: ``video``), else by architecture."""
    name = getattr(datamodule, "eval_module", None)
    if name:
        return module_class(name)
    return EVAL_MODULES.get(str(spec.get("arch")), SRBaseModule)


def module_class(name: str) -> type[TaskModule]:
    if name not in MODULES:
        raise ConfigError(f"model.module={name!r} is unknown; use one of {', '.join(sorted(MODULES))}")
    return MODULES[name]


__all__ = ["ClassifyModule", "VideoSRModule", "EVAL_MODULES", "MODULES", "MultiExitModule", "eval_module_class", "SRBaseModule", "SRGANModule", "SRModule", "TaskModule", "metric_key", "module_class",
           "register_module"]
