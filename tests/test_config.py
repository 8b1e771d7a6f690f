"""Impossible config values fail before training, with one line and exit status 2."""

import json

import pytest

from lightning_sr.config import validate_config
from lightning_sr.errors import ConfigError
from tests.conftest import SMOKE, compose, run_cli, run_task_in_process


@pytest.mark.parametrize("override,match", [
    ("model.res_blocks=-1", "res_blocks=-1"),
    ("scale=5", "scale=5"),
    ("data.patch_size=90", "not divisible by scale"),
    ("model.norm=group", "norm"),
    ("model.skip=lanczos", "skip"),
    ("trainer.max_steps=0", "max_steps"),
    ("val.tile=-8", "val.tile"),
    ("model.arch=unet", "unknown"),
])
def test_validate_config_rejects(override, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(compose([override]))


def test_default_config_is_valid():
    cfg = compose([])
    validate_config(cfg)
    assert cfg.model.arch == "srresnet" and cfg.data.name == "embedded" and cfg.scale == 4


def test_cli_one_line_error_before_training(tmp_path):
    """The real entry point: one ``error:`` line, exit status 2, no traceback, nothing trained, a failed record."""
    needle = "data.patch_size=30 is not divisible by scale=4"
    p = run_cli("train.py", [*SMOKE, "data.patch_size=30", f"hydra.run.dir={tmp_path}"], check=False, timeout=180)
    assert p.returncode == 2
    err_lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and needle in err_lines[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "checkpoints").exists()  # nothing was trained
    rec = json.loads((tmp_path / "metrics.json").read_text())
    assert rec["status"] == "failed" and needle in rec["error"]


@pytest.mark.parametrize("override,needle", [
    ("model.res_blocks=-2", "model.res_blocks=-2 is impossible"),
    ("scale=7", "scale=7 is not supported"),
    ("data=folder", "does not exist (expected layout"),
])
def test_every_bad_value_is_one_line_before_training(tmp_path, capsys, override, needle):
    over = [o for o in SMOKE if not o.startswith("profile=")] if override.startswith("data=") else list(SMOKE)
    over += [override] + ([f"data.hr_dir={tmp_path / 'no_such_dir'}"] if override.startswith("data=") else [])
    code, err = run_task_in_process(over, tmp_path, capsys)
    lines = [ln for ln in err if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "checkpoints").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("overrides,needle", [
    (["data.degradation=bicubic"], "model.skip_align=corner but data.degradation=bicubic puts LR pixels at the center"),
    (["model.skip_align=center"], "model.skip_align=center but data.degradation=gaussian puts LR pixels at the corner"),
    (["data.degradation=bicubic", "data.lr_align=corner", "model.skip_align=center"], "data.lr_align=corner"),
])
def test_a_video_skip_aligned_unlike_the_data_is_one_line(tmp_path, capsys, overrides, needle):
    code, err = run_task_in_process([*SMOKE, "model=frvsr", "data=embedded_video", *overrides], tmp_path, capsys)
    lines = [ln for ln in err if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_matching_video_alignments_are_accepted():
    from lightning_sr.data.video import lr_align

    for extra, align in (([], "corner"), (["data.degradation=bicubic", "model.skip_align=center"], "center")):
        cfg = compose(["model=frvsr", "data=embedded_video", *extra])
        validate_config(cfg)  # raises ConfigError on a mismatch
        assert lr_align(cfg.data) == cfg.model.skip_align == align


def test_t91_experiment_is_the_real_data_recipe():
    """experiment=t91_x4_cpu: SRResNet-16/64 x4 on T91, validated on Set5, the budget docs/benchmarks.md measured."""
    cfg = compose(["experiment=t91_x4_cpu"])
    validate_config(cfg)
    assert (cfg.data.name, cfg.scale, cfg.model.res_blocks, cfg.model.channels) == ("t91", 4, 16, 64)
    assert [v.name for v in cfg.data.val] == ["Set5"] and cfg.trainer.max_steps == 5000
