"""Fault tolerance: SIGKILL + rerun continues and matches an uninterrupted run; SIGTERM saves;
checkpoint writes are atomic; a resumed multirun skips finished jobs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightning_sr.checkpoint import AtomicCheckpointIO
from lightning_sr.data.samplers import ResumableSampler, ShardSampler
from tests.conftest import ROOT, SMOKE, run_cli

# big enough that a few steps take a moment, small enough for CI
RESUME = [o for o in SMOKE if not o.startswith(("model.res_blocks", "model.channels", "trainer.max_steps",
                                                 "trainer.val_check_interval"))] + [
    "model.res_blocks=4", "model.channels=32", "trainer.max_steps=40", "trainer.val_check_interval=20",
    "callbacks.last_checkpoint.every_n_steps=5", "cost.latency=false", "callbacks.model_summary=null"]


def _popen(args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, proc, timeout=240):
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {path} appeared:\n{proc.stdout.read()[-3000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{path} did not appear in {timeout}s")
        time.sleep(0.05)


def _step(ckpt: Path) -> int:
    return torch.load(ckpt, weights_only=True, map_location="cpu")["global_step"]


def test_resumable_sampler_continues_from_step_and_shards():
    step = {"v": 0}
    s = ResumableSampler(6, batch_size=2, step_fn=lambda: step["v"])
    first = list(s)
    step["v"] = 2  # two batches of 2 done: the next samples are 4, 5, ...
    assert list(s)[:2] == first[4:6] == [4, 5]
    r0 = list(ResumableSampler(4, 2, lambda: 0, rank=0, world=2))
    r1 = list(ResumableSampler(4, 2, lambda: 0, rank=1, world=2))
    assert not set(r0) & set(r1) and sorted(r0 + r1) == list(range(8))
    shards = [list(ShardSampler(5, r, 2)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(5))  # no padding, no duplicates


def test_atomic_checkpoint_never_half_written(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full (simulated mid-write failure)")

    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3), "bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["global_step"] == 1  # old checkpoint intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("last.ckpt.tmp")] in ([], [p.name for p in
                                                                                               tmp_path.glob("*.tmp-*")])


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_and_matches(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    run_cli("train.py", RESUME + [f"hydra.run.dir={ref_dir}"], timeout=600)
    ref = json.loads((ref_dir / "metrics.json").read_text())

    args = RESUME + [f"hydra.run.dir={run_dir}"]
    p = _popen(args)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    _wait_for(ckpt, p)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    killed_at = _step(ckpt)
    assert 5 <= killed_at < 40 and not (run_dir / "metrics.json").exists()

    out = run_cli("train.py", args, timeout=600)  # the very same command
    assert "resuming from" in out.stdout + out.stderr
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["global_step"] == 40 == ref["global_step"]
    assert m["psnr"] == pytest.approx(ref["psnr"], abs=0.01)
    # the step counter continued: the CSV log of the second run starts after the kill point
    import csv

    versions = sorted((run_dir / "csv").iterdir())
    steps = [int(r["step"]) for r in csv.DictReader(open(versions[-1] / "metrics.csv")) if r.get("step")]
    assert min(steps) >= killed_at


@pytest.mark.slow
def test_sigterm_saves_checkpoint_then_resumes(tmp_path):
    args = RESUME + ["callbacks.last_checkpoint.every_n_steps=1000", "trainer.val_check_interval=4",
                     f"hydra.run.dir={tmp_path}"]
    p = _popen(args)
    _wait_for(tmp_path / "samples" / "embedded" / "step0000004.png", p)  # training is under way
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), out[-3000:]  # only SIGTERM could have written it (periodic saving every 1000 steps)
    assert 4 <= _step(ckpt) < 40
    run_cli("train.py", args, timeout=600)
    assert json.loads((tmp_path / "metrics.json").read_text())["global_step"] == 40


@pytest.mark.slow
def test_resumed_multirun_skips_finished_jobs(tmp_path):
    args = ["-m", *SMOKE, "model.res_blocks=1,2", f"hydra.sweep.dir={tmp_path}", "cost.latency=false"]
    run_cli("train.py", args, timeout=600)
    done = tmp_path / "0" / "metrics.json"
    before = done.stat().st_mtime_ns
    (tmp_path / "1" / "metrics.json").unlink()  # job 1 'was pre-empted'
    (tmp_path / "1" / "checkpoints" / "last.ckpt").unlink()
    out = run_cli("train.py", args, timeout=600)
    assert "already finished" in out.stdout + out.stderr
    assert done.stat().st_mtime_ns == before  # job 0 untouched
    assert json.loads((tmp_path / "1" / "metrics.json").read_text())["status"] == "finished"
