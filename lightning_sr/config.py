"""Turning the Hydra config into objects, and checking it before anything expensive happens."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from omegaconf import DictConfig

from lightning_sr.checkpoint import ARCH_KEY, read_checkpoint
from lightning_sr.data.datamodule import validate_data_config
from lightning_sr.data.video import VideoDataModule, lr_align
from lightning_sr.errors import ConfigError, require
from lightning_sr.lit_modules import MODULES, module_class
from lightning_sr.networks.blocks import SCALES
from lightning_sr.networks.recycle import KIND, recycled_layers
from lightning_sr.networks.registry import ARCHS, arch_keys, build_generator, spec_from_config
from lightning_sr.overrides import to_plain, user_overrides

log = logging.getLogger(__name__)

# model-config keys that are not LightningModule arguments (the convolution options belong to the architecture;
# one that does not take them ignores conv=normal and refuses anything else, see networks.registry.spec_from_config)
_NON_MODULE_KEYS = ("name", "arch", "module", "conv", "conv_scope", "recycle")
DEFAULT_DATAMODULE = "lightning_sr.data.SRDataModule"
# the data presets (conf/data) each kind of SR model trains on; tests/test_video.py checks them against conf/data
VIDEO_TRAIN_DATA = ("embedded_video", "reds", "video_folder")
IMAGE_TRAIN_DATA = ("embedded", "div2k", "folder", "t91")


def validate_config(cfg: DictConfig, need_train: bool = True, check_model: bool = True) -> None:
    """Every check that needs no data on disk. Raises :class:`ConfigError` with one clear line."""
    scale = cfg.get("scale")
    require(scale in SCALES, f"scale={scale} is not supported; use one of {', '.join(map(str, SCALES))}")
    if check_model:
        arch = cfg.model.get("arch", "srresnet")
        require(arch in ARCHS, f"model.arch={arch!r} is unknown; use one of {', '.join(sorted(ARCHS))}")
        # building the generator runs the architecture's own argument checks (cheap: no data involved)
        spec = generator_spec(cfg)
        gen = build_generator(spec)
        check_recycled(gen, spec)
        # a LightningModule may check its own arguments here too (static ``check_config(model_cfg)``)
        check = getattr(MODULES.get(cfg.model.get("module", "sr")), "check_config", None)
        if check is not None:
            check(to_plain(cfg.model))
        if need_train and cfg.model.get("init_from"):
            check_init_from(cfg)
    if need_train:
        check_model_fits_data(cfg)
        validate_data_config(cfg.data, scale)
        check_skip_alignment(cfg)
        t = cfg.trainer
        ms = t.get("max_steps", -1)
        require(ms is None or ms == -1 or ms > 0, f"trainer.max_steps={ms} is impossible; use a positive integer")
        accel = str(t.get("accelerator", "auto"))
        require(not (t.get("sync_batchnorm") and accel == "cpu"),
                "trainer.sync_batchnorm=true works on GPUs only (PyTorch's SyncBatchNorm is CUDA-only); use "
                "trainer=ddp_cpu or trainer.sync_batchnorm=false")
    tile = cfg.get("val", {}).get("tile", 0) or 0
    require(tile >= 0, f"val.tile={tile} is impossible; use 0 (whole images) or a positive LR tile size")
    wu = cfg.get("val", {}).get("warmup_frames", 0)
    require(isinstance(wu, int) and not isinstance(wu, bool) and wu >= 0,
            f"val.warmup_frames={wu!r} is impossible; use 0 (cold start) or the number of warm-up frames (TecoGAN: 5)")


def hydra_choice(group: str) -> str | None:
    """The config-group choice of this job (``data=...``), or None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return (HydraConfig.get().runtime.choices or {}).get(group)


def is_video_data(data_cfg: Any) -> bool:
    """Whether ``data._target_`` is a video datamodule (clips) rather than an image one."""
    from hydra.utils import get_class

    try:
        cls = get_class(str(data_cfg.get("_target_") or DEFAULT_DATAMODULE))
    except Exception:
        return False  # build_datamodule names the bad _target_
    return isinstance(cls, type) and issubclass(cls, VideoDataModule)


def check_model_fits_data(cfg: DictConfig) -> None:
    """A video model (``model.module=video``) trains on clips, an image SR model on images: the wrong pair stops
    here with one line naming the presets that fit (it would otherwise fail inside ``training_step``)."""
    module = cfg.model.get("module", "sr")
    if module in ("classify", "eval"):
        return
    video_model, video_data = module == "video", is_video_data(cfg.data)
    if video_model == video_data:
        return
    model = hydra_choice("model") or cfg.model.get("name")
    data = hydra_choice("data") or cfg.data.get("name")
    if video_model:
        raise ConfigError(f"model={model} is a video model but data={data} holds images; use a video data preset: "
                          f"{', '.join(f'data={d}' for d in VIDEO_TRAIN_DATA)}")
    raise ConfigError(f"model={model} is an image model but data={data} holds video clips; use an image data preset: "
                      f"{', '.join(f'data={d}' for d in IMAGE_TRAIN_DATA)} (or model=frvsr|tecogan for video)")


