"""lightning_sr.cost.model_cost: the one function behind every params / MACs / size / latency figure."""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from torch import nn

from lightning_sr.config import generator_spec
from lightning_sr.cost import cost_from_config, count_macs, count_params, model_cost
from lightning_sr.networks import build_generator
from tests.conftest import compose


def _generator(model: str, blocks: int, channels: int = 16):
    cfg = compose([f"model={model}", f"model.res_blocks={blocks}", f"model.channels={channels}"])
    return build_generator(generator_spec(cfg))


@pytest.mark.parametrize("model", ["srresnet", "srgan"])
def test_params_grow_by_one_block_per_block(model):
    """Layer pruning removes whole residual blocks: params(16) - params(12) == 4 * params(one block)."""
    g16, g12, g2 = _generator(model, 16), _generator(model, 12), _generator(model, 2)
    block = count_params(g16.body[0])
    assert block > 0
    c16, c12, c2 = (model_cost(g, (3, 8, 8), latency=False) for g in (g16, g12, g2))
    assert c16["params"] - c12["params"] == 4 * block
    assert c16["params"] - c2["params"] == 14 * block
    assert c16["params"] == count_params(g16) == sum(p.numel() for p in g16.parameters())


def test_macs_grow_by_the_block_convolutions():
    """A residual block is two CxC 3x3 convolutions on the LR grid (norm/act are not MACs)."""
    c, h, w = 16, 8, 12
    g16, g12 = _generator("srresnet", 16, c), _generator("srresnet", 12, c)
    m16 = model_cost(g16, (3, h, w), latency=False)["macs"]
    m12 = model_cost(g12, (3, h, w), latency=False)["macs"]
    assert m16 - m12 == 4 * (2 * c * c * 9 * h * w)


def test_known_convolution():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    cost = model_cost(conv, (3, 32, 32), latency=True, warmup=1, repeats=3, threads=1)
    assert cost["params"] == 8 * 3 * 9 + 8 == cost["params_trainable"]
    assert cost["macs"] == 8 * 3 * 9 * 32 * 32 == count_macs(conv, (3, 32, 32))
    assert cost["macs_input"] == "3x32x32"
    assert 224 * 4 / 2**20 <= cost["size_mb"] < 0.01  # float32 weights + state-dict framing
    assert cost["latency_threads"] == 1
    # the reported figure is this model's batch-1 forward in milliseconds: timed here independently, it agrees
    # within a factor of 10 either way (a unit slip, seconds or microseconds, is a factor of 1000)
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        conv(x)
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            conv(x)
            times.append((time.perf_counter() - t0) * 1000)
    assert 0.1 < cost["latency_ms"] / statistics.median(times) < 10, (cost["latency_ms"], statistics.median(times))
    conv.bias.requires_grad_(False)
    assert model_cost(conv, (3, 32, 32), latency=False)["params_trainable"] == 8 * 3 * 9
    assert "latency_ms" not in model_cost(conv, (3, 32, 32), latency=False)


def test_macs_follow_the_input_size_and_restore_mode():
    conv = nn.Conv2d(3, 4, 3, padding=1).train()
    assert count_macs(conv, (3, 20, 10)) == 4 * 3 * 9 * 200
    assert conv.training  # measuring does not leave the model in eval mode
    threads = torch.get_num_threads()
    model_cost(conv, (3, 8, 8), threads=1, warmup=0, repeats=1)
    assert torch.get_num_threads() == threads


def test_cost_from_config_uses_the_cost_node():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    cfg = compose(["cost.input_size=[3,16,16]", "cost.latency=false"]).cost
    cost = cost_from_config(conv, cfg)
    assert cost["macs"] == 4 * 3 * 9 * 256 and cost["macs_input"] == "3x16x16"
    assert "latency_ms" not in cost


def _srresnet_params(blocks: int, c: int, norm: bool, scale: int = 4) -> int:
    """SRResNet parameters from its layer list (Ledig et al.), counted by hand: conv weights + biases,
    one PReLU slope per activation, BatchNorm weight + bias per channel."""
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    bn = 2 * c if norm else 0
    head = conv(3, c, 9) + 1
    block = 2 * conv(c, c, 3) + 2 * bn + 1
    body_tail = conv(c, c, 3) + bn
    ups = (scale // 2) * (conv(c, 4 * c, 3) + 1)
    tail = conv(c, 3, 9)
    return head + blocks * block + body_tail + ups + tail


@pytest.mark.parametrize("model,norm", [("srresnet", False), ("srgan", True)])
@pytest.mark.parametrize("blocks,channels", [(16, 64), (2, 16), (0, 8)])
def test_generator_size_equals_the_architecture_formula(model, norm, blocks, channels):
    g = _generator(model, blocks, channels)
    assert count_params(g) == _srresnet_params(blocks, channels, norm)
    if (model, blocks, channels) == ("srgan", 16, 64):
        assert count_params(g) == 1_549_462  # the paper's table says 1,543,074 (docs/sweeps.md: a 0.4 % gap)
