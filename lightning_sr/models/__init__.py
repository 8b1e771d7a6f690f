"""Architectures. Build them through :func:`build_generator` from a spec dict."""

from lightning_sr.models.blocks import ResidualBlock, Upsampler
from lightning_sr.models.discriminator import VGGDiscriminator
from lightning_sr.models.multi_exit import MultiExitSRResNet
from lightning_sr.models.registry import (
    ARCHS,
    adapt_to_state_dict,
    build_generator,
    load_generator_state,
    register,
    spec_from_config,
)
from lightning_sr.models.srresnet import SRResNet
from lightning_sr.models.tiling import tiled_forward

__all__ = [
    "ARCHS", "MultiExitSRResNet", "ResidualBlock", "SRResNet", "Upsampler", "VGGDiscriminator",
    "adapt_to_state_dict", "build_generator", "load_generator_state", "register", "spec_from_config", "tiled_forward",
]
