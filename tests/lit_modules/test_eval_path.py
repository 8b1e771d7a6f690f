"""The one evaluation path: the bicubic baseline covers every image whatever the trainer settings, validation
runs in fp32 under bf16-mixed, tiled equals whole-image validation, and torchmetrics-style metric objects."""

from __future__ import annotations

import pytest
import torch

from lightning_sr.metrics import SRPSNR, SRSSIM, psnr, ssim
from lightning_sr.run import evaluate, train
from tests.conftest import SMOKE, compose

QUICK = SMOKE + ["cost.latency=false", "callbacks.model_summary=null", "trainer.max_steps=2"]


def test_bicubic_baseline_covers_every_image_with_sanity_steps_and_limited_validation(tmp_path):
    m = train(compose(QUICK + ["trainer.num_sanity_val_steps=1", "+trainer.limit_val_batches=1"], tmp_path))
    assert m["bicubic"]["embedded"]["images"] == 2  # not the one sanity/limited batch
    assert m["sets"]["embedded"]["images"] == 2      # the final evaluation covers every image too
    ev = evaluate(compose(["model=bicubic", "cost.latency=false"], tmp_path / "bic", "evaluate"))
    assert m["bicubic"]["embedded"]["psnr"] == pytest.approx(ev["psnr"], abs=1e-9)


def test_bf16_mixed_training_validates_in_fp32_like_evaluate(tmp_path):
    m = train(compose(QUICK + ["trainer.precision=bf16-mixed"], tmp_path))
    ev = evaluate(compose([f"ckpt_path={m['last_ckpt']}", "cost.latency=false"], tmp_path / "ev", "evaluate"))
    assert m["psnr"] == pytest.approx(ev["psnr"], abs=1e-6) and m["ssim"] == pytest.approx(ev["ssim"], abs=1e-8)


def test_tiled_validation_agrees_with_whole_images(tmp_path):
    whole = train(compose(QUICK + ["model.res_blocks=2", "seed=3"], tmp_path / "whole"))
    ckpt = whole["last_ckpt"]
    tiled = evaluate(compose([f"ckpt_path={ckpt}", "val.tile=40", "val.tile_overlap=8", "cost.latency=false"],
                             tmp_path / "tiled", "evaluate"))
    assert tiled["psnr"] == pytest.approx(whole["psnr"], abs=0.01)
    assert tiled["psnr"] != whole["psnr"]  # it did tile: overlapping borders are blended


def test_metric_objects_follow_the_functional_conventions():
    sr, hr = torch.rand(3, 3, 24, 20), torch.rand(3, 3, 24, 20)
    m, s = SRPSNR(crop=4), SRSSIM(crop=4)
    for i in range(3):
        m.update(sr[i:i + 1], hr[i:i + 1])
        s.update(sr[i:i + 1], hr[i:i + 1])
    assert float(m.compute()) == pytest.approx(float(psnr(sr, hr, 4).mean()), abs=1e-9)
    assert float(s.compute()) == pytest.approx(float(ssim(sr, hr, 4).mean()), abs=1e-12)
