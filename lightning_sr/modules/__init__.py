"""All LightningModules live here; ``build_module`` picks one from ``model.module``."""

from __future__ import annotations

from lightning_sr.errors import ConfigError
from lightning_sr.modules.base import TaskModule
from lightning_sr.modules.classify import ClassifyModule
from lightning_sr.modules.evaluation import metric_key
from lightning_sr.modules.multi_exit import MultiExitModule
from lightning_sr.modules.sr import SRBaseModule, SRModule
from lightning_sr.modules.srgan import SRGANModule
from lightning_sr.modules.video import VideoSRModule

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
