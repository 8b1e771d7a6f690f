"""Channel sparsity on every layer kind (issue 18, items 1-3): gates survive Lightning's SyncBatchNorm conversion,
MACs of transposed convolutions are counted as PyTorch counts them, growing_reg penalises the filters it removes."""

from __future__ import annotations

import copy
import math

import hydra
import pytest
import torch
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from lightning.pytorch.strategies import DDPStrategy
from torch import nn

from lightning_sr.compression.channel_sparsity import ChannelSparsity
from lightning_sr.errors import ConfigError
from lightning_sr.networks import build_generator
from lightning_sr.networks.gates import GATE, attach_gate, gated_modules
from lightning_sr.run import build_callbacks, build_module, train
from lightning_sr.strategies import GateKeepingSyncBatchNorm
from lightning_sr.transforms.channels import (
    MacCounter,
    find_groups,
    fold_all_gates,
    macs_small,
    remove_channels,
)
from tests.compression_helpers import SPEC, randomize, save_ckpt, tiny_generator
from tests.conftest import SMOKE, compose

FRNET = {"arch": "frnet", "res_blocks": 2, "channels": 8, "scale": 4}


def gated(gen: nn.Module) -> list:
    """Gates with distinct values on every group of ``gen`` (as a run in progress has them)."""
    groups = find_groups(gen, None)
    torch.manual_seed(1)
    for g in groups:
        g.gate = nn.Parameter(torch.rand(g.channels) + 0.25)
        for layer, rep in g.writers:
            attach_gate(layer, g.gate, rep)
    return groups


# ----- 1. gates through sync_batchnorm ----------------------------------------------------------------------------
def test_the_plain_conversion_drops_gates_and_ours_keeps_them_with_the_same_output_and_folding():
    gen = tiny_generator(res_blocks=2, channels=8, norm="batch")
    gated(gen)
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        ref = gen(x)
    gates = {n: getattr(m, GATE) for n, m in gated_modules(gen)}
    on_bn = {n for n in gates if isinstance(gen.get_submodule(n), nn.BatchNorm2d)}
    assert on_bn
    # what Lightning's sync_batchnorm does: the BatchNorms are replaced and their gates are gone
    assert not on_bn & {n for n, _ in gated_modules(TorchSyncBatchNorm().apply(copy.deepcopy(gen)))}
    synced = GateKeepingSyncBatchNorm().apply(gen)
    assert {n: getattr(m, GATE) for n, m in gated_modules(synced)} == gates  # the same parameter objects
    assert all(isinstance(synced.get_submodule(n), nn.SyncBatchNorm) for n in on_bn)
    with torch.no_grad():
        assert torch.equal(synced(x), ref)  # eval: no process group needed, the forward is unchanged
        fold_all_gates(synced)
        assert not gated_modules(synced) and float((synced(x) - ref).abs().max()) < 1e-5  # folding exact
    fresh = tiny_generator(res_blocks=2, channels=8, norm="batch")  # teardown (the revert) keeps them too
    gated(fresh)
    kept = {n: getattr(m, GATE) for n, m in gated_modules(fresh)}
    reverted = GateKeepingSyncBatchNorm().revert(GateKeepingSyncBatchNorm().apply(fresh))
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in reverted.modules())
    assert {n: getattr(m, GATE) for n, m in gated_modules(reverted)} == kept


