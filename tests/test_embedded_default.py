"""The embedded default: `python train.py` with no arguments, on the CPU, in under 5 minutes, beats bicubic
by at least 0.5 dB Y-PSNR on the embedded validation photographs."""

import json
import os
import time

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
@pytest.mark.solo  # timed: nothing else may run beside it
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
