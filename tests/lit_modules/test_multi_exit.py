"""Multi-exit SRResNet (self-distillation): shapes, exit naming, bad configs, loss, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_sr.checkpoint import ARCH_KEY, load_generator, read_checkpoint
from lightning_sr.config import build_module, generator_spec, validate_config
from lightning_sr.cost import count_params
from lightning_sr.errors import ConfigError
from lightning_sr.export import export_exit
from lightning_sr.export import main as export_main
from lightning_sr.lit_modules.multi_exit import MultiExitModule, self_distillation_loss
from lightning_sr.networks import MultiExitSRResNet, SRResNet, build_generator
from tests.conftest import ROOT, SMOKE, compose

TINY = dict(res_blocks=4, channels=8, scale=4, norm="batch", act="prelu", skip="none")


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights and BN statistics, so that every layer (and every BN) matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, t in [*model.named_parameters(), *model.named_buffers()]:
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + (0.9 if t.ndim == 1 else -0.1))
    return model


def save_multi_exit_ckpt(model: MultiExitSRResNet, spec: dict, path: Path) -> Path:
    torch.save({"state_dict": {f"generator.{k}": v for k, v in model.state_dict().items()}, ARCH_KEY: spec}, path)
    return path


# ----- model -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("skip", ["none", "bicubic"])
def test_exits_shapes_names_and_forward(skip):
    m = randomize(MultiExitSRResNet(exits=[2, 1], **{**TINY, "skip": skip})).eval()
    assert m.exits == [1, 2] and m.exit_names == ["exit1", "exit2", "exit4"] and m.deepest == "exit4"
    x = torch.rand(2, 3, 6, 7)
    outs, feats = m.forward_exits(x, return_features=True)
    assert list(outs) == ["exit1", "exit2", "exit4"] and list(feats) == list(outs)
    for name in outs:
        assert outs[name].shape == (2, 3, 24, 28)
        assert feats[name].shape == (2, 8, 6, 7)
    # forward() is the deepest exit, and the exits really differ (own heads, different depths)
    assert torch.equal(m(x), outs["exit4"])
    assert not torch.allclose(outs["exit1"], outs["exit2"]) and not torch.allclose(outs["exit2"], outs["exit4"])


def test_built_from_srresnet_blocks():
    m = MultiExitSRResNet(exits=[2], **TINY)
    assert isinstance(m, SRResNet) and len(m.body) == 4
    head = m.exit_heads["exit2"]
    ref = SRResNet(**TINY)
    for part in ("body_tail", "upsampler", "tail"):
        assert type(getattr(head, part)) is type(getattr(ref, part))
        assert [p.shape for p in getattr(head, part).parameters()] == [p.shape for p in getattr(ref, part).parameters()]


def test_registry_and_config():
    cfg = compose(SMOKE + ["model=multi_exit", "model.res_blocks=4", "model.exits=[1,2]"])
    spec = generator_spec(cfg)
    assert spec == {"arch": "multi_exit", "res_blocks": 4, "exits": [1, 2], "channels": 8, "scale": 4,
                    "norm": "batch", "act": "prelu", "skip": "none", "res_scale": 1.0}
    assert isinstance(build_generator(spec), MultiExitSRResNet)
    module = build_module(cfg)
    assert isinstance(module, MultiExitModule)
    assert module.alpha == 0.1 and module.feature_weight == 0.0
    assert "alpha" not in spec and "exits" not in module.hparams  # arch keys vs module keys
    # the paper's defaults
    full = compose(["model=multi_exit"])
    assert full.model.res_blocks == 32 and list(full.model.exits) == [8] and full.model.alpha == 0.1
    assert full.model.optim.lr == 1e-4 and full.model.norm == "batch" and full.model.name == "srresnet32_exits"


# ----- bad input ----------------------------------------------------------------------------------------------
BAD = [
    (["model.exits=[0]"], "out of range"),
    (["model.exits=[-3]"], "out of range"),
    (["model.exits=[5]"], "out of range"),
    (["model.exits=[2,2]"], "repeats exit 2"),
    (["model.exits=[4]"], "last block"),
    (["model.exits=[]"], "non-empty"),
    (["model.exits=[two]"], "integers"),
    (["model.alpha=1.5"], "model.alpha=1.5"),
    (["model.alpha=-0.1"], "model.alpha=-0.1"),
    (["model.feature_weight=-1"], "model.feature_weight=-1"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[o[0] for o, _ in BAD])
def test_bad_config_is_one_line_config_error(overrides, message):
    cfg = compose(SMOKE + ["model=multi_exit", "model.res_blocks=4", "model.exits=[2]", *overrides])
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)  # before any data or training
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        build_module(cfg)


def test_bad_exits_raise_at_model_construction():
    for exits in ([0], [4], [1, 1], [9]):
        with pytest.raises(ConfigError):
            MultiExitSRResNet(exits=exits, **TINY)
    with pytest.raises(ConfigError, match="res_blocks"):  # too shallow for any early exit
        MultiExitSRResNet(exits=[1], **{**TINY, "res_blocks": 1})


# ----- loss ---------------------------------------------------------------------------------------------------
def test_loss_composition_and_teacher_is_detached():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 8, 8)
    outs = {k: torch.rand(2, 3, 8, 8, requires_grad=True) for k in ("exit1", "exit2", "exit4")}
    feats = {k: torch.rand(2, 8, 2, 2, requires_grad=True) for k in outs}
    a, fw = 0.1, 0.5
    total, parts = self_distillation_loss(outs, hr, "exit4", a, fw, feats)
    d = outs["exit4"]
    expect = {"exit4": F.l1_loss(d, hr)}
    for e in ("exit1", "exit2"):
        expect[e] = (1 - a) * F.l1_loss(outs[e], hr) + a * F.l1_loss(outs[e], d) + fw * F.mse_loss(feats[e], feats["exit4"])
    assert set(parts) == set(expect)
    for k in expect:
        torch.testing.assert_close(parts[k], expect[k])
    torch.testing.assert_close(total, sum(expect.values()))
    # the deepest output gets gradient only from its own ground-truth term: the teacher is detached
    total.backward()
    only_deep = torch.autograd.grad(F.l1_loss(d, hr), d)[0]
    torch.testing.assert_close(d.grad, only_deep)
    assert feats["exit4"].grad is None and feats["exit1"].grad is not None
    # alpha=0: plain ground-truth training of every exit; the paper's 9:1 differs from it
    t0, _ = self_distillation_loss(outs, hr, "exit4", 0.0)
    torch.testing.assert_close(t0, sum(F.l1_loss(o, hr) for o in outs.values()))
    assert not torch.allclose(t0, self_distillation_loss(outs, hr, "exit4", 0.1)[0])


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_training_step_uses_every_exit():
    cfg = compose(SMOKE + ["model=multi_exit", "model.res_blocks=4", "model.exits=[2]"])
    module = build_module(cfg)
    randomize(module.generator)
    batch = {"lr": torch.rand(2, 3, 6, 6), "hr": torch.rand(2, 3, 24, 24)}
    loss = module.training_step(batch, 0)
    outs = module.generator.forward_exits(batch["lr"])
    expect, _ = self_distillation_loss(outs, batch["hr"], "exit4", 0.1)
    torch.testing.assert_close(loss, expect)
    loss.backward()
    assert all(p.grad is not None for p in module.generator.exit_heads.parameters())
    preds = module.predict_outputs(batch["lr"])
    assert list(preds) == ["", "exit2"]


# ----- export -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exit", [1, "exit2", 4])
def test_export_equivalence_and_params(exit):
    m = randomize(MultiExitSRResNet(exits=[1, 2], **TINY)).eval()
    k = m.exit_depth(exit)
    standalone = m.export_exit(exit).eval()
    assert type(standalone) is SRResNet and len(standalone.body) == k
    reference = SRResNet(**{**TINY, "res_blocks": k})
    assert count_params(standalone) == count_params(reference)
    assert list(standalone.state_dict()) == list(reference.state_dict())
    x = torch.rand(1, 3, 7, 5)
    torch.testing.assert_close(standalone(x), m.forward_exits(x)[f"exit{k}"], rtol=0, atol=0)
    # a copy: changing the multi-exit model afterwards does not change the export
    with torch.no_grad():
        m.head[0].weight.add_(1.0)
    assert not torch.allclose(standalone(x), m.forward_exits(x)[f"exit{k}"])


def test_export_unknown_exit():
    m = MultiExitSRResNet(exits=[2], **TINY)
    for bad in (3, "exit1", "x", 0):
        with pytest.raises(ConfigError, match="exits exit2, exit4"):
            m.export_exit(bad)


def test_export_checkpoint_function_and_cli(tmp_path):
    spec = {"arch": "multi_exit", "exits": [2], **TINY}
    m = randomize(build_generator(spec)).eval()
    src = save_multi_exit_ckpt(m, spec, tmp_path / "multi.ckpt")
    out = export_exit(src, 2, tmp_path / "exit2.ckpt")
    ckpt = read_checkpoint(out)
    assert ckpt[ARCH_KEY] == {"arch": "srresnet", "res_blocks": 2, "channels": 8, "scale": 4, "norm": "batch",
                              "act": "prelu", "skip": "none", "res_scale": 1.0}
    assert all(k.startswith("generator.") for k in ckpt["state_dict"])
    g, gspec = load_generator(out, expect_arch="srresnet", expect_scale=4)  # what evaluate.py / init_from do
    x = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(g.eval()(x), m.forward_exits(x)["exit2"], rtol=0, atol=0)
    assert count_params(g) == count_params(SRResNet(**{**TINY, "res_blocks": 2}))
    # default output name
    assert export_exit(src, "exit4") == tmp_path / "multi_exit4.ckpt"
    # the CLI, as a user runs it
    p = subprocess.run([sys.executable, "-m", "lightning_sr.export", f"ckpt_path={src}", "exit=exit2",
                        f"out={tmp_path / 'cli.ckpt'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert torch.equal(read_checkpoint(tmp_path / "cli.ckpt")["state_dict"]["generator.tail.weight"],
                       ckpt["state_dict"]["generator.tail.weight"])


def test_export_cli_errors_are_one_line(tmp_path, capsys):
    spec = {"arch": "multi_exit", "exits": [2], **TINY}
    src = save_multi_exit_ckpt(build_generator(spec), spec, tmp_path / "multi.ckpt")
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {f"generator.{k}": v for k, v in SRResNet(**TINY).state_dict().items()},
                ARCH_KEY: {"arch": "srresnet", **TINY}}, plain)
    cases = [
        ([f"ckpt_path={src}", "exit=3"], "exit='3' does not exist"),
        ([f"ckpt_path={plain}", "exit=2"], "needs a multi-exit checkpoint"),
        ([f"ckpt_path={tmp_path / 'missing.ckpt'}", "exit=2"], "does not exist"),
        ([f"ckpt_path={src}"], "exit= is missing"),
        ([f"ckpt_path={src}", "exit=2", "bogus=1"], "unknown argument"),
    ]
    for argv, message in cases:
        assert export_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err


# ----- sweep configs and published numbers ----------------------------------------------------------------------
@pytest.mark.parametrize("experiment", ["self_distillation", "self_distillation_baseline",
                                        "self_distillation_teachers"])
def test_experiments_full_and_smoke(experiment):
    full = compose([f"experiment={experiment}"])
    assert full.trainer.accelerator == "gpu" and full.data.name == "div2k" and full.scale == 4
    assert full.data.batch_size == 4 and full.model.optim.lr == 1e-4 and full.model.scheduler.name == "constant"
    assert list(full.data.benchmark_sets) == ["Set5", "Set14", "BSD100", "Urban100"] and full.data.benchmark_root
    assert full.model.norm == "batch" and full.model.skip == "none"
    smoke = compose([f"experiment={experiment}", "profile=smoke"])
    assert smoke.trainer.accelerator == "cpu" and smoke.data.kind == "embedded" and smoke.trainer.max_steps < 20
    validate_config(smoke)
    # same recipe apart from the model
    other = compose(["experiment=self_distillation_baseline" if experiment == "self_distillation"
                     else "experiment=self_distillation"])
    for key in ("data", "trainer"):
        assert full[key] == other[key]
    assert full.model.optim == other.model.optim and full.model.scheduler == other.model.scheduler


PUBLISHED = {  # published table -> (experiment overrides of each row, in order)
    "self_distillation_table1": [["experiment=self_distillation_baseline"], ["experiment=self_distillation"]],
    "self_distillation_table2": [["experiment=self_distillation_teachers", f"model.res_blocks={n}"]
                                 for n in (32, 50, 100)],
}


@pytest.mark.parametrize("table", sorted(PUBLISHED))
def test_published_tables_match_the_experiments(table):
    from omegaconf import OmegaConf

    from lightning_sr.report.published import load_published

    pub = load_published(table)  # the report's own loader
    assert pub.source == "002_151403904a4a0b00.txt"
    assert len(pub.rows) == len(PUBLISHED[table])
    for row, overrides in zip(pub.rows, PUBLISHED[table], strict=True):
        cfg = compose(overrides)
        assert cfg.published == table
        for key, want in row.match.items():  # the row's config values are the experiment's
            assert OmegaConf.select(cfg, key) == want, (key, want)
        assert row.exit == ("exit8" if cfg.model.arch == "multi_exit" else None)
        for s in ("Set5", "Set14", "BSD100", "Urban100"):
            psnr, ssim = (row.values[f"{s}/{row.exit + '/' if row.exit else ''}{m}"] for m in ("psnr", "ssim"))
            assert 20 < psnr < 35 and 0 < ssim < 1
    script = (ROOT / "sweeps" / f"{table}.sh").read_text()
    experiments = ",".join(dict.fromkeys(o[0].split("=")[1] for o in PUBLISHED[table]))
    assert f"train.py -m experiment={experiments}" in script


def test_published_numbers_are_the_papers():
    from lightning_sr.report.published import load_published

    t1, t2 = load_published("self_distillation_table1"), load_published("self_distillation_table2")
    assert t1.rows[0].values["Set5/psnr"] == 27.343 and t1.rows[0].values["Urban100/ssim"] == 0.636
    assert t1.rows[1].values["Set5/exit8/psnr"] == 28.758 and t1.rows[1].values["BSD100/exit8/psnr"] == 24.361
    assert t2.rows[0].values == t1.rows[1].values
    assert t2.rows[1].values["Urban100/exit8/psnr"] == 23.652 and t2.rows[2].values["Set5/exit8/ssim"] == 0.892
    assert t2.rows[2].values["Set14/exit8/psnr"] == 26.340