def check_skip_alignment(cfg: DictConfig) -> None:
    """A video generator's bicubic skip must sample the LR image where the data's degradation put its pixels (a
    corner-aligned skip on bicubic data is 1.5 HR pixels off, and the network spends capacity undoing it)."""
    skip = cfg.model.get("skip_align")
    if skip is None or not is_video_data(cfg.data):
        return
    data_align = lr_align(cfg.data)
    require(skip == data_align,
            f"model.skip_align={skip} but data.degradation={cfg.data.get('degradation')} puts LR pixels at the "
            f"{data_align} of their HR cell (data.lr_align={cfg.data.get('lr_align')}); use "
            f"model.skip_align={data_align}, or a degradation that matches ({'gaussian' if skip == 'corner' else 'bicubic'})")


def check_recycled(gen, spec: dict[str, Any]) -> None:
    """``model.conv=recycle`` must recycle at least one layer (e.g. not conv_scope=residual in a network without
    residual blocks)."""
    if spec.get("conv") == KIND:
        require(bool(recycled_layers(gen)),
                f"model.conv=recycle recycles no layer of model.arch={spec.get('arch')!r} with "
                f"model.conv_scope={spec.get('conv_scope', 'residual')} (no 3x3-or-larger convolution in scope); use "
                f"model.conv_scope=all")


def check_init_from(cfg: DictConfig) -> None:
    """``model.init_from`` takes its architecture from the checkpoint. Architecture keys the user set on the
    command line that disagree with it are an error; config defaults that it replaces are named in the log."""
    path = cfg.model.init_from
    ckpt_spec = dict(read_checkpoint(path, "model.init_from")[ARCH_KEY])
    want = generator_spec(cfg)
    if ckpt_spec.get("arch") != want.get("arch"):
        return  # load_generator raises the one-line arch error
    differ = {k: (want[k], ckpt_spec.get(k)) for k in want if k not in ("arch", "scale") and ckpt_spec.get(k) != want[k]}
    if not differ:
        return
    set_by_user = {o.split("=", 1)[0].lstrip("+~") for o in user_overrides()}
    conflicts = [k for k in differ if f"model.{k}" in set_by_user]
    if conflicts:
        raise ConfigError(f"model.init_from={path} holds " + ", ".join(f"{k}={differ[k][1]}" for k in conflicts)
                          + " but the command line sets " + ", ".join(f"model.{k}={differ[k][0]}" for k in conflicts)
                          + "; drop those overrides (the checkpoint's architecture is used) or choose another "
                            "checkpoint")
    log.warning("model.init_from=%s: the checkpoint's architecture replaces the config's %s", path,
                ", ".join(f"{k} {a} -> {b}" for k, (a, b) in differ.items()))


def generator_spec(cfg: DictConfig) -> dict[str, Any]:
    return spec_from_config(to_plain(cfg.model), int(cfg.scale))


def module_kwargs(cfg: DictConfig) -> dict[str, Any]:
    m = to_plain(cfg.model)
    keys = set(arch_keys(m.get("arch", "srresnet"))) | set(_NON_MODULE_KEYS)
    kw = {k: v for k, v in m.items() if k not in keys}
    kw.update(generator_spec=generator_spec(cfg), scale=int(cfg.scale), val=to_plain(cfg.get("val", {})),
              metrics=to_plain(cfg.get("metrics", {})), cost=to_plain(cfg.get("cost", {})),
              channels_last=bool(cfg.get("channels_last", False)))
    if "patch_size" in cfg.get("data", {}):
        kw.setdefault("patch_size", int(cfg.data.patch_size))
    return kw


def module_arguments(cls: type) -> set[str]:
    """Named ``__init__`` arguments of a LightningModule class and its bases (they pass theirs on as ``**kwargs``)."""
    names: set[str] = set()
    for c in cls.__mro__:
        init = c.__dict__.get("__init__")
        if init is None or c.__module__.split(".")[0] in ("lightning", "pytorch_lightning", "torch"):
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                names.add(p.name)
    return names


def _check_signature(cls: type, kwargs: dict[str, Any], name: str) -> None:
    """A config key the module does not take is a ConfigError naming it (checked against the signatures, so a
    TypeError raised inside a constructor stays a bug report, not a config error)."""
    known = module_arguments(cls)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not an argument of model.module={name!r} ({cls.__name__}); "
                          f"remove it or use one of: {', '.join(sorted(known - {'generator_spec', 'scale'}))}")
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"model config does not fit model.module={name!r} ({cls.__name__}): {e}") from None


def build_module(cfg: DictConfig, module: str | None = None):
    name = module or cfg.model.get("module", "sr")
    cls = module_class(name)
    kwargs = module_kwargs(cfg)
    if "patch_size" not in (cfg.model or {}) and "patch_size" not in module_arguments(cls):
        kwargs.pop("patch_size", None)  # given from data.patch_size to the modules that need it (discriminators)
    _check_signature(cls, kwargs, name)
    return cls(**kwargs)


def build_datamodule(cfg: DictConfig, seed: int | None = None):
    """The datamodule named by ``data._target_`` (default :class:`lightning_sr.data.SRDataModule`), built from
    the data node, the scale and the seed."""
    from hydra.utils import get_class

    target = cfg.data.get("_target_") or DEFAULT_DATAMODULE
    try:
        cls = get_class(target)
    except Exception as e:
        raise ConfigError(f"data._target_={target!r} is not an importable class: {e}") from None
    return cls(cfg.data, int(cfg.scale), seed=int(cfg.seed if seed is None else seed))
