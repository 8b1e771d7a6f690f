"""Residual-block pruning: which blocks each criterion drops, the surgery, the spec, a real prune + fine-tune."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_sr.checkpoint import load_generator, read_checkpoint
from lightning_sr.compression.block_pruning import BlockPruning
from lightning_sr.errors import ConfigError
from lightning_sr.networks import build_generator
from lightning_sr.run import train
from lightning_sr.transforms.blocks import (
    l1_scores,
    output_delta_scores,
    prune_blocks,
    select_blocks,
)
from tests.compression_helpers import SPEC, eval_output, lr_input, save_ckpt, tiny_generator
from tests.conftest import SMOKE, compose

pytestmark = pytest.mark.usefixtures("one_thread")

X = lr_input(2, 9, 10)


def out(g):
    return eval_output(g, X)


@torch.no_grad()
def make_identity(block):
    """Residual branch exactly zero: the block passes its input through."""
    last = block.norm2 if isinstance(block.norm2, torch.nn.BatchNorm2d) else block.conv2
    last.weight.zero_()
    last.bias.zero_()


def test_last_keeps_the_shallowest_blocks_in_order():
    g = tiny_generator(res_blocks=5)
    blocks = list(g.body)
    kept = select_blocks(None, 5, 3)
    assert kept == [0, 1, 2]
    prune_blocks(g, kept)
    assert list(g.body) == blocks[:3]
    assert out(g).shape == (1, 3, 36, 40)


def test_l1_drops_the_blocks_with_the_smallest_weights():
    g = tiny_generator(res_blocks=4)
    with torch.no_grad():
        for i in (1, 3):
            g.body[i].conv1.weight.mul_(0.1)
            g.body[i].conv2.weight.mul_(0.1)
    scores = l1_scores(g)
    assert scores[1] < min(scores[0], scores[2]) and scores[3] < min(scores[0], scores[2])
    assert select_blocks(scores, 4, 2) == [0, 2]


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_output_delta_drops_blocks_that_do_nothing_and_keeps_the_output(norm):
    g = tiny_generator(res_blocks=4, norm=norm)
    make_identity(g.body[1])
    make_identity(g.body[2])
    ref = out(g)
    scores = output_delta_scores(g, X)
    assert scores[1] == pytest.approx(0, abs=1e-7) and scores[2] == pytest.approx(0, abs=1e-7)
    assert min(scores[0], scores[3]) > 1e-3
    kept = select_blocks(scores, 4, 2)
    assert kept == [0, 3]
    prune_blocks(g, kept)
    assert torch.allclose(out(g), ref, atol=1e-6)
    # control: dropping the deepest blocks instead does change the output
    h = tiny_generator(res_blocks=4, norm=norm)
    make_identity(h.body[1])
    make_identity(h.body[2])
    prune_blocks(h, select_blocks(None, 4, 2))
    assert (out(h) - ref).abs().max() > 1e-3


def test_output_delta_is_the_trunk_change_when_one_block_is_skipped():
    g = tiny_generator(res_blocks=3)
    with torch.no_grad():
        h = g.head(X)
        full = g.trunk(h)
        skip1 = g.body[2](g.body[0](h))
    assert output_delta_scores(g, X)[1] == pytest.approx(float((skip1 - full).norm() / full.norm()), rel=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"keep": -1}, r"keep=-1 is impossible"), ({"keep": 2.5}, r"keep=2.5"), ({"keep": True}, r"keep=True"),
    ({"criterion": "random"}, r"criterion='random' is not supported; use one of last, l1, output_delta"),
    ({"calib_images": 0}, "calib_images=0"), ({"eval_images": 0}, "eval_images=0"),
])
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        BlockPruning(**kwargs)
    assert "\n" not in str(e.value) and "compression.block_prune." in str(e.value)


def test_multi_exit_models_are_refused():
    from lightning_sr.transforms.blocks import residual_blocks

    g = build_generator({**SPEC, "arch": "multi_exit", "res_blocks": 3, "exits": [1]})
    with pytest.raises(ConfigError, match="multi-exit"):
        residual_blocks(g)


def test_prune_then_fine_tune_with_a_real_trainer(tiny_data, tmp_path):
    """output_delta finds the two do-nothing blocks of a trained checkpoint: removing them keeps PSNR exactly;
    the pruned model is fine-tuned and its checkpoint rebuilds as a 2-block model."""
    spec = {**SPEC, "res_blocks": 4}
    g = tiny_generator(**spec)
    make_identity(g.body[0])
    make_identity(g.body[2])
    init = save_ckpt(g, spec, tmp_path / "init.ckpt")
    cfg = compose(SMOKE + tiny_data + ["compression=block_prune", "compression.block_prune.keep=2",
                                       "compression.block_prune.criterion=output_delta",
                                       f"model.init_from={init}", "model.channels=8"], tmp_path / "run")
    m = train(cfg)
    entry = m["compression"][0]
    assert entry["technique"] == "block_prune" and entry["kept_blocks"] == [1, 3]
    assert entry["removed_blocks"] == [0, 2] and entry["blocks_before"] == 4 and entry["blocks_after"] == 2
    assert entry["after"]["psnr"] == pytest.approx(entry["before"]["psnr"], abs=1e-6)
    assert entry["after"]["params"] < entry["before"]["params"]
    assert m["generator"]["res_blocks"] == 2 and m["params"] == entry["after"]["params"]
    assert m["global_step"] == 4
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["compression"][0]["kept_blocks"] == [1, 3]
    last = Path(m["last_ckpt"])
    assert read_checkpoint(last)["lsr_arch"]["res_blocks"] == 2
    rebuilt, rspec = load_generator(last)
    assert len(rebuilt.body) == 2 and rspec["res_blocks"] == 2
    # fine-tuning moved the weights away from the pruned start
    assert not torch.allclose(rebuilt.body[0].conv1.weight, g.body[1].conv1.weight)
