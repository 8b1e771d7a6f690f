"""Turning the Hydra config into objects, and checking it before anything expensive happens."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightning_sr.data.datamodule import validate_data_config
from lightning_sr.errors import ConfigError, require  # noqa: F401
from lightning_sr.models.blocks import SCALES
from lightning_sr.models.registry import ARCHS, arch_keys, build_generator, spec_from_config

# model-config keys that are not LightningModule arguments
_NON_MODULE_KEYS = ("name", "arch", "module")


def to_plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) or OmegaConf.is_list(node) \
        else node


def validate_config(cfg: DictConfig, need_train: bool = True, check_model: bool = True) -> None:
    """Every check that needs no data on disk. Raises :class:`ConfigError` with one clear line."""
    scale = cfg.get("scale")
    require(scale in SCALES, f"scale={scale} is not supported; use one of {', '.join(map(str, SCALES))}")
    if check_model:
        arch = cfg.model.get("arch", "srresnet")
        require(arch in ARCHS, f"model.arch={arch!r} is unknown; use one of {', '.join(sorted(ARCHS))}")
        # building the generator runs the architecture's own argument checks (cheap: no data involved)
        build_generator(generator_spec(cfg))
        # a LightningModule may check its own arguments here too (static ``check_config(model_cfg)``)
        from lightning_sr.modules import MODULES

        check = getattr(MODULES.get(cfg.model.get("module", "sr")), "check_config", None)
        if check is not None:
            check(to_plain(cfg.model))
    if need_train:
        validate_data_config(cfg.data, scale)
        t = cfg.trainer
        ms = t.get("max_steps", -1)
        require(ms is None or ms == -1 or ms > 0, f"trainer.max_steps={ms} is impossible; use a positive integer")
    tile = cfg.get("val", {}).get("tile", 0) or 0
    require(tile >= 0, f"val.tile={tile} is impossible; use 0 (whole images) or a positive LR tile size")


def generator_spec(cfg: DictConfig) -> dict[str, Any]:
    return spec_from_config(to_plain(cfg.model), int(cfg.scale))


def module_kwargs(cfg: DictConfig) -> dict[str, Any]:
    m = to_plain(cfg.model)
    keys = set(arch_keys(m.get("arch", "srresnet"))) | set(_NON_MODULE_KEYS)
    kw = {k: v for k, v in m.items() if k not in keys}
    kw.update(generator_spec=generator_spec(cfg), scale=int(cfg.scale), val=to_plain(cfg.get("val", {})),
              metrics=to_plain(cfg.get("metrics", {})), channels_last=bool(cfg.get("channels_last", False)))
    if "patch_size" in cfg.get("data", {}):
        kw.setdefault("patch_size", int(cfg.data.patch_size))
    return kw


def build_module(cfg: DictConfig, module: str | None = None):
    from lightning_sr.modules import module_class

    name = module or cfg.model.get("module", "sr")
    cls = module_class(name)
    try:
        return cls(**module_kwargs(cfg))
    except TypeError as e:  # an unknown model.* key
        raise ConfigError(f"model config does not fit model.module={name!r}: {e}") from e
