"""Losses for SR training: pixel (L1, MSE, Charbonnier), perceptual (VGG19 features: a distance at one layer,
or TecoGAN's cosine similarity at several) and adversarial."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from lightning_sr.errors import WeightsError, require
from lightning_sr.pretrained import load_state_dict_file, resolve_pretrained

VGG19_FILE = "vgg19-dcbfe0d2.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbfe0d2.pth"
# torchvision vgg19().features indices of each conv layer (before its ReLU)
VGG19_LAYERS = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv3_4": 16, "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25, "conv5_1": 28, "conv5_2": 30,
    "conv5_3": 32, "conv5_4": 34,
}


PIXEL_LOSSES = ("l1", "mse", "charbonnier")


def charbonnier_loss(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """mean(sqrt((x - y)^2 + eps)), TecoGAN's pixel, warping and ping-pong criterion (eps inside the root)."""
    return torch.sqrt((x - y) ** 2 + eps).mean()


def pixel_loss(kind: str, key: str = "model.loss"):
    require(kind in PIXEL_LOSSES, f"{key}={kind!r} is not supported; use one of {', '.join(PIXEL_LOSSES)}")
    return {"l1": F.l1_loss, "mse": F.mse_loss, "charbonnier": charbonnier_loss}[kind]


def _vgg_index(layer: str, key: str) -> int:
    """torchvision vgg19().features index of ``convX_Y`` (before its ReLU) or ``reluX_Y`` (after it)."""
    base = layer.replace("relu", "conv")
    require(base in VGG19_LAYERS, f"{key}={layer!r} is unknown; use e.g. conv5_4 or relu5_4")
    return VGG19_LAYERS[base] + (0 if layer.startswith("conv") else 1)


class VGGFeatures(nn.Module):
    """Frozen VGG19 features at named layers (ImageNet-normalised inputs in [0, 1]): {layer: features}.
    Weights: ``weights_path`` or the torch hub cache (a random VGG19 with ``pretrained=False``: tests only)."""

    def __init__(self, layers: list[str], pretrained: bool = True, weights_path: str | None = None,
                 key: str = "model.perceptual"):
        super().__init__()
        self.index = {layer: _vgg_index(layer, f"{key}.layers") for layer in layers}
        # only the feature layers up to the deepest one used: torchvision's vgg19() would also build (and randomly
        # initialise) its 120 M-parameter classifier, seconds of CPU per SRGAN/TecoGAN process for nothing
        last = max(self.index.values())
        self.features = make_layers(cfgs["E"])[: last + 1]
        if pretrained:
            path = resolve_pretrained(weights_path, VGG19_FILE, VGG19_URL, f"{key}.weights_path",
                                      what="perceptual loss VGG19")
            state = load_state_dict_file(path)
            keep = {k.removeprefix("features."): v for k, v in state.items()
                    if k.startswith("features.") and int(k.split(".")[1]) <= last}
            try:
                self.features.load_state_dict(keep)
            except RuntimeError as e:
                raise WeightsError(f"{path} is not a torchvision VGG19 state dict ({key}.weights_path): "
                                   f"{str(e).splitlines()[0]}") from e
        else:
            warnings.warn(f"perceptual loss with a RANDOM VGG19 ({key}.pretrained=false): for tests only",
                          stacklevel=2)
            for m in self.features.modules():  # torchvision's VGG initialisation of its convolutions
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        self.features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        want = {i: name for name, i in self.index.items()}
        out, h = {}, (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in want:
                out[want[i]] = h
        return out


class CosineFeatureLoss(nn.Module):
    """TecoGAN's feature loss: sum over layers of 1 - mean cosine similarity (over channels) of VGG19 features."""

    def __init__(self, layers=("relu2_2", "relu3_4", "relu4_4", "relu5_4"), pretrained: bool = True,
                 weights_path: str | None = None, key: str = "model.feature"):
        super().__init__()
        self.vgg = VGGFeatures(list(layers), pretrained, weights_path, key)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        fs, fh = self.vgg(sr), self.vgg(hr)
        return sum(1 - F.cosine_similarity(fs[k], fh[k].detach(), dim=1, eps=1e-8).mean() for k in fs)


class PerceptualLoss(nn.Module):
    """Distance between VGG19 features of SR and HR (ImageNet-normalised inputs in [0, 1]).

    ``layer`` is e.g. ``conv5_4`` (features before the ReLU, as in ESRGAN/BasicSR) or
    ``relu5_4`` (after it, as in the SRGAN paper). Weights: ``weights_path`` or the torch hub cache.
    """

    def __init__(self, layer: str = "conv5_4", criterion: str = "l1", pretrained: bool = True,
                 weights_path: str | None = None):
        super().__init__()
        require(isinstance(layer, str), f"model.perceptual.layer={layer!r} is unknown; use e.g. conv5_4 or relu5_4")
        self.layer = layer
        self.vgg = VGGFeatures([layer], pretrained, weights_path, "model.perceptual")
        self.criterion = pixel_loss(criterion, "model.perceptual.criterion")

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.vgg(sr)[self.layer], self.vgg(hr)[self.layer].detach())


class GANLoss(nn.Module):
    """``vanilla`` (BCE) or ``relativistic`` (relativistic average, ESRGAN) adversarial losses."""

    def __init__(self, kind: str = "vanilla"):
        super().__init__()
        require(kind in ("vanilla", "relativistic"), f"model.gan.type={kind!r}: use vanilla or relativistic")
        self.kind = kind

    @staticmethod
    def _bce(logits, target: float):
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def generator_loss(self, fake_logits, real_logits):
        if self.kind == "vanilla":
            return self._bce(fake_logits, 1.0)
        r, f = real_logits.detach(), fake_logits
        return (self._bce(r - f.mean(), 0.0) + self._bce(f - r.mean(), 1.0)) / 2

    def discriminator_loss(self, real_logits, fake_logits):
        if self.kind == "vanilla":
            return (self._bce(real_logits, 1.0) + self._bce(fake_logits, 0.0)) / 2
        return (self._bce(real_logits - fake_logits.mean(), 1.0) + self._bce(fake_logits - real_logits.mean(),
                                                                             0.0)) / 2
