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
    "model.res_blocks=2", "model.channels=16", "trainer.max_steps=40", "trainer.val_check_interval=20",
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


@pytest.mark.parametrize("fail_at", ["pickle", "write", "fsync", "rename"])
def test_atomic_checkpoint_never_half_written(tmp_path, monkeypatch, fail_at):
    """A failure at any point of the write (serialising, writing the temporary file, fsync, the rename) leaves
    the old checkpoint intact and no temporary file behind."""
    import builtins

    import lightning_sr.fs as fs

    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, target)
    new = {"global_step": 2, "w": torch.zeros(1000)}
    seen = []

    def fail(*a, **k):
        raise OSError(f"disk full (simulated {fail_at} failure)")

    if fail_at == "pickle":
        class Unpicklable:
            def __reduce__(self):
                raise OSError("disk full (simulated pickle failure)")

        new["bad"] = Unpicklable()
    elif fail_at == "write":
        real_open = builtins.open

        class HalfFile:
            def __init__(self, f):
                self.f = f

            def write(self, data):
                self.f.write(bytes(data)[:10])  # part of the bytes reach the disk, then the device fails
                seen.append(self.f.name)
                raise OSError("disk full (simulated write failure)")

            def __getattr__(self, k):
                return getattr(self.f, k)

            def __enter__(self):
                return self

            def __exit__(self, *a):
                return self.f.__exit__(*a)

        monkeypatch.setattr(builtins, "open", lambda p, mode="r", *a, **k: HalfFile(real_open(p, mode, *a, **k))
                            if "tmp-" in str(p) and "w" in mode else real_open(p, mode, *a, **k))
    else:
        monkeypatch.setattr(fs.os, "fsync" if fail_at == "fsync" else "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint(new, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["global_step"] == 1  # old checkpoint intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the temporary file was removed
    if fail_at == "write":
        assert seen and ".last.ckpt.tmp-" in seen[0]  # the failure happened inside the temporary file


@pytest.mark.slow
def test_sigterm_saves_checkpoint_then_resumes(tmp_path):
    args = RESUME + ["callbacks.last_checkpoint.every_n_steps=1000", "trainer.val_check_interval=4",
                     f"hydra.run.dir={tmp_path}"]
    t_start = time.perf_counter()
    p = _popen(args)
    _wait_for(tmp_path / "samples" / "embedded" / "step0000004.png", p)  # training is under way
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), out[-3000:]  # only SIGTERM could have written it (periodic saving every 1000 steps)
    assert 4 <= _step(ckpt) < 40
    before = next(v["train_time_s"] for k, v in torch.load(ckpt, weights_only=False)["callbacks"].items()
                  if k.startswith("TrainClock"))
    assert before > 0
    first = time.perf_counter() - t_start  # the killed segment's whole life (its training is shorter)
    run_cli("train.py", args, timeout=600)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["global_step"] == 40
    # the training time counts both segments: the first one's (saved in last.ckpt by the SIGTERM) + this one's
    assert m["train_time_segment_s"] < m["train_time_s"] < m["train_time_segment_s"] + first
    assert m["train_time_s"] - m["train_time_segment_s"] == pytest.approx(before, abs=0.01)
    # the resumed run ends where the uninterrupted one does: same weights, same PSNR
    ref_dir = tmp_path.parent / f"{tmp_path.name}_uninterrupted"
    run_cli("train.py", [*args[:-1], f"hydra.run.dir={ref_dir}"], timeout=600)
    ref = json.loads((ref_dir / "metrics.json").read_text())
    assert m["psnr"] == pytest.approx(ref["psnr"], abs=1e-6)
    from lightning_sr.checkpoint import generator_state, read_checkpoint

    a, b = (generator_state(read_checkpoint(d / "checkpoints" / "last.ckpt")) for d in (ref_dir, tmp_path))
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
