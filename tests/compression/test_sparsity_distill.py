"""Channel sparsity (learnable gates, trunk included, physical removal) and knowledge distillation, composed as
callbacks on every LightningModule (issue 11)."""

from __future__ import annotations

import csv
import json

import lightning as L
import pytest
import torch

from lightning_sr.checkpoint import load_generator, read_checkpoint
from lightning_sr.compression.distill import affinity
from lightning_sr.errors import ConfigError, WeightsError
from lightning_sr.networks import build_generator
from lightning_sr.networks.gates import attach_gate, gated_modules
from lightning_sr.run import build_callbacks, train
from lightning_sr.transforms.channels import find_groups, fold_all_gates, remove_channels
from tests.compression_helpers import SPEC, save_ckpt, tiny_generator
from tests.conftest import SMOKE, compose, run_cli

BASE = [o for o in SMOKE if not o.startswith(("model.res_blocks", "model.channels"))] + [
    "cost.latency=false", "callbacks.model_summary=null"]


def _independent_teacher_figures(ckpt, out) -> tuple[int, float]:
    """The teacher's parameter count and its PSNR from evaluate.py on the same validation photographs."""
    from lightning_sr.cost import count_params
    from lightning_sr.run import evaluate

    g, _ = load_generator(ckpt)
    return count_params(g), evaluate(compose([f"ckpt_path={ckpt}", "cost.latency=false"], out, "evaluate"))["psnr"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A dense student start (2 blocks, 16 channels) and a bigger teacher (4 blocks), random non-zero weights."""
    d = tmp_path_factory.mktemp("kd")
    s = {**SPEC, "res_blocks": 2, "channels": 16}
    t = {**SPEC, "res_blocks": 4, "channels": 16}
    return save_ckpt(tiny_generator(**s), s, d / "student.ckpt"), save_ckpt(tiny_generator(seed=1, **t), t,
                                                                             d / "teacher.ckpt")


# ----- gates ----------------------------------------------------------------------------------------------------
def test_groups_share_one_gate_across_the_trunk_and_sit_after_batchnorm():
    g = tiny_generator(res_blocks=2, channels=8)
    groups = {grp.name: grp for grp in find_groups(g, None)}
    trunk = next(grp for grp in groups.values() if any(w is g.head[0] for w, _ in grp.writers))
    writers = {id(w) for w, _ in trunk.writers}
    assert {id(g.head[0]), id(g.body[0].conv2), id(g.body[1].conv2), id(g.body_tail[0])} <= writers
    assert any(grp.stage is not None for grp in groups.values())  # the PixelShuffle stages too
    bn = tiny_generator(res_blocks=1, channels=8, norm="batch")
    inner = next(grp for grp in find_groups(bn, None) if any(w is bn.body[0].norm1 for w, _ in grp.writers))
    assert inner.writers == [(bn.body[0].norm1, 1)]  # after the BatchNorm, not the convolution


def test_folding_and_removing_zero_gated_channels_keep_the_output():
    g = tiny_generator(res_blocks=2, channels=8)
    groups = find_groups(g, None)
    torch.manual_seed(0)
    removal = {}
    for grp in groups:
        grp.gate = torch.nn.Parameter(torch.rand(grp.channels) + 0.5)
        grp.gate.data[: grp.channels // 2] = 0.0  # proximal steps end at exact zeros
        removal[grp.name] = list(range(grp.channels // 2))
        for layer, rep in grp.writers:
            attach_gate(layer, grp.gate, rep)
    x = torch.rand(1, 3, 10, 9)
    with torch.no_grad():
        ref = g(x)
    changed = remove_channels(g, groups, removal)
    assert not gated_modules(g) and changed["head.0"] == [8, 4] and changed["upsampler.0.0"] == [32, 16]
    with torch.no_grad():
        assert float((g(x) - ref).abs().max()) < 1e-5


def test_a_checkpoint_with_gates_reloads_with_them(tmp_path):
    g = tiny_generator(res_blocks=1, channels=8)
    gate = torch.nn.Parameter(torch.rand(8))
    attach_gate(g.body[0].conv1, gate)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        ref = g(x)
    spec = {**SPEC, "res_blocks": 1}
    loaded, _ = load_generator(save_ckpt(g, spec, tmp_path / "gated.ckpt"))
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), ref)
    assert fold_all_gates(loaded) == 1
    with torch.no_grad():
        assert float((loaded(x) - ref).abs().max()) < 1e-5


# ----- end to end, every module, composed with distillation ------------------------------------------------------
@pytest.mark.parametrize("model,method,extra", [
    ("srresnet", "proximal", ["compression.channel_sparsity.prune_at_step=4",
                              "compression.distill.features=[{student: body.1, teacher: body.3}]",
                              "compression.distill.fakd=[{student: body.0, teacher: body.1}]"]),
    ("srgan", "l1", ["model.perceptual.pretrained=false", "model.discriminator.channels=8", "trainer.max_steps=8"]),
    ("multi_exit", "growing_reg", ["model.exits=[1]", "compression.channel_sparsity.reg_step=0.05",
                                   "compression.channel_sparsity.reg_interval=1"]),
])
def test_sparsity_with_distillation_on_every_module(ckpts, tmp_path, model, method, extra):
    student, teacher = ckpts
    init = [f"model.init_from={student}"] if model != "multi_exit" else ["model.res_blocks=2", "model.channels=16"]
    m = train(compose(BASE + [f"model={model}", *init, "compression=[channel_sparsity,distill]",
                              f"compression.channel_sparsity.method={method}", "compression.channel_sparsity.rho=2",
                              "compression.channel_sparsity.target_macs=0.5", f"compression.distill.teacher={teacher}",
                              "trainer.max_steps=6", *extra], tmp_path))
    sp = next(e for e in m["compression"] if e["technique"] == "channel_sparsity")
    assert sp["macs_ratio"] <= 0.5 and sp["after"]["macs"] < sp["before"]["macs"]
    assert m["cost"]["macs"] == sp["after"]["macs"] and m["params"] == sp["after"]["params"]
    params, psnr = _independent_teacher_figures(teacher, tmp_path / "teacher_eval")
    assert m["teacher"]["params"] == params and m["teacher"]["psnr"] == pytest.approx(psnr, abs=1e-6)
    g, _ = load_generator(m["last_ckpt"])  # a plain pruned model: no gates, no teacher
    assert not gated_modules(g)
    sd = read_checkpoint(m["last_ckpt"])["state_dict"]
    assert not any(k.startswith("teacher") or "lsr_gate" in k for k in sd)
    rows = list(csv.DictReader(open(next(tmp_path.glob("csv/*/metrics.csv")))))
    logged = {k for r in rows for k, v in r.items() if v}
    assert "train/distill/output" in logged and "sparsity/macs_if_pruned" in logged
    if method == "proximal":
        assert sp["at_step"] == 4 and m["global_step"] == 6  # pruned mid-run, then fine-tuned
        assert {"train/distill/feature", "train/distill/fakd", "sparsity/gate_q50"} <= logged
    if method == "l1":
        assert "train/sparsity/l1" in logged
    if method == "growing_reg":
        assert "train/sparsity/growing_reg" in logged


def test_video_module_distils_and_prunes(tmp_path):
    teacher = tmp_path / "t"
    t = train(compose(BASE + ["model=frvsr", "data=embedded_video", "model.res_blocks=2", "model.channels=8",
                              "trainer.max_steps=2"], teacher))
    m = train(compose(BASE + ["model=frvsr", "data=embedded_video", "model.res_blocks=1", "model.channels=8",
                              "trainer.max_steps=2", "compression=[channel_sparsity,distill]",
                              "compression.channel_sparsity.target_macs=0.9",
                              f"compression.distill.teacher={t['last_ckpt']}"], tmp_path / "s"))
    sp = next(e for e in m["compression"] if e["technique"] == "channel_sparsity")
    assert m["teacher"]["res_blocks"] == 2 and sp["after"]["macs"] < sp["before"]["macs"]


def test_teacher_size_sweep_report(ckpts, tmp_path):
    student, teacher = ckpts
    small = save_ckpt(tiny_generator(seed=2, res_blocks=1, channels=16), {**SPEC, "res_blocks": 1, "channels": 16},
                      tmp_path / "small_teacher.ckpt")
    sweep = tmp_path / "sweep"
    run_cli("train.py", ["-m", *BASE, "model.res_blocks=1", "model.channels=8", "trainer.max_steps=2",
                         "compression=distill", f"compression.distill.teacher={teacher},{small}",
                         f"hydra.sweep.dir={sweep}"], timeout=600)
    rows = [r for r in csv.DictReader(open(sweep / "report.csv")) if r["source"] == "measured"]
    assert len(rows) == 2 and {int(r["teacher/params"]) for r in rows} == {
        json.loads((sweep / str(i) / "metrics.json").read_text())["teacher"]["params"] for i in (0, 1)}
    for r in rows:  # job 0 was taught by `teacher`, job 1 by `small`
        ckpt = {"0": teacher, "1": small}[r["job"]]
        params, psnr = _independent_teacher_figures(ckpt, tmp_path / f"eval_{r['job']}")
        assert int(r["teacher/params"]) == params and float(r["teacher/psnr"]) == pytest.approx(psnr, abs=1e-4)
    assert "teacher params" in (sweep / "report.md").read_text()


def test_fakd_affinity_is_a_normalised_gram_matrix():
    f = torch.rand(2, 5, 3, 4)
    a = affinity(f)
    assert a.shape == (2, 12, 12)
    torch.testing.assert_close(torch.diagonal(a, dim1=1, dim2=2), torch.full((2, 12), 1 / 12))
    assert torch.allclose(affinity(f * 7.0), a, atol=1e-6)  # scale-free


# ----- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override,exc,match", [
    ("compression.channel_sparsity.rho=-1", ConfigError, "rho=-1 is impossible"),
    ("compression.channel_sparsity.threshold=1.5", ConfigError, r"threshold=1.5 is impossible; use a gate value in \(0, 1\)"),
    ("compression.channel_sparsity.target_macs=1.5", ConfigError, r"target_macs=1.5 is impossible.*\(0, 1\]"),
    ("compression.channel_sparsity.method=growing_reg", ConfigError, "target_macs=None must be set"),
])
def test_sparsity_bad_input_is_one_line(override, exc, match, tmp_path):
    with pytest.raises(exc, match=match):
        build_callbacks(compose(SMOKE + ["compression=channel_sparsity", override], tmp_path))


def test_distillation_bad_input_is_one_line(ckpts, tmp_path):
    student, teacher = ckpts
    with pytest.raises(WeightsError, match="does not exist"):
        build_callbacks(compose(SMOKE + ["compression=distill", f"compression.distill.teacher={tmp_path}/no.ckpt"],
                                tmp_path))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot load"):
        build_callbacks(compose(SMOKE + ["compression=distill", f"compression.distill.teacher={tmp_path}/junk.ckpt"],
                                tmp_path))
    x2 = {**SPEC, "scale": 2}
    other = save_ckpt(build_generator(x2), x2, tmp_path / "x2.ckpt")
    with pytest.raises(ConfigError, match="is a x2 model but the student is x4"):
        train(compose(BASE + ["compression=distill", f"compression.distill.teacher={other}"], tmp_path / "a"))
    with pytest.raises(ConfigError, match=r"the teacher has no layer 'body.9'; valid names include head, body"):
        train(compose(BASE + ["compression=distill", f"compression.distill.teacher={teacher}",
                              "compression.distill.features=[{student: body.0, teacher: body.9}]"], tmp_path / "b"))


def test_mac_counter_equals_the_pruned_model():
    from lightning_sr.transforms.channels import MacCounter, macs_small

    for kw in ({"res_blocks": 2, "channels": 8}, {"res_blocks": 1, "channels": 8, "norm": "batch"}):
        g = tiny_generator(**kw)
        groups = find_groups(g, None)
        removal = {grp.name: list(range(0, grp.channels - 1, 2)) for grp in groups}
        predicted = MacCounter(g, groups).macs(removal)
        remove_channels(g, groups, removal)
        assert predicted == macs_small(g)


class LrProbe(L.Callback):
    """Records the generator's learning rate at every training batch."""

    lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        LrProbe.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_a_mid_run_removal_keeps_the_lr_schedule_where_it_was(ckpts, tmp_path):
    """Pruning at step 3 rebuilds the optimiser over the new tensors; the cosine schedule goes on (no restart)."""
    student, _ = ckpts
    LrProbe.lrs = []
    m = train(compose(BASE + [f"model.init_from={student}", "compression=channel_sparsity",
                              "compression.channel_sparsity.target_macs=0.5", "compression.channel_sparsity.prune_at_step=3",
                              "trainer.max_steps=6", "+callbacks.lr_probe._target_=tests.compression.test_sparsity_distill.LrProbe"],
                      tmp_path))
    assert m["compression"][0]["at_step"] == 3 and len(LrProbe.lrs) == 6
    lrs = LrProbe.lrs
    assert all(b < a for a, b in zip(lrs, lrs[1:], strict=False)), lrs  # strictly decreasing: never back to the top
