"""Column (d) of the path matrix (issue 19): every module x every compression, SIGKILLed mid-run (a real kill of
train.py, see tests.helpers.KillAt) during its compression phase (before and after a structural removal, during
QAT), then the very same command again: the final weights and every metric of metrics.json equal the
uninterrupted run's (1e-6). The uninterrupted run is the cell's job in its row's multirun (tests/matrix/conftest.py
``row_sweep``, also column (a)/(c)'s run); one run folder is killed at each kill point in turn.

``RESUME_CELLS`` lists the cells that run, ``KILLS`` their kill points; the cells' overrides are
tests/matrix/cells.py's (its refusals are tested by test_matrix.py)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from lightning_sr.checkpoint import generator_state, read_checkpoint
from tests.conftest import run_cli
from tests.matrix import cells
from tests.matrix.conftest import cell_command, row_group

pytestmark = pytest.mark.matrix

ROWS, COMPRESSIONS = cells.ROWS, cells.COMPRESSIONS

# per compression, the kill points ("setup": before the callbacks change anything; an int n: when batch n + 1
# starts, i.e. after n x steps-per-batch optimiser steps; "teardown": after fit, before metrics.json). A cell runs 8
# batches with last.ckpt every 2 (cells.steps), so a kill at batch 3 or 5 or 7 loses a batch that the resumed run
# replays; channel sparsity removes its channels at batch 4 (kills at 3 and 7: before and after the removal), block
# and channel pruning at the start of fit (kills at setup: before, and at 5: after), QAT trains quantized from step 0
# (one kill at 5, mid-QAT), GAN Slimming removes at batch 6 while fake-quantized (kills at 5 and 7).
KILLS: dict[str, tuple] = {
    "none": (5,), "block_prune": ("setup", 5), "channel_prune": ("setup", 5), "channel_sparsity": (3, 7),
    "distill": (5,), "channel_sparsity+distill": (3, 7), "ptq": ("teardown",), "qat": (5,), "recycle": (5,),
    "gan_slimming": (5, 7),
}

# the cells: every cell tests/matrix/cells.py runs in one process (its refusals are tested by test_matrix.py)
RESUME_CELLS = [(row, comp) for row in ROWS for comp in cells.runnable(row)]

# metrics.json entries that legitimately differ between two runs of one experiment
VOLATILE = {"train_time_s", "train_time_segment_s", "resumed_from", "overrides", "config_fingerprint", "seconds", "time_s"}


def _train(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    return run_cli("train.py", [*args, f"hydra.run.dir={run_dir}"], timeout=1200, check=False)


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


@pytest.mark.timeout(1800)  # up to 4 train.py runs; a GAN + QAT cell takes minutes on a loaded 2-core machine
@pytest.mark.parametrize("cell", [pytest.param(c, marks=row_group(c[0]), id=f"{c[0]}-{c[1]}") for c in RESUME_CELLS])
def test_sigkill_mid_run_then_same_command_equals_uninterrupted(cell, row_sweep, tmp_path):
    """The uninterrupted run is the cell's job in the row's multirun (``row_sweep``); then the cell as one plain
    command carrying a KillAt per kill point (each kills once: its own marker), run until it finishes: killed at
    the first point, killed again at the next one after resuming, ..., then it runs to the end. Every kill point is
    reached (a run after a kill resumes from its last.ckpt), and the end equals the uninterrupted run."""
    row, comp = cell
    _, folders, _, conf = row_sweep(row)
    ref, run_dir, u = folders[comp], tmp_path / "killed", cells.unit(row)
    cmd, points = cell_command(row, comp, conf), []
    for n, kill in enumerate(KILLS[comp]):
        hook = kill if isinstance(kill, str) else "batch"
        step = 0 if isinstance(kill, str) else kill * u
        marker = tmp_path / f"kill_{n}_{kill}.marker"
        cmd += [f"+callbacks.kill{n}._target_=tests.helpers.KillAt", f"+callbacks.kill{n}.marker={marker}",
                f"+callbacks.kill{n}.step={step}", f"+callbacks.kill{n}.hook={hook}"]
        points.append((kill, hook, step, marker))
    resumed_at = None
    for kill, hook, step, marker in points:
        p = _train(cmd, run_dir)  # the very same command each time
        assert p.returncode == -9 and marker.is_file(), f"not killed at {kill} ({p.returncode}):\n{p.stderr[-3000:]}"
        assert not (run_dir / "metrics.json").exists()
        if hook == "batch":  # the periodic checkpoint before the kill is there; the lost batch is replayed
            resumed_at = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"]
            assert resumed_at < step
    again = _train(cmd, run_dir)
    _ok(again, f"the same command after the kills at {[k for k, *_ in points]}")
    if resumed_at is not None:
        assert "resuming from" in again.stdout + again.stderr
        # the step counter went on: the last run's CSV log starts where its checkpoint left off (Lightning logs
        # at the batch count, global_step counts optimiser steps: u per batch)
        last = sorted((run_dir / "csv").iterdir())[-1] / "metrics.csv"
        with open(last) as f:
            logged = [int(r["step"]) for r in csv.DictReader(f) if r.get("step")]
        assert logged and min(logged) >= resumed_at // u, (resumed_at, u, logged[:5])
    assert_same_run(ref, run_dir)
