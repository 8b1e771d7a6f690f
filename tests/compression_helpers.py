"""Helpers of the compression tests: tiny generators with non-trivial weights, a tiny image folder
(fast real Trainer runs), lightning-sr checkpoints written directly. The fixtures built on them (``tiny_data``,
``dense_ckpt``, ``one_thread``) are in tests/conftest.py, so every test folder gets them without importing them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lightning_sr.checkpoint import ARCH_KEY
from lightning_sr.networks import build_generator

SPEC = {"arch": "srresnet", "res_blocks": 2, "channels": 8, "scale": 4, "norm": "none", "act": "prelu",
        "skip": "bicubic", "res_scale": 1.0}


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (the tail of a fresh SRResNet is zero: every layer must matter here)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.ndim == 1 and "prelu" not in name:
                t.copy_((torch.rand(t.shape, generator=g) - 0.5) * 0.2 + (1.0 if "norm" in name and
                                                                          name.endswith("weight") else 0.0))
            else:
                t.copy_((torch.rand(t.shape, generator=g) - 0.5) * 0.3)
    return model


def tiny_generator(seed: int = 0, **kw) -> torch.nn.Module:
    return randomize(build_generator({**SPEC, **kw}), seed).eval()


def lr_input(seed: int, height: int, width: int) -> torch.Tensor:
    """A fixed random LR image (1, 3, height, width): the input the pruning tests compare outputs on."""
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def eval_output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output in eval mode, without gradients."""
    return model.eval()(x)


def save_ckpt(model: torch.nn.Module, spec: dict, path: Path) -> Path:
    """A checkpoint as train.py writes it, as far as model.init_from / evaluate.py are concerned."""
    torch.save({"state_dict": {f"generator.{k}": v for k, v in model.state_dict().items()}, ARCH_KEY: dict(spec)},
               path)
    return path


def write_tiny_images(folder: Path, n: int = 3, size: int = 64) -> Path:
    from lightning_sr.ops.image_io import write_rgb

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = np.stack([np.sin(xx / (5 + i)) * 60 + 120, np.cos(yy / (4 + i)) * 60 + 120,
                        ((xx + yy) * (i + 1)) % 200 + 20], -1) + rng.normal(0, 8, (size, size, 3))
        write_rgb(folder / f"im{i}.png", np.clip(img, 0, 255).astype(np.uint8))
    return folder


def tiny_data_overrides(folder: Path, val_folder: Path | None = None) -> list[str]:
    """After conftest.SMOKE: 64x64 images for training and a validation folder (by default the training
    images, named as a separate folder), no latency timing, no model summary."""
    return ["data=folder", "data.kind=folders", "data.name=tiny", f"data.hr_dir={folder}",
            f"data.val_hr_dir={val_folder or folder}", "data.val_split=0", "cost.latency=false",
            "callbacks.model_summary=null"]