def test_the_callback_under_a_sync_batchnorm_ddp_trainer_follows_the_converted_layers(tmp_path):
    """Lightning's order, with the trainer train.py builds for trainer=ddp (sync_batchnorm=true): the callbacks'
    setup, then ``strategy._layer_sync.apply(model)`` (DDPStrategy.setup), then on_fit_start. (Wrapping SyncBatchNorm
    in DDP needs a GPU, so the run stops there on a CPU.)"""
    cfg = compose(SMOKE + ["model=srgan", "model.res_blocks=2", "model.discriminator.channels=8", "data=embedded",
                           "compression=channel_sparsity", "compression.channel_sparsity.evaluate=false",
                           "compression.channel_sparsity.target_macs=0.5",
                           "trainer=ddp_cpu", "trainer.devices=1", "trainer.sync_batchnorm=true"], tmp_path)
    module = build_module(cfg)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=False,
                                      default_root_dir=str(tmp_path))
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.strategy._layer_sync is not None
    sp = next(c for c in trainer.callbacks if isinstance(c, ChannelSparsity))
    sp.setup(trainer, module, "fit")
    module = trainer.strategy._layer_sync.apply(module)  # exactly what DDPStrategy.setup does next
    sp.on_fit_start(trainer, module)
    gen = module.generator
    on_sync = [n for n, m in gated_modules(gen) if isinstance(m, nn.SyncBatchNorm)]
    bn_writers = {n for g in sp.groups for n in g.writer_names if isinstance(gen.get_submodule(n), nn.SyncBatchNorm)}
    assert on_sync and set(on_sync) == bn_writers
    in_model = {id(m) for m in gen.modules()}
    assert all(id(w) in in_model for g in sp.groups for w, _ in g.writers)  # the callback follows the new layers
    with torch.no_grad():  # the proximal step shrinks the gates the model uses; removal then halves the MACs
        for g in sp.groups:
            g.gate.mul_(torch.linspace(0.1, 1.0, g.channels))
    dense = macs_small(gen)
    remove_channels(gen, sp.groups, sp.removal_now(gen))
    assert not gated_modules(gen) and macs_small(gen) <= 0.5 * dense * 1.05


def test_a_layer_sync_that_drops_gates_is_one_line(tmp_path):
    cfg = compose(SMOKE + ["model=srgan", "model.res_blocks=1", "model.discriminator.channels=8", "data=embedded",
                           "compression=channel_sparsity", "compression.channel_sparsity.evaluate=false",
                           "trainer=ddp_cpu", "trainer.devices=1", "trainer.sync_batchnorm=true"], tmp_path)
    module = build_module(cfg)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=False,
                                      default_root_dir=str(tmp_path))
    sp = next(c for c in trainer.callbacks if isinstance(c, ChannelSparsity))
    sp.setup(trainer, module, "fit")
    module = TorchSyncBatchNorm().apply(module)  # a strategy with Lightning's plain conversion
    with pytest.raises(ConfigError, match=r"channel gate of generator\.body\.0\.norm[12] was lost .*GateKeepingSync"):
        sp.on_fit_start(trainer, module)


# ----- 2. MACs of transposed convolutions -------------------------------------------------------------------------
def test_mac_counter_of_the_video_generator_equals_pytorch_and_a_physical_pruning():
    gen = randomize(build_generator(FRNET)).eval()
    groups = find_groups(gen, None)
    assert any(isinstance(w, nn.ConvTranspose2d) for g in groups for w, _ in g.filters)
    counter = MacCounter(gen, groups)
    assert 0 <= counter.rest < 0.1 * sum(counter.conv_macs.values())  # the bicubic skip and the warp
    assert counter.macs({}) == macs_small(gen)
    removal = {g.name: list(range(0, g.channels - 1, 2)) for g in groups}
    predicted = counter.macs(removal)
    remove_channels(gen, groups, removal)
    assert predicted == macs_small(gen)


# ----- 3. growing_reg on transposed convolutions ------------------------------------------------------------------
def test_growing_reg_penalises_exactly_the_filters_that_are_removed_on_the_video_generator():
    gen = randomize(build_generator(FRNET)).eval()
    cb = ChannelSparsity(method="growing_reg", target_macs=0.6, threshold=None)
    cb.groups = find_groups(gen, None)
    cb._dense_macs = macs_small(gen)
    cb._choose_for_growing_reg(gen)
    assert any(g.chosen for g in cb.groups for m, _ in g.filters if isinstance(m, nn.ConvTranspose2d))
    cb.reg = 1.0
    gen.zero_grad()
    cb.loss_terms(None, None)["sparsity/growing_reg"].backward()
    convs = {m for g in cb.groups for m, _ in g.filters}
    out_dim = {m: 1 if isinstance(m, nn.ConvTranspose2d) else 0 for m in convs}
    zeros, slice_size, outs = {}, {}, {}
    with torch.no_grad():  # weights: 1 where the penalty does not reach, 0 where it does
        for m in convs:
            m.weight.copy_((m.weight.grad == 0).float())
            zeros[m] = int((m.weight == 0).sum())
            slice_size[m] = m.weight.numel() // m.weight.shape[out_dim[m]]
            outs[m] = m.weight.shape[out_dim[m]]
    assert sum(zeros.values()) > 0
    remove_channels(gen, cb.groups, {g.name: g.chosen for g in cb.groups})
    for m in convs:  # every penalised slice was removed, and only whole output filters were penalised
        assert bool((m.weight != 0).all()), type(m).__name__
        assert zeros[m] == (outs[m] - m.weight.shape[out_dim[m]]) * slice_size[m], type(m).__name__


