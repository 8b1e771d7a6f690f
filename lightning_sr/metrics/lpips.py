"""LPIPS (AlexNet, v0.1) through the official ``lpips`` package, offline-friendly.

``lpips.LPIPS(pretrained=True)`` downloads torchvision's AlexNet. Here the five LPIPS linear
layers come from the package itself and the AlexNet backbone from, in order:

1. ``backbone_path`` (a torchvision ``alexnet`` state dict, full or ``features.*`` only),
2. the torch hub cache (``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth``),

and when neither exists a :class:`WeightsError` says which file is missing and how to get it.
``pretrained_backbone=False`` gives a random backbone (tests of the plumbing only; it warns).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from lightning_sr.errors import WeightsError
from lightning_sr.pretrained import load_state_dict_file, resolve_pretrained

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
# index ranges of torchvision's alexnet().features in each LPIPS slice
_SLICES = {1: range(0, 2), 2: range(2, 5), 3: range(5, 8), 4: range(8, 10), 5: range(10, 12)}


def _features_to_slices(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, val in sd.items():
        if not key.startswith("features."):
            continue
        _, idx, name = key.split(".", 2)
        idx = int(idx)
        for s, rng in _SLICES.items():
            if idx in rng:
                out[f"slice{s}.{idx}.{name}"] = val
    return out


class LPIPS(nn.Module):
    """LPIPS distance between images in [0, 1] (scaled to [-1, 1] inside); returns (N,)."""

    def __init__(self, backbone_path: str | None = None, pretrained_backbone: bool = True):
        super().__init__()
        import lpips as lpips_pkg

        self.net = lpips_pkg.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        if pretrained_backbone:
            path = resolve_pretrained(backbone_path, ALEXNET_FILE, ALEXNET_URL, "metrics.lpips.backbone_path",
                                      what="LPIPS AlexNet backbone")
            sd = load_state_dict_file(path)
            sliced = _features_to_slices(sd)
            missing = set(self.net.net.state_dict()) - set(sliced)
            if missing:
                raise WeightsError(f"{path} is not an AlexNet state dict (missing {sorted(missing)[:2]}...); "
                                   f"use torchvision's {ALEXNET_FILE}")
            self.net.net.load_state_dict(sliced)
        else:
            warnings.warn("LPIPS with a RANDOM AlexNet backbone: values are not comparable to published LPIPS",
                          stacklevel=2)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if sr.dim() == 3:
            sr, hr = sr.unsqueeze(0), hr.unsqueeze(0)
        d = self.net(sr.float().clamp(0, 1) * 2 - 1, hr.float().clamp(0, 1) * 2 - 1)
        return d.flatten(1).mean(dim=1)


def build_lpips(cfg) -> LPIPS | None:
    """LPIPS from the ``metrics.lpips`` config node, or None when disabled."""
    if cfg is None or not cfg.get("enabled", False):
        return None
    return LPIPS(cfg.get("backbone_path"), cfg.get("pretrained", True))
