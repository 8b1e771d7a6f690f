"""The embedded default: `python train.py` with no arguments, on the CPU, in under 5 minutes, beats bicubic
by at least 0.5 dB Y-PSNR on the embedded validation photographs (the timed run: `make test-long`, about 3 minutes
alone on 2 cores); `make test` runs the same default configuration for a few steps."""

import json
import os
import time

import pytest
import torch

from tests.conftest import run_cli


def test_python_train_py_default_configuration_runs_end_to_end(tmp_path):
    """The default model (SRResNet-16, 64 channels) and data, as `python train.py` builds them, for 8 steps."""
    run_cli("train.py", [f"hydra.run.dir={tmp_path}", "trainer.max_steps=8", "trainer.val_check_interval=4",
                         "cost.latency=false"], timeout=300)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "finished" and m["generator"]["res_blocks"] == 16 and m["generator"]["channels"] == 64
    assert m["global_step"] == 8
    # the output convolution starts at zero (output = the bicubic skip, PSNR = bicubic): it must have been trained,
    # and 8 steps of the default already beat bicubic
    sd = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    assert sd["generator.tail.weight"].abs().max() > 1e-4 and sd["generator.tail.bias"].abs().max() > 1e-4
    assert m["psnr"] > m["bicubic"]["embedded"]["psnr"], (m["psnr"], m["bicubic"]["embedded"]["psnr"])
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
@pytest.mark.solo  # timed: nothing else may run beside it
@pytest.mark.long  # about 3 minutes: `make test-long`; the figure is in README / docs/benchmarks.md
def test_python_train_py_beats_bicubic_within_five_minutes(tmp_path):
    t0 = time.perf_counter()
    # the user's command, plus only where to write; all cores, as a user would run it
    run_cli("train.py", [f"hydra.run.dir={tmp_path}"], timeout=420, env={"OMP_NUM_THREADS": str(os.cpu_count())})
    wall = time.perf_counter() - t0
    m = json.loads((tmp_path / "metrics.json").read_text())
    gain = m["psnr"] - m["bicubic"]["embedded"]["psnr"]
    print(f"embedded default: {wall:.0f} s, PSNR {m['psnr']:.2f} dB vs bicubic "
          f"{m['bicubic']['embedded']['psnr']:.2f} dB (+{gain:.2f} dB)")
    assert wall < 300, f"took {wall:.0f} s"
    assert gain >= 0.5, f"only +{gain:.3f} dB over bicubic"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / ".hydra" / "config.yaml").is_file()