# ----- 10. the paper's proximal step -----------------------------------------------------------------------------
def test_gate_lr_schedules():
    cb = ChannelSparsity()
    assert (cb.gate_optimizer, cb.gate_lr, cb.gate_momentum, cb.gate_schedule) == ("sgd", 0.1, 0.5, "cosine")
    assert [round(cb.current_gate_lr(k, 10), 6) for k in (0, 5, 10, 12)] == [0.1, 0.05, 0.0, 0.0]
    assert ChannelSparsity(gate_optimizer="adam").gate_lr == 0.01
    assert ChannelSparsity(gate_schedule="constant").current_gate_lr(9, 10) == 0.1
    # rho x the summed learning rates: what the L1 shrink alone can do over the phase
    assert cb.total_shrink(10) == pytest.approx(0.01 * sum(0.1 * 0.5 * (1 + math.cos(math.pi * k / 10))
                                                           for k in range(10)))


def test_the_gates_take_gan_slimmings_proximal_sgd_step(tmp_path):
    """Every batch: SGD with momentum 0.5 at the cosine-annealed lr on the gates' gradient, then the soft threshold
    rho x that lr -- recomputed here from the recorded gradients, independently of the callback."""
    from tests.helpers import GateRecorder

    GateRecorder.records = []
    rho, steps = 0.5, 5
    spec = {**SPEC, "res_blocks": 2}  # random weights everywhere: the gates get real gradients from step 1 on
    start = save_ckpt(tiny_generator(**spec), spec, tmp_path / "start.ckpt")
    train(compose(SMOKE + ["model.res_blocks=2", "trainer.max_steps=5", "compression=channel_sparsity",
                           f"model.init_from={start}",
                           f"compression.channel_sparsity.rho={rho}", "compression.channel_sparsity.evaluate=false",
                           "compression.channel_sparsity.prune_at_step=5", "cost.latency=false",
                           "+callbacks.gates._target_=tests.helpers.GateRecorder"], tmp_path))
    recs = GateRecorder.records
    assert [r["step"] for r in recs] == list(range(1, steps + 1))
    cb = ChannelSparsity(rho=rho)
    bufs = None
    for k in range(steps - 1):  # the gates at batch k+1's end follow from batch k's gates and gradient
        lr = cb.current_gate_lr(k, steps)
        grads = [gr for _, gr in recs[k]["gates"]]
        bufs = grads if bufs is None else [0.5 * b + gr for b, gr in zip(bufs, grads, strict=True)]
        for (g, _), b, (g_next, _) in zip(recs[k]["gates"], bufs, recs[k + 1]["gates"], strict=True):
            want = g - lr * b
            want = torch.sign(want) * torch.clamp(want.abs() - rho * lr, min=0)
            assert torch.allclose(g_next, want, atol=1e-6), (k, float((g_next - want).abs().max()))
    assert all(float(gr.abs().max()) > 1e-4 for r in recs for _, gr in r["gates"])  # the gradients are real


# ----- 12. a smoke run of GAN Slimming slims, and says how far it is ---------------------------------------------
def test_a_threshold_no_gate_can_reach_is_warned_before_training(tmp_path, caplog):
    cfg = compose(SMOKE + ["compression=channel_sparsity", "compression.channel_sparsity.evaluate=false"], tmp_path)
    module = build_module(cfg)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=False,
                                      default_root_dir=str(tmp_path))
    sp = next(c for c in trainer.callbacks if isinstance(c, ChannelSparsity))
    with caplog.at_level("WARNING"):
        sp.setup(trainer, module, "fit")
    # 4 steps: rho 0.01 x 0.1 x (1 + 0.854 + 0.5 + 0.146) = 0.0025
    assert "over the 4 gating steps shrinks a gate by 0.0025 in all, less than the 0.95 from 1 to threshold=0.05" \
        in caplog.text
    caplog.clear()
    sp = ChannelSparsity(rho=10.0)
    with caplog.at_level("WARNING"):
        sp.setup(trainer, build_module(cfg), "fit")
    assert "may remove no channel" not in caplog.text
