"""The `compression` config group: several techniques composed on one command line, in that order, through
real Hydra composition and a real Trainer; every bad input is a one-line error before training starts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from lightning_sr.checkpoint import ARCH_KEY, generator_state, load_generator, read_checkpoint
from lightning_sr.compression.block_pruning import BlockPruning
from lightning_sr.compression.channel_pruning import ChannelPruning
from lightning_sr.errors import ConfigError, LightningSRError, WeightsError
from lightning_sr.run import build_callbacks, train
from tests.compression_helpers import SPEC, save_ckpt, tiny_generator
from tests.conftest import SMOKE, compose, run_task_in_process

pytestmark = pytest.mark.usefixtures("one_thread")


def compression_callbacks(cfg):
    return [cb for cb in build_callbacks(cfg) if isinstance(cb, (BlockPruning, ChannelPruning))]


# ----- composition ---------------------------------------------------------------------------------------------
def test_default_is_no_compression(tmp_path):
    cfg = compose(SMOKE, tmp_path)
    assert dict(cfg.compression) == {} and compression_callbacks(cfg) == []


@pytest.mark.parametrize("order", [["block_prune", "channel_prune"], ["channel_prune", "block_prune"]])
def test_a_list_selection_composes_in_command_line_order(order, tmp_path):
    cfg = compose(SMOKE + [f"compression=[{','.join(order)}]", "compression.block_prune.keep=3",
                           "compression.channel_prune.ratio=0.25"], tmp_path)
    assert list(cfg.compression) == order
    cbs = compression_callbacks(cfg)
    assert [cb.name for cb in cbs] == order
    assert next(cb for cb in cbs if cb.name == "block_prune").keep == 3
    assert next(cb for cb in cbs if cb.name == "channel_prune").ratio == 0.25
    # compression callbacks come after the `callbacks` group
    assert [type(cb) for cb in build_callbacks(cfg)[-2:]] == [type(cb) for cb in cbs]


def test_composed_prune_then_fine_tune(tiny_data, dense_ckpt, tmp_path):
    run = tmp_path / "run"
    cfg = compose(SMOKE + tiny_data + ["compression=[block_prune,channel_prune]", "compression.block_prune.keep=2",
                                       "compression.block_prune.criterion=l1", "compression.channel_prune.ratio=0.5",
                                       "compression.channel_prune.importance=taylor", f"model.init_from={dense_ckpt}"],
                  run)
    m = train(cfg)
    bp, cp = m["compression"]
    assert (bp["technique"], cp["technique"]) == ("block_prune", "channel_prune")
    # they act in order: channel pruning starts from the block-pruned model
    assert bp["blocks_before"] == 4 and bp["blocks_after"] == 2
    assert cp["before"]["params"] == bp["after"]["params"] and cp["before"]["macs"] == bp["after"]["macs"]
    assert cp["before"]["psnr"] == pytest.approx(bp["after"]["psnr"], abs=1e-9)
    assert cp["pruned_out_channels"] == {"body.0.conv1": [8, 4], "body.1.conv1": [8, 4],
                                         "upsampler.0.0": [32, 16], "upsampler.1.0": [32, 16]}
    assert cp["after"]["params"] < cp["before"]["params"] < bp["before"]["params"]
    assert m["params"] == cp["after"]["params"] and m["generator"]["res_blocks"] == 2
    assert m["global_step"] == 4 and "psnr" in m
    assert json.loads((run / "metrics.json").read_text())["compression"][1]["ratio"] == 0.5
    # the before/after numbers reached the logger
    rows = list(csv.DictReader(open(next(run.glob("csv/*/metrics.csv")))))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {"compression/block_prune/psnr_before", "compression/channel_prune/psnr_after",
            "compression/channel_prune/params_after", "compression/block_prune/folder/psnr_before"} <= logged
    # the optimiser was built after pruning: Adam's moments have the pruned shapes
    ckpt = torch.load(m["last_ckpt"], map_location="cpu", weights_only=True)
    gen = generator_state(ckpt)
    moments = [s["exp_avg"].shape for _, s in sorted(ckpt["optimizer_states"][0]["state"].items())]
    assert moments == [v.shape for k, v in gen.items() if not k.endswith(("running_mean", "running_var",
                                                                             "num_batches_tracked"))]
    assert gen["body.0.conv1.weight"].shape == (4, 8, 3, 3) and gen["upsampler.0.0.weight"].shape == (16, 8, 3, 3)
    assert ckpt[ARCH_KEY]["res_blocks"] == 2


def test_a_compressed_run_resumes(tiny_data, tmp_path):
    """Re-running the same command continues from last.ckpt: the compressed structure must fit the checkpoint."""
    over = SMOKE + tiny_data + ["model.res_blocks=2", "compression=[block_prune,channel_prune]",
                                "compression.block_prune.keep=1", "compression.channel_prune.global_pruning=true",
                                "compression.channel_prune.importance=taylor"]
    first = train(compose(over + ["trainer.max_steps=2"], tmp_path))
    assert first["global_step"] == 2
    a = generator_state(read_checkpoint(first["last_ckpt"]))
    second = train(compose(over + ["trainer.max_steps=4"], tmp_path))
    assert second["global_step"] == 4 and second["last_ckpt"] == first["last_ckpt"]
    assert second["params"] == first["params"] and second["generator"]["res_blocks"] == 1
    b = generator_state(read_checkpoint(second["last_ckpt"]))
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not torch.equal(a["body.0.conv1.weight"], b["body.0.conv1.weight"])  # training went on


def test_resume_adapts_to_the_checkpoint_shapes(tiny_data, tmp_path):
    """When re-pruning would give other per-layer widths (here: another ratio), the checkpoint's shapes win."""
    from lightning_sr.config import build_module

    cfg = compose(SMOKE + tiny_data + ["model.res_blocks=2"], tmp_path)
    a, b = build_module(cfg), build_module(cfg)
    from lightning_sr.compression.base import adapt_generator_on_load
    from lightning_sr.transforms.channels import prune_channels

    prune_channels(a.generator, 0.5)
    prune_channels(b.generator, 0.25)
    adapt_generator_on_load(b)
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(a.generator.eval()(x), b.generator.eval()(x))


