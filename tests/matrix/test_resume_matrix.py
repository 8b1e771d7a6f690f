"""Column (d) of the path matrix (issue 19): every module x every compression, SIGKILLed mid-run (a real kill of
train.py, see tests.helpers.KillAt) during its compression phase (before and after a structural removal, during
QAT), then the very same command again: the final weights and every metric of metrics.json equal the
uninterrupted run's (1e-6). One uninterrupted reference per cell; one run folder killed at each kill point in turn.

``RESUME_CELLS`` lists the cells that run (their overrides and kill points) and ``REFUSED`` the combinations
refused by design with the message they are refused with (tests/matrix: the refusal tests check those lines)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_sr.checkpoint import generator_state, read_checkpoint
from tests.conftest import ROOT, SMOKE
from tests.matrix import cells

pytestmark = pytest.mark.matrix

ROWS, COMPRESSIONS = cells.ROWS, cells.COMPRESSIONS

# the run every cell starts from: 2 residual blocks of 8 channels, 8 batches, last.ckpt every 2 batches
BASE = [o for o in SMOKE if not o.startswith(("model.res_blocks", "model.channels", "trainer.max_steps",
                                              "trainer.val_check_interval"))] + [
    "cost.latency=false", "callbacks.model_summary=null"]
SIZE = ["model.res_blocks=2", "model.channels=8"]

# per row: its overrides (TEACHER / CIFAR / TINY are filled in by the fixtures) and its optimiser steps per batch
# (the GANs make 2: max_steps, checkpoint interval, removal step and kill points all count optimiser steps)
ROWS_CFG: dict[str, tuple[list[str], int]] = {
    "srresnet": (["model=srresnet", *SIZE, "TINY"], 1),
    "srgan": (["model=srgan", *SIZE, "model.discriminator.channels=8", "TINY"], 2),
    "multi_exit": (["model=multi_exit", *SIZE, "model.exits=[1]", "TINY"], 1),
    "frvsr": (["model=frvsr", *SIZE, "data=embedded_video"], 1),
    "tecogan": (["model=tecogan", *SIZE, "data=embedded_video", "model.discriminator.channels=8"], 2),
    "classify": (["task=classify", "model=lenet5", "CIFAR", "data.batch_size=4", "data.eval_batch_size=10",
                  "data.iters_per_epoch=4", "data.num_workers=0", "data.pin_memory=false", "trainer=cpu"], 1),
}

# per compression: overrides, and the kill points ("setup": before the callbacks change anything; an int n: when the
# batch after optimiser step n x steps-per-batch starts; "teardown": after fit, before metrics.json). Runs are 8
# batches with last.ckpt every 2, so a kill at batch 3 or 7 loses a batch that the resumed run replays; channel
# sparsity removes its channels at batch 4 (kills at 3 and 7: before and after the removal), block and channel
# pruning at the start of fit (kills at setup: before, and at 5: after), QAT trains quantized from step 0.
COMP_CFG: dict[str, tuple[list[str], tuple]] = {
    "none": ([], (5,)),
    "block_prune": (["compression=block_prune", "compression.block_prune.keep=1"], ("setup", 5)),
    "channel_prune": (["compression=channel_prune"], ("setup", 5)),
    "channel_sparsity": (["compression=channel_sparsity", "compression.channel_sparsity.target_macs=0.5",
                          "compression.channel_sparsity.prune_at_step=PRUNE"], (3, 7)),
    "distill": (["compression=distill", "compression.distill.teacher=TEACHER"], (5,)),
    "channel_sparsity+distill": (["compression=[channel_sparsity,distill]",
                                  "compression.channel_sparsity.target_macs=0.5",
                                  "compression.channel_sparsity.prune_at_step=PRUNE",
                                  "compression.distill.teacher=TEACHER"], (3, 7)),
    "ptq": (["compression=ptq", "compression.ptq.compile=false", "compression.ptq.calib_batches=2"], ("teardown",)),
    "qat": (["compression=qat", "compression.qat.compile=false"], (3, 7)),
    "recycle": (["model.conv=recycle"], (5,)),
    # distill + channel sparsity (removal at 75 %: batch 6) + QAT eagerly from step 0, then the captured slim graph
    "gan_slimming": (["experiment=gan_slimming", "compression.distill.teacher=TEACHER", "compression.qat.compile=false",
                      "compression.channel_sparsity.target_macs=0.5"], (5, 7)),
}

# the cells: every cell tests/matrix/cells.py runs in one process (its refusals are tested by test_matrix.py)
RESUME_CELLS: dict[tuple[str, str], dict] = {
    (row, comp): {"row": ROWS_CFG[row][0], "compression": COMP_CFG[comp][0], "unit": ROWS_CFG[row][1],
                  "kills": COMP_CFG[comp][1]}
    for row in ROWS for comp in cells.runnable(row)}

# metrics.json entries that legitimately differ between two runs of one experiment
VOLATILE = {"train_time_s", "train_time_segment_s", "resumed_from", "overrides", "config_fingerprint", "seconds", "time_s"}


@pytest.fixture(scope="session")
def matrix_inputs(tmp_path_factory):
    """``inputs(row)``: the row's overrides with the data folders filled in, and a teacher / init checkpoint of the
    row's own generator (random weights), made once per session."""
    from lightning_sr.config import generator_spec
    from lightning_sr.networks import build_generator
    from tests.compression_helpers import randomize, save_ckpt, write_tiny_images
    from tests.conftest import compose
    from tests.networks.test_recycle import _fake_cifar, _write_batches

    root = tmp_path_factory.mktemp("matrix_inputs")
    tiny = write_tiny_images(root / "tiny")
    _write_batches(root / "cifar", *_fake_cifar(40, 20))
    subs = {"TINY": ["data=folder", "data.kind=folders", "data.name=tiny", f"data.hr_dir={tiny}",
                     f"data.val_hr_dir={tiny}", "data.val_split=0"], "CIFAR": [f"data.root={root / 'cifar'}"]}
    done: dict[str, dict] = {}

    def inputs(row: str) -> dict:
        if row not in done:
            args = [a for o in ROWS_CFG[row][0] for a in subs.get(o, [o])]
            spec = generator_spec(compose(BASE + args))
            ckpt = save_ckpt(randomize(build_generator(spec), seed=1), spec, root / f"{row}_teacher.ckpt")
            done[row] = {"TEACHER": str(ckpt), "_args": args}
        return done[row]

    return inputs


