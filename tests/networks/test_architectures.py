"""Architectures: parameter counts follow the config, scales, options, bad values, tiling."""

import pytest
import torch
from torch import nn

from lightning_sr.cost import count_params
from lightning_sr.errors import ConfigError
from lightning_sr.networks import ResidualBlock, SRResNet, VGGDiscriminator, build_generator, tiled_forward


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_params_follow_block_count(norm):
    one_block = count_params(ResidualBlock(64, norm))
    assert count_params(SRResNet(16, norm=norm)) - count_params(SRResNet(12, norm=norm)) == 4 * one_block
    assert count_params(SRResNet(0, norm=norm)) + 16 * one_block == count_params(SRResNet(16, norm=norm))


def test_srgan_paper_generator_size():
    # SRGAN generator (BN, PReLU): 16 blocks -> 1,549,462 parameters with this layout
    assert count_params(SRResNet(16, norm="batch")) == 1_549_462


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("skip", ["bicubic", "bilinear", "none"])
def test_output_shape(scale, skip):
    m = SRResNet(1, 8, scale, skip=skip)
    assert m(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)


def test_bicubic_skip_starts_at_bicubic():
    from lightning_sr.data import bicubic_upscale

    m = SRResNet(2, 8, 4, skip="bicubic")
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(m(x), bicubic_upscale(x, 4), atol=1e-6)


@pytest.mark.parametrize("kw,match", [
    (dict(res_blocks=-1), "res_blocks"), (dict(scale=5), "scale"), (dict(norm="group"), "norm"),
    (dict(skip="lanczos"), "skip"), (dict(channels=0), "channels"), (dict(act="gelu"), "act"),
])
def test_bad_values_are_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        SRResNet(**kw)


def test_blocks_are_indexable():
    m = SRResNet(4, 8)
    assert isinstance(m.body, nn.ModuleList) and len(m.body) == 4
    del m.body[1]
    assert m(torch.rand(1, 3, 6, 6)).shape[-1] == 24


def test_build_from_spec_roundtrip():
    spec = {"arch": "srresnet", "res_blocks": 2, "channels": 8, "scale": 2, "norm": "none", "act": "relu",
            "skip": "none", "res_scale": 1.0}
    m = build_generator(spec)
    assert isinstance(m, SRResNet) and len(m.body) == 2 and m.scale == 2
    with pytest.raises(ConfigError, match="unknown architecture"):
        build_generator({"arch": "nope"})


@pytest.mark.parametrize("patch", [32, 96, 128])
def test_discriminator_sized_from_patch(patch):
    d = VGGDiscriminator(patch, channels=8, fc_features=16)
    assert d(torch.rand(2, 3, patch, patch)).shape == (2, 1)
    with pytest.raises(ConfigError, match="patch"):
        VGGDiscriminator(40)


def test_tiled_forward_exact_for_pointwise_model():
    model = nn.Sequential(nn.Conv2d(3, 12, 1), nn.PixelShuffle(2))
    x = torch.rand(1, 3, 37, 29)
    full = model(x)
    tiled = tiled_forward(model, x, 2, tile=10, overlap=4)
    assert tiled.shape == full.shape
    assert torch.allclose(tiled, full, atol=1e-6)


def test_tiled_forward_close_for_srresnet_and_dict_outputs():
    """SRResNet's receptive field (about 10 LR pixels) exceeds the kept margin (6), so tiles differ from the whole
    image only by a few 1e-4 at the seams; every named output is stitched the same way."""
    torch.manual_seed(0)
    m = SRResNet(1, 8, 2, skip="bicubic").eval()
    with torch.no_grad():
        for p in m.tail.parameters():
            p.normal_(0, 0.01)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        full = m(x)
    out = tiled_forward(lambda t: {"": m(t), "x2": m(t) * 2}, x, 2, tile=24, overlap=12)
    assert set(out) == {"", "x2"} and out[""].shape == out["x2"].shape == full.shape
    assert (out[""] - full).abs().max() < 1.5e-3  # measured 4.6e-4; overlap=0 gives 0.11
    assert (out["x2"] - 2 * full).abs().max() < 3e-3
    assert torch.allclose(out["x2"], 2 * out[""], rtol=0, atol=1e-6)