# ----- bad inputs: one line, before any training step ----------------------------------------------------------------
def _foreign_files(tmp_path: Path) -> dict[str, Path]:
    x2 = {**SPEC, "scale": 2}
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    plain = tmp_path / "plain.pth"
    torch.save({"conv.weight": torch.zeros(1)}, plain)
    bicubic = tmp_path / "bicubic.ckpt"
    torch.save({"state_dict": {}, ARCH_KEY: {"arch": "bicubic", "scale": 4}}, bicubic)
    return {"x2": save_ckpt(tiny_generator(**x2), x2, tmp_path / "x2.ckpt"), "junk": junk, "plain": plain,
            "bicubic": bicubic, "missing": tmp_path / "nope.ckpt"}


BAD = {
    "keep_negative": (["compression=block_prune", "compression.block_prune.keep=-1"], ConfigError,
                      "compression.block_prune.keep=-1 is impossible"),
    "keep_too_many": (["compression=block_prune", "compression.block_prune.keep=5", "model.res_blocks=3"],
                      ConfigError, "keep=5 is more than the model's 3 residual blocks; use a value between 0 and 3"),
    "keep_no_blocks": (["compression=block_prune", "compression.block_prune.keep=0", "model.res_blocks=0"],
                       ConfigError, "no residual blocks to prune"),
    "ratio_one": (["compression=channel_prune", "compression.channel_prune.ratio=1.0"], ConfigError,
                  "compression.channel_prune.ratio=1.0 is impossible; use the fraction"),
    "ratio_negative": (["compression=channel_prune", "compression.channel_prune.ratio=-0.5"], ConfigError,
                       "ratio=-0.5"),
    "nothing_prunable": (["compression=channel_prune", "compression.channel_prune.upsampler=ignore",
                          "model.res_blocks=0"], ConfigError, "nothing to prune in SRResNet with res_blocks=0"),
    "protect_unknown": (["compression=channel_prune", "compression.channel_prune.protect=[head,neck]"], ConfigError,
                        "protect names 'neck'"),
    "init_missing": (["model.init_from={missing}"], WeightsError, "nope.ckpt does not exist"),
    "init_scale": (["model.init_from={x2}"], ConfigError, "is a x2 model but scale=4; set scale=2"),
    "init_junk": (["model.init_from={junk}"], WeightsError, "cannot load model.init_from"),
    "init_not_lsr": (["model.init_from={plain}"], WeightsError, "is not a lightning-sr checkpoint"),
    "init_other_arch": (["model.init_from={bicubic}"], ConfigError, "holds a 'bicubic' generator"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_line_before_training(case, tiny_data, tmp_path):
    overrides, exc, message = BAD[case]
    files = _foreign_files(tmp_path)
    overrides = [o.format(**files) for o in overrides]
    run = tmp_path / "run"
    with pytest.raises(exc) as e:
        train(compose(SMOKE + tiny_data + overrides, run))
    assert isinstance(e.value, LightningSRError) and message in str(e.value) and "\n" not in str(e.value)
    assert not (run / "checkpoints").exists()  # nothing was trained


def test_entry_point_prints_one_line_and_exits_2(tmp_path, capsys):
    code, err = run_task_in_process(SMOKE + ["compression=channel_prune", "compression.channel_prune.ratio=1.5"],
                                    tmp_path, capsys)
    assert code == 2 and [ln for ln in err if ln.startswith("error:")] == [
        "error: compression.channel_prune.ratio=1.5 is impossible; use the fraction of channels to remove, 0 <= ratio < 1 "
        "(e.g. 0.5)"]
    assert not any("Traceback" in ln for ln in err)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def test_init_from_a_pruned_checkpoint_rebuilds_it(tiny_data, dense_ckpt, tmp_path):
    from lightning_sr.config import build_module
    from lightning_sr.transforms.channels import prune_channels

    spec = {**SPEC, "res_blocks": 4}
    g, _ = load_generator(dense_ckpt)
    prune_channels(g, 0.5, protect=["tail"])
    pruned = save_ckpt(g, spec, tmp_path / "pruned.ckpt")
    module = build_module(compose(SMOKE + tiny_data + [f"model.init_from={pruned}"], tmp_path))  # res_blocks=1 in SMOKE
    assert len(module.generator.body) == 4 and module.generator.head[0].out_channels == 4
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(module.generator.eval()(x), g.eval()(x))


def test_resume_through_trainer_ckpt_path_takes_the_structure_from_the_checkpoint(tiny_data, tmp_path):
    """With ``trainer.ckpt_path`` set, setup rebuilds the pruned structure from the checkpoint and skips pruning
    (here the callback would prune differently: ratio 0.25 instead of the checkpoint's 0.5)."""
    import lightning as L

    from lightning_sr.config import build_module
    from lightning_sr.data import SRDataModule

    over = SMOKE + tiny_data + ["model.res_blocks=2", "compression=channel_prune"]
    first = train(compose(over, tmp_path / "a"))
    cfg = compose(over, tmp_path / "b")
    dm = SRDataModule(cfg.data, 4)
    module = build_module(cfg)
    cb = ChannelPruning(ratio=0.25)
    trainer = L.Trainer(accelerator="cpu", max_steps=5, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
                        default_root_dir=str(tmp_path / "b"), num_sanity_val_steps=0, limit_val_batches=0)
    trainer.ckpt_path = first["last_ckpt"]
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 5
    assert module.generator.body[0].conv1.out_channels == 4  # the checkpoint's 0.5, not 0.25
    assert cb.summary(trainer, module) == {"compression": [first["compression"][0]]}  # its record, once
    assert cb.applied


def test_run_summarize_gathers_every_callbacks_summary_in_callback_order(tmp_path):
    """metrics.json's compression list, teacher and int8 come from the callbacks' declared ``summary()``: lists
    concatenated in the callbacks' order (a callback that has not acted adds nothing), other keys from one callback
    only; callbacks without the hook are skipped."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelSummary

    from lightning_sr.compression.base import CompressionCallback
    from lightning_sr.run import callback_summaries

    class Technique(CompressionCallback):
        def __init__(self, name: str, extra: dict | None = None):
            self.name, self.extra = name, extra or {}
            super().__init__()

        def summary(self, trainer, pl_module):
            return {**super().summary(trainer, pl_module), **self.extra}

    first, idle, last = Technique("first", {"teacher": {"params": 1}}), Technique("idle"), Technique("last")
    last.log_entry({"technique": "last"})
    first.log_entry({"technique": "first"})
    trainer = L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
                        callbacks=[first, ModelSummary(), idle, last])
    assert callback_summaries(trainer, None) == {"compression": [{"technique": "first"}, {"technique": "last"}],
                                                 "teacher": {"params": 1}}
    trainer = L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
                        callbacks=[first, Technique("again", {"teacher": {"params": 2}})])
    with pytest.raises(RuntimeError, match="reports 'teacher' for metrics.json, which another callback reports"):
        callback_summaries(trainer, None)


@pytest.mark.parametrize("compression", [
    ["compression=block_prune", "compression.block_prune.keep=2"],
    ["compression=channel_prune"],
    ["compression=[channel_sparsity,distill,qat]", "compression.channel_sparsity.prune_at_step=2",
     "compression.distill.features=[{student: body.1, teacher: body.1}]"],
    ["compression=ptq"],
], ids=["block_prune", "channel_prune", "sparsity+distill+qat", "ptq"])
def test_preflight_is_pure(compression, dense_ckpt, tiny_data, tmp_path):
    """run.train calls every callback's preflight before trainer.fit, and setup runs the same checks again: a
    preflight must not draw from the global RNG (the run's random stream would shift) nor change the model."""
    import hydra
    import lightning as L

    from lightning_sr.compression.base import preflight
    from lightning_sr.config import build_module

    extra = [f"compression.distill.teacher={dense_ckpt}"] if any("distill" in o for o in compression) else []
    cfg = compose(SMOKE + tiny_data + [f"model.init_from={dense_ckpt}", *compression, *extra], tmp_path)
    module = build_module(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=False,
                                                 default_root_dir=str(tmp_path))  # as run.train builds it
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rng = torch.get_rng_state()
    preflight(trainer, module)
    assert torch.equal(torch.get_rng_state(), rng), "preflight drew from the global RNG"
    after = module.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