def _args(cell: dict, inputs: dict) -> list[str]:
    u = cell["unit"]
    args = BASE + inputs["_args"] + [a.replace("TEACHER", inputs["TEACHER"]).replace("PRUNE", str(4 * u))
                                     for a in cell["compression"]]
    return args + [f"trainer.max_steps={8 * u}", "trainer.val_check_interval=4",
                   f"callbacks.last_checkpoint.every_n_steps={2 * u}"]


def _train(args: list[str], run_dir: Path, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _ok(p: subprocess.CompletedProcess, what: str) -> None:
    assert p.returncode == 0, f"{what} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"


def _leaves(d, run_dir: Path, path: str = ""):
    if isinstance(d, dict):
        for k, v in d.items():
            if k not in VOLATILE:
                yield from _leaves(v, run_dir, f"{path}/{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _leaves(v, run_dir, f"{path}/{i}")
    else:
        yield path, d.replace(str(run_dir), "<run>") if isinstance(d, str) else d


def assert_same_run(ref_dir: Path, run_dir: Path) -> None:
    """metrics.json equal leaf by leaf (numbers within 1e-6, run-folder paths normalised), last.ckpt's generator
    equal tensor by tensor (same keys and shapes, within 1e-6), the int8 artefact's too where there is one."""
    a = dict(_leaves(json.loads((ref_dir / "metrics.json").read_text()), ref_dir))
    b = dict(_leaves(json.loads((run_dir / "metrics.json").read_text()), run_dir))
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    bad = [(k, a[k], b[k]) for k in a if not (
        math.isclose(a[k], b[k], rel_tol=0, abs_tol=1e-6) if isinstance(a[k], float) and isinstance(b[k], float)
        else a[k] == b[k])]
    assert not bad, f"metrics.json differs from the uninterrupted run: {bad[:10]}"
    assert b["/status"] == "finished"
    sa, sb = (generator_state(read_checkpoint(d / "checkpoints" / "last.ckpt")) for d in (ref_dir, run_dir))
    assert sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)
    diff = {k: float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].numel()}
    assert max(diff.values()) < 1e-6, sorted(diff.items(), key=lambda kv: -kv[1])[:5]
    int8 = sorted(p.name for p in (ref_dir / "checkpoints").glob("*.pt2"))
    assert int8 == sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt2"))
    for name in int8:
        from lightning_sr.checkpoint import load_int8

        ga, gb = (load_int8(d / "checkpoints" / name, what="int8")[0] for d in (ref_dir, run_dir))
        ta, tb = ga.state_dict(), gb.state_dict()
        assert ta.keys() == tb.keys()
        for k in ta:
            if isinstance(ta[k], torch.Tensor):
                x, y = ta[k], tb[k]
                x = x.int_repr() if x.is_quantized else x
                y = y.int_repr() if y.is_quantized else y
                assert torch.equal(x, y), f"int8 artefact {name}: {k} differs"


