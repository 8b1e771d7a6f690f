"""End-to-end: a real Lightning Trainer through the real train/evaluate functions and CLIs."""

import csv
import json

import pytest
import torch

from lightning_sr.errors import ConfigError, WeightsError
from lightning_sr.run import evaluate, train
from tests.conftest import SET5, SMOKE, compose, needs_set5, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny SRResNet run shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    metrics = train(compose(SMOKE + ["seed=1"], out))
    return out, metrics


def test_run_dir_contents(trained):
    out, metrics = trained
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "checkpoints").glob("best-step*.ckpt"))
    assert list((out / "samples" / "embedded").glob("step*.png"))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["status"] == "finished" and saved["global_step"] == 4
    for key in ("psnr", "ssim", "sets", "bicubic", "cost", "params", "train_time_s"):
        assert key in saved, key
    assert set(saved["sets"]) == {"embedded"} and saved["sets"]["embedded"]["images"] == 2
    # the baseline is what evaluate.py gives for model=bicubic on the same photographs, the cost is last.ckpt's
    bicubic = evaluate(compose(["model=bicubic", "scale=4", "cost.latency=false"], out / "bicubic_eval", "evaluate"))
    assert saved["bicubic"]["embedded"]["psnr"] == pytest.approx(bicubic["psnr"], abs=1e-6)
    from lightning_sr.checkpoint import load_generator
    from lightning_sr.cost import count_params

    g, _ = load_generator(out / "checkpoints" / "last.ckpt")
    assert saved["cost"]["params"] == saved["params"] == count_params(g) and saved["cost"]["macs"] > 0
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert {r["image"] for r in rows} == {"astronaut", "coffee"}


def test_checkpoint_loads_weights_only_and_rebuilds(trained):
    out, _ = trained
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["lsr_arch"]["res_blocks"] == 1 and ckpt["lsr_arch"]["channels"] == 8
    from lightning_sr.checkpoint import load_generator

    g, spec = load_generator(out / "checkpoints" / "last.ckpt")
    assert spec["arch"] == "srresnet" and len(g.body) == 1


def test_evaluate_checkpoint_matches_training_metrics(trained, tmp_path):
    out, metrics = trained
    cfg = compose([f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", "cost.repeats=1"], tmp_path, "evaluate")
    ev = evaluate(cfg)
    assert ev["psnr"] == pytest.approx(metrics["psnr"], abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["ssim"] == pytest.approx(metrics["ssim"], abs=1e-9)


def _weights(ckpt) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]


def test_same_seed_same_result(trained, tmp_path):
    """The seed decides initialisation and data: the same seed gives bit-identical weights, another seed does not."""
    out, metrics = trained
    first = _weights(out / "checkpoints" / "last.ckpt")
    again = train(compose(SMOKE + ["seed=1"], tmp_path / "same"))
    same = _weights(again["last_ckpt"])
    assert first.keys() == same.keys() and all(torch.equal(first[k], same[k]) for k in first)
    assert again["psnr"] == metrics["psnr"]
    other = _weights(train(compose(SMOKE + ["seed=2"], tmp_path / "other"))["last_ckpt"])
    assert all(not torch.equal(first[k], other[k]) for k in first if k.endswith("head.0.weight"))


def test_init_from_checkpoint(trained, tmp_path):
    out, _ = trained
    m = train(compose(SMOKE + ["model.res_blocks=3", f"model.init_from={out / 'checkpoints' / 'last.ckpt'}"], tmp_path))
    assert m["generator"]["res_blocks"] == 1  # the architecture comes from the checkpoint
    with pytest.raises(WeightsError, match="does not exist"):
        train(compose(SMOKE + [f"model.init_from={tmp_path / 'missing.ckpt'}"], tmp_path / "b"))
    with pytest.raises(ConfigError, match="x4 model but scale=2"):
        train(compose(SMOKE + ["scale=2", f"model.init_from={out / 'checkpoints' / 'last.ckpt'}"], tmp_path / "c"))


def test_srgan_trains_with_random_vgg(tmp_path):
    # random VGG19: the perceptual-loss plumbing only (no pretrained weights offline)
    m = train(compose(SMOKE + ["model=srgan", "model.perceptual.pretrained=false", "model.discriminator.channels=8"],
                      tmp_path))
    assert m["status"] == "finished" and m["global_step"] == 4  # 2 optimiser steps per batch
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])
    assert not any(k.startswith("perceptual.") for k in ckpt["state_dict"])


