"""The perceptual loss's VGG19 features: built without torchvision's classifier, yet the same network."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import vgg19

from lightning_sr.errors import WeightsError
from lightning_sr.losses import VGGFeatures


def test_vgg_features_equal_torchvision_vgg19_loaded_from_the_same_file(tmp_path):
    torch.manual_seed(0)
    ref = vgg19(weights=None).eval()  # a full torchvision VGG19 (classifier included), as the hub file holds it
    path = tmp_path / "vgg19-dcbfe0d2.pth"
    torch.save(ref.state_dict(), path)
    feats = VGGFeatures(["conv2_2", "relu3_1"], pretrained=True, weights_path=str(path))
    assert len(feats.features) == 12  # up to relu3_1 (index 11), nothing deeper, no classifier
    x = torch.rand(1, 3, 24, 24)
    h = (x - feats.mean) / feats.std
    want = {}
    for i, layer in enumerate(ref.features[:12]):
        h = layer(h)
        want[i] = h
    got = feats(x)
    assert torch.equal(got["conv2_2"], want[7]) and torch.equal(got["relu3_1"], want[11])


def test_vgg_weights_file_of_another_network_is_one_line(tmp_path):
    path = tmp_path / "not_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(WeightsError, match="is not a torchvision VGG19 state dict") as e:
        VGGFeatures(["conv1_2"], pretrained=True, weights_path=str(path))
    assert "\n" not in str(e.value) and "model.perceptual.weights_path" in str(e.value)


def test_random_vgg_features_use_torchvision_initialisation():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM VGG19"):
        feats = VGGFeatures(["conv5_4"], pretrained=False)
    conv = feats.features[34]
    want = (2 / (conv.out_channels * 9)) ** 0.5  # kaiming normal, fan_out (PyTorch's default init gives 0.41x this)
    assert abs(conv.weight.std().item() / want - 1) < 0.02
    assert torch.count_nonzero(conv.bias) == 0
