"""Finding pretrained weights offline: a configured path or the torch hub cache, else one clear line."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lightning_sr.errors import WeightsError


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_pretrained(path: str | None, filename: str, url: str, config_key: str, what: str) -> Path:
    """Return the weights file to load, or raise a one-line :class:`WeightsError`."""
    if path:
        p = Path(os.path.expanduser(str(path)))
        if not p.is_file():
            raise WeightsError(f"{what}: {p} does not exist; fix {config_key}=FILE or download {url}")
        return p
    p = hub_checkpoint_dir() / filename
    if p.is_file():
        return p
    raise WeightsError(
        f"{what}: {filename} not found in the torch hub cache ({p.parent}); download {url} into that folder "
        f"or set {config_key}=FILE"
    )


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or not a state dict
        raise WeightsError(f"cannot read weights file {path}: {e.__class__.__name__}: {e}") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return sd
