"""GAN Slimming (issue 13): distillation + channel sparsity (proximal) + QAT + the GAN loss in one run, composed
from the callbacks by experiment=gan_slimming, ending in a physically slimmer int8 generator; r_c and r_s."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from lightning_sr.checkpoint import load_generator
from lightning_sr.errors import ConfigError
from lightning_sr.networks import build_generator
from lightning_sr.run import build_callbacks, train
from tests.compression_helpers import SPEC, save_ckpt, tiny_generator
from tests.conftest import compose, run_task_in_process

GS = ["experiment=gan_slimming", "profile=smoke", "trainer.max_steps=6", "trainer.val_check_interval=3",
      "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null", "logger=csv", "cost.latency=false",
      "model.discriminator.channels=8", "compression.qat.compile=false"]
SRGAN_SPEC = {**SPEC, "res_blocks": 2, "channels": 8, "norm": "batch", "skip": "none"}  # SRGAN's generator


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return save_ckpt(tiny_generator(**SRGAN_SPEC), SRGAN_SPEC, tmp_path_factory.mktemp("gs") / "teacher.ckpt")


def test_gan_slimming_ends_in_a_slim_int8_generator_with_r_c_and_r_s_and_resumes_mid_qat(teacher, tmp_path):
    args = GS + [f"compression.distill.teacher={teacher}", "compression.channel_sparsity.target_macs=0.5",
                 "trainer.max_steps=12", "trainer.val_check_interval=2"]
    cfg = compose(args, tmp_path)
    assert cfg.compression.channel_sparsity.prune_at_step == 8 and cfg.compression.qat.start_step == 0  # 0.75 x 12
    for step in (4, 8, 10):  # killed while the gated network trains fake-quantized, right after the channel removal
        # (before the capture), then while the QAT graph trains
        with pytest.raises(RuntimeError, match=f"simulated crash at step {step}"):
            train(compose(args + ["+callbacks.crash._target_=tests.helpers.CrashAt", f"+callbacks.crash.step={step}"],
                          tmp_path))
    m = train(compose(args, tmp_path))  # the same command resumes: slim structure, QAT graph, then int8
    assert [e["technique"] for e in m["compression"]] == ["distill", "channel_sparsity", "qat"]  # once each
    log = {e["technique"]: e for e in m["compression"]}
    sp, q = log["channel_sparsity"], log["qat"]
    assert sp["at_step"] == 8 and sp["after"]["macs"] <= 0.5 * sp["before"]["macs"] * 1.05  # half the MACs
    # quantization-aware from step 0 (eagerly, gated), captured after the removal with the ranges learned so far
    assert q["fake_quant_from_step"] == 0 and q["captured_at_step"] == 8 and q["ranges_carried"] > 0
    assert m["int8"]["qat_steps"] == 4
    n_int8, n_convs = map(int, m["int8"]["layers"]["convs_int8"].split("/"))
    assert n_int8 == n_convs > 0  # every convolution int8
    # the student is initialised from the teacher and really slimmer: tensors shrank, the artefact is int8
    student, _ = load_generator(tmp_path / "checkpoints" / "last.ckpt")
    dense = build_generator(SRGAN_SPEC)
    assert sum(p.numel() for p in student.parameters()) < 0.6 * sum(p.numel() for p in dense.parameters())
    # the artefact: one int8 weight tensor per convolution of the slim student, no fp32 copies, and evaluate.py on
    # it gives the int8 PSNR the run recorded (compile=false in the run: evaluated uncompiled here too)
    import torch

    from lightning_sr.run import evaluate

    art = tmp_path / "checkpoints" / "int8.pt2"
    q8, q8_spec = load_generator(art)
    assert q8_spec["_int8"] and sum(b.dtype == torch.int8 for b in q8.buffers()) == n_convs
    assert not any(p.dim() == 4 for p in q8.parameters())
    ev = evaluate(compose([f"ckpt_path={art}", "int8_compile=false", "cost.latency=false"], tmp_path / "ev",
                          config_name="evaluate"))
    assert ev["psnr"] == pytest.approx(m["int8"]["psnr"], abs=1e-4) and ev["ssim"] == pytest.approx(
        m["int8"]["ssim"], abs=1e-6)
    t = m["teacher"]
    assert m["r_s"] == pytest.approx(t["macs"] / m["cost"]["macs"], rel=1e-3) and m["r_s"] > 1.8
    # r_c: weights vs weights (state-dict bytes), not the artefact file, which also holds the graph
    assert m["r_c"] == pytest.approx(t["size_mb"] / m["int8"]["weights_mb"], rel=1e-2) and m["r_c"] > m["r_s"]
    assert m["int8"]["weights_mb"] < m["int8"]["size_mb"]
    assert set(t["sets"]) == set(m["sets"]) >= {"embedded"} and "ssim" in t["sets"]["embedded"]  # teacher vs slim
    # feature distillation trained the slimming phase and stopped when QAT captured the student; output goes on
    rows = [r for f in sorted((tmp_path / "csv").glob("version_*/metrics.csv")) for r in csv.DictReader(f.open())]
    feat = {int(r["step"]): float(r["train/distill/feature"]) for r in rows if r.get("train/distill/feature")}
    out = [int(r["step"]) for r in rows if r.get("train/distill/output")]
    # logged per batch (SRGAN's step 8 is batch 4): computed in batches 0-3; Lightning's step results repeat a value
    # no longer logged within the epoch, so after the capture the feature term only repeats batch 3's value
    assert len(set(feat[b] for b in range(4))) == 4 and max(out) >= 4, (feat, out)
    assert all(v == feat[3] for b, v in feat.items() if b >= 4), feat
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["r_c"] == m["r_c"] and saved["r_s"] == m["r_s"]


# ----- bad input ------------------------------------------------------------------------------------------------
def test_negative_rho_in_a_sweep_is_one_line(teacher, tmp_path, capsys):
    code, err = run_task_in_process(GS + [f"compression.distill.teacher={teacher}",
                                          "compression.channel_sparsity.rho=-0.001"], tmp_path, capsys)
    assert code == 2 and len(err) == 1 and "rho=-0.001 is impossible" in err[0]


def test_teacher_of_another_scale_is_one_line(tmp_path):
    x2 = {**SRGAN_SPEC, "scale": 2}
    t2 = save_ckpt(build_generator(x2), x2, tmp_path / "x2.ckpt")
    with pytest.raises(ConfigError, match=r"is a x2 model but the student is x4; distil from a teacher of the same"):
        train(compose(GS + [f"compression.distill.teacher={t2}", "model.init_from=null",
                            "model.res_blocks=2", "model.channels=8"], tmp_path))


def test_qat_without_torchao_is_one_line(teacher, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao -> ImportError, as when not installed
    with pytest.raises(ConfigError, match=r"compression=qat needs torchao .*pip install 'torchao>=0.18'") as e:
        build_callbacks(compose(GS + [f"compression.distill.teacher={teacher}"], tmp_path))
    assert "\n" not in str(e.value)


def test_steps_after_the_run_are_refused(teacher, tmp_path, capsys):
    code, err = run_task_in_process(GS + [f"compression.distill.teacher={teacher}", "compression.qat.start_step=0",
                                          "compression.channel_sparsity.prune_at_step=8"], tmp_path, capsys)
    assert code == 2 and len(err) == 1 and "prune_at_step=8 is after the last step (trainer.max_steps=6)" in err[0]
    code, err = run_task_in_process(GS + [f"compression.distill.teacher={teacher}", "compression.qat.start_step=5",
                                          "compression.channel_sparsity.prune_at_step=4"], tmp_path / "b", capsys)
    assert code == 2 and len(err) == 1  # SRGAN: batches start at even steps, so step 5 is the last batch's end
    assert "start_step=5 is not before the last batch (trainer.max_steps=6, 2 optimiser step(s) per batch)" in err[0]


def test_quantization_from_step_0_needs_a_batch_after_the_removal_and_no_join_in_between(teacher, tmp_path, capsys):
    code, err = run_task_in_process(GS + [f"compression.distill.teacher={teacher}", "compression.qat.start_step=0",
                                          "compression.channel_sparsity.prune_at_step=null"], tmp_path, capsys)
    err = [ln for ln in err if ln.startswith("error:")]
    assert code == 2 and len(err) == 1
    assert "compression.qat.start_step=0 quantizes the gated network from the start and captures it after the " \
           "channel removal, but compression.channel_sparsity.prune_at_step=null removes the channels at the last " \
           "batch" in err[0]
    code, err = run_task_in_process(GS + [f"compression.distill.teacher={teacher}", "compression.qat.start_step=2",
                                          "compression.channel_sparsity.prune_at_step=4"], tmp_path / "b", capsys)
    err = [ln for ln in err if ln.startswith("error:")]
    assert code == 2 and len(err) == 1
    assert "compression.qat.start_step=2 would quantize while channel gates are still learned" in err[0]
    assert "use compression.qat.start_step=0 (fake-quantized from the start" in err[0]