@pytest.mark.timeout(2400)  # up to 4 train.py runs; an SRGAN cell takes minutes each on a loaded 2-core machine
@pytest.mark.parametrize("cell", sorted(RESUME_CELLS), ids=lambda c: f"{c[0]}-{c[1]}")
def test_sigkill_mid_run_then_same_command_equals_uninterrupted(cell, matrix_inputs, tmp_path):
    """The uninterrupted run, then one command carrying a KillAt per kill point (each kills once: its own marker),
    run until it finishes: killed at the first point, killed again at the next one after resuming, ..., then it
    runs to the end. Every kill point is reached (a run after a kill resumes from its last.ckpt), and the end equals
    the uninterrupted run."""
    row, comp = cell
    spec = RESUME_CELLS[cell]
    args = _args(spec, matrix_inputs(row))
    ref, run_dir = tmp_path / "ref", tmp_path / "killed"
    _ok(_train(args, ref), "the uninterrupted run")
    cmd, points = list(args), []
    for n, kill in enumerate(spec["kills"]):
        hook = kill if isinstance(kill, str) else "batch"
        step = 0 if isinstance(kill, str) else kill * spec["unit"]
        marker = tmp_path / f"kill_{n}_{kill}.marker"
        cmd += [f"+callbacks.kill{n}._target_=tests.helpers.KillAt", f"+callbacks.kill{n}.marker={marker}",
                f"+callbacks.kill{n}.step={step}", f"+callbacks.kill{n}.hook={hook}"]
        points.append((kill, hook, step, marker))
    for kill, hook, step, marker in points:
        p = _train(cmd, run_dir)  # the very same command each time
        assert p.returncode == -9 and marker.is_file(), f"not killed at {kill} ({p.returncode}):\n{p.stderr[-3000:]}"
        assert not (run_dir / "metrics.json").exists()
        if hook == "batch":  # the periodic checkpoint before the kill is there; the lost batch is replayed
            assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] < step
    again = _train(cmd, run_dir)
    _ok(again, f"the same command after the kills at {[k for k, *_ in points]}")
    if any(hook == "batch" for _, hook, *_ in points):
        assert "resuming from" in again.stdout + again.stderr
    assert_same_run(ref, run_dir)
