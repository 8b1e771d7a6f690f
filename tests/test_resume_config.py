"""Resuming the right experiment, exactly: the stored config is compared, SRGAN's data stream and LR schedule
count batches, a crashed run replays bit for bit, its W&B run continues, and a pruned run keeps its structure
and its compression record."""

from __future__ import annotations

import json

import pytest

from lightning_sr.checkpoint import generator_state, read_checkpoint
from lightning_sr.errors import ConfigError
from lightning_sr.run import train
from tests.compression_helpers import SPEC, save_ckpt, tiny_generator
from tests.conftest import SMOKE, compose
from tests.wandb_store import offline_runs

BASE = SMOKE + ["cost.latency=false", "callbacks.model_summary=null", "callbacks.last_checkpoint.every_n_steps=2"]
SRGAN = ["model=srgan", "model.perceptual.pretrained=false", "model.discriminator.channels=8",
         "model.scheduler.name=cosine", "model.scheduler.eta_min=1e-6"]


def _crash_then_resume(over: list[str], run_dir, crash_step: int) -> dict:
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose(over + ["+callbacks.crash._target_=tests.helpers.CrashAt",
                              f"+callbacks.crash.step={crash_step}"], run_dir))
    assert not (run_dir / "metrics.json").exists() or json.loads((run_dir / "metrics.json").read_text())[
        "status"] != "finished"
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == crash_step
    return train(compose(over, run_dir))  # the same command again


def test_resume_refuses_a_checkpoint_of_another_experiment(tmp_path):
    run = tmp_path / "run"
    train(compose(BASE + ["trainer.max_steps=2"], run))
    with pytest.raises(ConfigError) as e:
        train(compose(BASE + ["trainer.max_steps=4", "model.optim.lr=1e-3"], run))
    msg = str(e.value)
    assert "model.optim.lr: 0.0002 -> 0.001" in msg and "resume=false" in msg and "hydra.run.dir" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match="model.res_blocks: 1 -> 2"):  # a new architecture: one line, no crash
        train(compose(BASE + ["trainer.max_steps=4", "model.res_blocks=2"], run))
    # more steps is the same experiment: it continues; resume=false starts over
    more = train(compose(BASE + ["trainer.max_steps=4"], run))
    assert more["resumed_from"] and more["global_step"] == 4
    fresh = train(compose(BASE + ["trainer.max_steps=4", "model.optim.lr=1e-3", "resume=false"], run))
    assert fresh["resumed_from"] is None and fresh["global_step"] == 4


def test_srgan_steps_count_batches_and_the_schedule_ends_at_max_steps(tmp_path):
    m = train(compose(BASE + SRGAN + ["trainer.max_steps=8"], tmp_path))
    assert m["global_step"] == 8 and m["batches"] == 4  # two optimiser steps per batch
    ckpt = read_checkpoint(m["last_ckpt"])
    for sched in ckpt["lr_schedulers"]:
        assert sched["T_max"] == 4 and sched["last_epoch"] == 4
        assert sched["_last_lr"][0] == pytest.approx(1e-6)  # the cosine reached eta_min exactly at max_steps


def test_srgan_crash_and_resume_replays_exactly(tmp_path):
    over = BASE + SRGAN + ["trainer.max_steps=8"]
    ref = train(compose(over, tmp_path / "ref"))
    got = _crash_then_resume(over, tmp_path / "crashed", crash_step=4)
    assert got["resumed_from"] and got["global_step"] == ref["global_step"] == 8
    a = generator_state(read_checkpoint(ref["last_ckpt"]))
    b = generator_state(read_checkpoint(got["last_ckpt"]))
    assert max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()) < 1e-6
    assert got["psnr"] == pytest.approx(ref["psnr"], abs=1e-6)


def test_a_resumed_run_continues_its_wandb_run(tmp_path):
    run = tmp_path / "run"
    _crash_then_resume(BASE + ["logger=wandb", "trainer.max_steps=4"], run, crash_step=2)
    first, second = offline_runs(run)
    assert first.id == second.id == (run / "wandb_run_id.txt").read_text().strip()
    steps = lambda r: [h["trainer/global_step"] for h in r.history if "trainer/global_step" in h]  # noqa: E731
    assert steps(first) and steps(second) and min(steps(second)) >= 2 >= max(steps(first)) - 1
    assert second.summary["status"] == "finished"


def test_a_resumed_pruned_run_rebuilds_its_structure_and_keeps_its_record(tmp_path, monkeypatch):
    spec = {**SPEC, "res_blocks": 3}
    dense = save_ckpt(tiny_generator(**spec), spec, tmp_path / "dense.ckpt")
    over = BASE + ["compression=[block_prune,channel_prune]", "compression.block_prune.keep=2",
                   "compression.channel_prune.importance=taylor", f"model.init_from={dense}", "trainer.max_steps=4"]
    ref = train(compose(over, tmp_path / "ref"))
    import lightning_sr.compression.base as common

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose(over + ["+callbacks.crash._target_=tests.helpers.CrashAt", "+callbacks.crash.step=2"],
                      tmp_path / "run"))

    def no_remeasure(*a, **k):
        raise AssertionError("the resumed run pruned and measured again")

    monkeypatch.setattr(common.StructuralCompression, "apply", no_remeasure)
    monkeypatch.setattr(common, "evaluate_psnr", no_remeasure)
    got = train(compose(over, tmp_path / "run"))
    assert got["resumed_from"] and got["generator"] == ref["generator"] and got["params"] == ref["params"]
    assert [e["technique"] for e in got["compression"]] == ["block_prune", "channel_prune"]
    for a, b in zip(got["compression"], ref["compression"], strict=True):
        assert a["before"] == b["before"] and a["after"] == b["after"]
    mine, theirs = (generator_state(read_checkpoint(m["last_ckpt"])) for m in (got, ref))
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in theirs.items()}
    # and it trained on to the uninterrupted run's weights and PSNR
    assert max(float((mine[k] - theirs[k]).abs().max()) for k in mine) < 1e-6
    assert got["psnr"] == pytest.approx(ref["psnr"], abs=1e-6)
