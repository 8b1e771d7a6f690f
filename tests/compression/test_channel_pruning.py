"""Physical channel pruning: tensors shrink, dead channels go without changing the output, PixelShuffle
stages are pruned in groups of r^2 filters, protected layers keep their width, bad arguments fail early."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_sr.compression.channel_pruning import ChannelPruning
from lightning_sr.cost import count_macs, count_params
from lightning_sr.errors import ConfigError
from lightning_sr.networks import build_generator, load_generator_state
from lightning_sr.transforms.channels import (
    n_to_prune,
    prune_channels,
    prune_out_channels,
    prune_pixel_shuffle_stage,
    upsampler_stages,
)
from tests.compression_helpers import SPEC, eval_output, lr_input, tiny_generator

pytestmark = pytest.mark.usefixtures("one_thread")

X = lr_input(1, 10, 11)


def out(g: nn.Module) -> torch.Tensor:
    return eval_output(g, X)


# ----- zeroing helpers: make channels dead on the producing side only ------------------------------------------
@torch.no_grad()
def kill_block_channels(block, idxs, consumer_too=False):
    for c in idxs:
        block.conv1.weight[c] = 0
        block.conv1.bias[c] = 0
        if isinstance(block.norm1, nn.BatchNorm2d):
            block.norm1.weight[c] = 0
            block.norm1.bias[c] = 0
        if consumer_too:
            block.conv2.weight[:, c] = 0


@torch.no_grad()
def kill_stage_channels(stage, consumer, idxs, consumer_too=False):
    r2 = stage[1].upscale_factor ** 2
    for c in idxs:
        stage[0].weight[c * r2:(c + 1) * r2] = 0
        stage[0].bias[c * r2:(c + 1) * r2] = 0
        if consumer_too:
            consumer.weight[:, c] = 0


@torch.no_grad()
def kill_trunk_channels(g, idxs, consumer_too=False):
    for c in idxs:
        producers = [g.head[0], *(b.conv2 for b in g.body), g.body_tail[0]]
        for conv in producers:
            conv.weight[c] = 0
            conv.bias[c] = 0
        for b in g.body:
            for norm in (b.norm2,):
                if isinstance(norm, nn.BatchNorm2d):
                    norm.weight[c] = 0
                    norm.bias[c] = 0
        if isinstance(g.body_tail[1], nn.BatchNorm2d):
            g.body_tail[1].weight[c] = 0
            g.body_tail[1].bias[c] = 0
        if consumer_too:
            for conv in [*(b.conv1 for b in g.body), g.body_tail[0], g.upsampler[0][0]]:
                conv.weight[:, c] = 0


# ----- explicit channels: the surgery itself ------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_dead_block_channels_go_without_changing_the_output(norm):
    g = tiny_generator(norm=norm)
    kill_block_channels(g.body[0], [1, 6])
    ref = out(g)
    prune_out_channels(g, "body.0.conv1", [1, 6])
    assert g.body[0].conv1.out_channels == 6 and g.body[0].conv2.in_channels == 6
    assert g.body[1].conv1.out_channels == 8  # other blocks untouched
    if norm == "batch":
        assert g.body[0].norm1.num_features == 6
    assert torch.allclose(out(g), ref, atol=1e-5)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_dead_trunk_channels_go_without_changing_the_output(norm):
    g = tiny_generator(norm=norm)
    kill_trunk_channels(g, [0, 5])
    ref = out(g)
    prune_out_channels(g, "head.0", [0, 5])  # one group: head, every block's conv2, long skip, upsampler input
    assert g.head[0].out_channels == 6 and g.body_tail[0].out_channels == 6
    assert all(b.conv1.in_channels == 6 and b.conv2.out_channels == 6 for b in g.body)
    assert g.upsampler[0][0].in_channels == 6
    assert torch.allclose(out(g), ref, atol=1e-5)


def test_pruning_live_channels_does_change_the_output():
    """Control: the invariance tests above can fail."""
    g = tiny_generator()
    ref = out(g)
    prune_out_channels(g, "body.0.conv1", [1, 6])
    assert (out(g) - ref).abs().max() > 1e-3


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pixel_shuffle_stage_pruned_in_groups_of_r2(scale):
    g = tiny_generator(scale=scale)
    stages = upsampler_stages(g)
    assert len(stages) == {2: 1, 3: 1, 4: 2}[scale]
    r2 = {2: 4, 3: 9, 4: 4}[scale]
    name, stage, consumer = stages[0]
    kill_stage_channels(stage, consumer, [2, 7])
    ref = out(g)
    prune_out_channels(g, f"{name}.0", [2, 7])  # shuffled channels 2 and 7: filters 2*r2.. and 7*r2..
    assert stage[0].out_channels == 6 * r2 and consumer.in_channels == 6
    assert torch.allclose(out(g), ref, atol=1e-5)


def test_pixel_shuffle_grouping_is_not_the_naive_mapping():
    """Removing filters c, c+1, ... (channel i before the shuffle = channel i after, Torch-Pruning's view) or
    the interleaved groups c, c+C, c+2C, c+3C would remove live filters: only the r^2-block mapping keeps
    the output of a model whose shuffled channel 2 is dead."""
    g = tiny_generator()
    stage, consumer = g.upsampler[0], g.upsampler[1][0]
    kill_stage_channels(stage, consumer, [2])
    ref = out(g)
    for wrong_rows in ([2, 3, 4, 5], [2, 10, 18, 26]):
        h = tiny_generator()
        kill_stage_channels(h.upsampler[0], h.upsampler[1][0], [2])
        with torch.no_grad():
            keep = [i for i in range(32) if i not in wrong_rows]
            h.upsampler[0][0].weight = nn.Parameter(h.upsampler[0][0].weight[keep])
            h.upsampler[0][0].bias = nn.Parameter(h.upsampler[0][0].bias[keep])
            h.upsampler[0][0].out_channels = 28
            h.upsampler[1][0].weight = nn.Parameter(h.upsampler[1][0].weight[:, [i for i in range(8) if i != 2]])
            h.upsampler[1][0].in_channels = 7
        assert (out(h) - ref).abs().max() > 1e-3
    prune_pixel_shuffle_stage(stage, consumer, [2])
    assert torch.allclose(out(g), ref, atol=1e-5)


def test_per_channel_prelu_after_the_shuffle_is_pruned_too():
    g = tiny_generator()
    stage, consumer = g.upsampler[0], g.upsampler[1][0]
    stage[2] = nn.PReLU(8)
    with torch.no_grad():
        stage[2].weight.copy_(torch.linspace(0.05, 0.4, 8))
    kill_stage_channels(stage, consumer, [3])
    ref = out(g)
    prune_pixel_shuffle_stage(stage, consumer, [3])
    assert stage[2].num_parameters == 7
    assert torch.allclose(out(g), ref, atol=1e-5)


def test_protected_and_output_layers_refuse_explicit_pruning():
    g = tiny_generator()
    with pytest.raises(ConfigError, match="RGB output"):
        prune_out_channels(g, "tail", [0])
    with pytest.raises(ConfigError, match="at least one must stay"):
        prune_pixel_shuffle_stage(g.upsampler[0], g.upsampler[1][0], list(range(8)))


# ----- importance-driven pruning (what the callback does) --------------------------------------------------------
@pytest.mark.parametrize("importance,global_pruning", [("l1", False), ("l2", False), ("taylor", False),
                                                       ("l2", True)])
def test_dead_channels_are_the_ones_removed(importance, global_pruning):
    """Kill 2 of 8 channels (both sides) in every prunable group: ratio 0.25 must remove exactly those."""
    g = tiny_generator()
    for b in g.body:
        kill_block_channels(b, [1, 4], consumer_too=True)
    for i, (_, st, cons) in enumerate(upsampler_stages(g)):
        kill_stage_channels(st, cons, [0, 5] if i == 0 else [3, 7], consumer_too=True)
    ref = out(g)
    hr = torch.rand(1, 3, 40, 44)
    info = prune_channels(g, 0.25, importance, global_pruning, calib=(X, hr))
    assert info["pruned_out_channels"] == {"body.0.conv1": [8, 6], "body.1.conv1": [8, 6],
                                           "upsampler.0.0": [32, 24], "upsampler.1.0": [32, 24]}
    assert g.tail.in_channels == 6 and g.head[0].out_channels == 8  # trunk protected (head), RGB out kept
    assert torch.allclose(out(g), ref, atol=1e-5)
    assert all(p.grad is None for p in g.parameters())


def test_trunk_is_pruned_when_the_head_is_not_protected():
    g = tiny_generator()
    kill_trunk_channels(g, [2, 6], consumer_too=True)
    for b in g.body:
        kill_block_channels(b, [0, 3], consumer_too=True)
    for _, st, cons in upsampler_stages(g):
        kill_stage_channels(st, cons, [1, 2], consumer_too=True)
    ref = out(g)
    macs, params = count_macs(g, (3, 16, 16)), count_params(g)
    info = prune_channels(g, 0.25, "l1", protect=["tail"])
    assert info["pruned_out_channels"]["head.0"] == [8, 6] and g.body_tail[0].out_channels == 6
    assert g.tail.out_channels == 3
    assert torch.allclose(out(g), ref, atol=1e-5)
    assert count_macs(g, (3, 16, 16)) < 0.7 * macs and count_params(g) < 0.7 * params


def test_half_the_channels_halve_the_block_and_upsampler_widths():
    g = tiny_generator(channels=16, res_blocks=2)
    prune_channels(g, 0.5, "l2")
    assert [b.conv1.out_channels for b in g.body] == [8, 8]
    assert g.upsampler[0][0].out_channels == 32 and g.upsampler[1][0].in_channels == 8
    assert g.upsampler[1][0].out_channels == 32 and g.tail.in_channels == 8
    assert out(g).shape == (1, 3, 40, 44)


def test_upsampler_ignore_keeps_the_upsampler():
    g = tiny_generator()
    prune_channels(g, 0.5, "l2", upsampler="ignore")
    assert g.upsampler[0][0].out_channels == 32 and g.upsampler[1][0].out_channels == 32
    assert g.body[0].conv1.out_channels == 4


def test_round_to_and_ratio_zero():
    g = tiny_generator(channels=16)
    prune_channels(g, 0.3, "l2", round_to=4)
    assert all(b.conv1.out_channels % 4 == 0 and b.conv1.out_channels < 16 for b in g.body)
    assert g.tail.in_channels % 4 == 0
    h = tiny_generator()
    ref = out(h)
    prune_channels(h, 0.0, "l2")
    assert count_params(h) == count_params(tiny_generator()) and torch.equal(out(h), ref)
    assert n_to_prune(8, 0.5) == 4 and n_to_prune(8, 0.99) == 7 and n_to_prune(16, 0.3, 4) == 8


def test_pruned_state_dict_rebuilds_through_the_spec():
    g = tiny_generator(norm="batch")
    prune_channels(g, 0.5, "l1", protect=["tail"])
    h = load_generator_state(build_generator({**SPEC, "norm": "batch"}), g.state_dict())
    assert torch.equal(out(h), out(g))


def test_multi_exit_heads_are_pruned_consistently():
    g = randomize_multi_exit()
    ref = {k: v.shape for k, v in g.forward_exits(X).items()}
    prune_channels(g, 0.5, "l2", protect=["tail"])
    outs = g.eval().forward_exits(X)
    assert {k: v.shape for k, v in outs.items()} == ref
    assert g.head[0].out_channels == 4 and g.exit_heads["exit1"].body_tail[0].in_channels == 4
    assert g.exit_heads["exit1"].tail.in_channels == 4


def randomize_multi_exit():
    from tests.compression_helpers import randomize

    return randomize(build_generator({**SPEC, "arch": "multi_exit", "res_blocks": 2, "exits": [1]})).eval()


# ----- bad arguments and models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"ratio": 1.0}, "ratio=1.0 is impossible"), ({"ratio": -0.1}, "ratio=-0.1"), ({"ratio": "half"}, "ratio='half'"),
    ({"importance": "random"}, "importance='random' is not supported"),
    ({"upsampler": "split"}, "upsampler='split'"), ({"round_to": 0}, "round_to=0"),
    ({"protect": "head"}, "protect='head' must be null .* or a list"), ({"global_pruning": "yes"}, "global_pruning='yes'"),
])
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        ChannelPruning(**kwargs)
    assert "\n" not in str(e.value) and "compression.channel_prune." in str(e.value)


def test_nothing_prunable_and_unknown_protected_name():
    g = tiny_generator(res_blocks=0)
    with pytest.raises(ConfigError, match="nothing to prune.*res_blocks=0"):
        prune_channels(g, 0.5, upsampler="ignore")
    with pytest.raises(ConfigError, match="protect names 'neck'"):
        prune_channels(tiny_generator(), 0.5, protect=["head", "neck"])
    prune_channels(g, 0.5)  # a 0-block model still has upsampler stages to prune
    assert g.upsampler[0][0].out_channels == 16