def test_srgan_missing_vgg_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsError) as e:
        train(compose(SMOKE + ["model=srgan", "model.perceptual.pretrained=true"], tmp_path))
    assert "vgg19-dcbfe0d2.pth" in str(e.value) and "model.perceptual.weights_path" in str(e.value)


def test_tiled_validation(tmp_path):
    """Validation in 40-pixel LR tiles (8 of overlap) is what evaluate.py gives with the same tiling, and within
    1e-3 dB of a whole-image evaluation of the same checkpoint (measured: 2e-6 dB; tiles stitched without their
    margin: 0.016 dB)."""
    tile = ["val.tile=40", "val.tile_overlap=8"]
    m = train(compose(SMOKE + [*tile, "trainer.max_steps=2"], tmp_path / "run"))
    tiled = evaluate(compose([f"ckpt_path={m['last_ckpt']}", *tile, "cost.latency=false"], tmp_path / "t", "evaluate"))
    whole = evaluate(compose([f"ckpt_path={m['last_ckpt']}", "cost.latency=false"], tmp_path / "w", "evaluate"))
    assert m["psnr"] == pytest.approx(tiled["psnr"], abs=1e-9) and m["ssim"] == pytest.approx(tiled["ssim"], abs=1e-9)
    assert abs(m["psnr"] - whole["psnr"]) < 1e-3, (m["psnr"], whole["psnr"])


@needs_set5
def test_cli_evaluate_bicubic_baseline_on_folder(tmp_path):
    run_cli("evaluate.py", ["model=bicubic", "scale=4", "data=folder", f"data.hr_dir={SET5 / 'HR'}",
                            f"hydra.run.dir={tmp_path}", "cost.latency=false"], timeout=300)
    m = json.loads((tmp_path / "metrics.json").read_text())
    # MATLAB-made LR is not used here: LR comes from our imresize, within ~0.05 dB of 28.42
    assert m["psnr"] == pytest.approx(28.42, abs=0.1) and m["ssim"] == pytest.approx(0.810, abs=0.005)
    assert (tmp_path / "per_image.csv").is_file()


def test_srgan_updates_both_networks_and_freezes_d_during_g_step(tmp_path):
    from tests.helpers import GanStepProbe

    m = train(compose(SMOKE + ["model=srgan", "model.perceptual.pretrained=false", "model.discriminator.channels=8",
                               "trainer.max_steps=4", "cost.latency=false",
                               "+callbacks.probe._target_=tests.helpers.GanStepProbe"], tmp_path))
    probe = GanStepProbe.last
    assert [s["which"] for s in probe.steps] == ["generator", "discriminator"] * 2
    for s in probe.steps:
        if s["which"] == "generator":  # D frozen: no gradient asked for, none computed
            assert s["generator_has_grad"] and not s["discriminator_requires_grad"]
        else:
            assert s["discriminator_has_grad"] and not s["generator_requires_grad"]
    final = torch.load(m["last_ckpt"], weights_only=True, map_location="cpu")["state_dict"]
    for net in ("generator", "discriminator"):
        changed = [k for k, v in probe.start[net].items() if v.is_floating_point()
                   and not torch.equal(v, final[f"{net}.{k}"])]
        assert changed, f"{net} did not change"


def test_init_from_conflicting_architecture_keys(trained, tmp_path, monkeypatch, caplog):
    import logging

    import lightning_sr.config as config_mod

    out, _ = trained
    ckpt = out / "checkpoints" / "last.ckpt"
    over = SMOKE + ["model.res_blocks=3", f"model.init_from={ckpt}"]
    monkeypatch.setattr(config_mod, "user_overrides", lambda: over)  # as if typed on the command line
    with pytest.raises(ConfigError, match=r"holds res_blocks=1 but the command line sets model.res_blocks=3"):
        train(compose(over, tmp_path / "a"))
    # keys that only come from config defaults are replaced, and the log says which
    monkeypatch.setattr(config_mod, "user_overrides", lambda: [f"model.init_from={ckpt}"])
    with caplog.at_level(logging.WARNING):
        m = train(compose(SMOKE + [f"model.init_from={ckpt}", "model.channels=16", "trainer.max_steps=2"],
                          tmp_path / "b"))
    assert m["generator"]["channels"] == 8 and "channels 16 -> 8" in caplog.text
