"""The networks: plain ``nn.Module`` architectures (generators, discriminators, classifiers), no Lightning, nothing
of lightning_sr above ``ops/``. Build one through :func:`build_generator` from a spec dict; how it trains is the
LightningModule's business (:mod:`lightning_sr.lit_modules`).

Importing this package imports every architecture module, which registers itself in the registry.
"""

from lightning_sr.networks import bicubic as _bicubic  # noqa: F401  (registers "bicubic")
from lightning_sr.networks.blocks import ResidualBlock, Upsampler
from lightning_sr.networks.classify import LeNet5, ResNet18
from lightning_sr.networks.conv import conv_layers, is_conv, make_conv, register_conv
from lightning_sr.networks.discriminator import VGGDiscriminator
from lightning_sr.networks.multi_exit import MultiExitSRResNet
from lightning_sr.networks.outputs import MAIN, MultiOutput, is_multi_output, named_outputs, output_names
from lightning_sr.networks.recycle import RecycleConv2d, materialize, materialize_spec, recycled_layers
from lightning_sr.networks.registry import (
    ARCHS,
    adapt_to_state_dict,
    arch_keys,
    build_generator,
    load_generator_state,
    register,
    spec_from_config,
)
from lightning_sr.networks.srresnet import SRResNet
from lightning_sr.networks.tiling import tiled_forward
from lightning_sr.networks.video import FRNet, backward_warp
from lightning_sr.networks.video_discriminator import SpatioTemporalDiscriminator

__all__ = [
    "FRNet", "LeNet5", "ResNet18", "RecycleConv2d", "materialize", "materialize_spec", "recycled_layers", "SpatioTemporalDiscriminator", "backward_warp", "ARCHS", "MAIN", "MultiExitSRResNet", "MultiOutput", "ResidualBlock", "SRResNet", "Upsampler", "VGGDiscriminator",
    "adapt_to_state_dict", "arch_keys", "build_generator", "conv_layers", "is_conv", "is_multi_output",
    "load_generator_state", "make_conv", "named_outputs", "output_names", "register", "register_conv",
    "spec_from_config", "tiled_forward",
]
