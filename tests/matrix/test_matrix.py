"""Issue 19's path matrix, columns (a) single process, (b) DDP on 2 CPU processes, (c) a multirun through the
report, and every refused cell as a one-line refusal (single process and DDP). The cells are tests/matrix/cells.py;
column (d) (killed and resumed) is tests/matrix/test_resume_matrix.py. ``make test-matrix`` runs this file."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, compose, run_cli
from tests.matrix import cells
from tests.matrix.conftest import DDP_COST, multirun, row_group

pytestmark = pytest.mark.matrix

DDP = ["trainer=ddp_cpu", "trainer.devices=2"]
TOL = 1e-6  # metrics.json vs an independent evaluation of last.ckpt: tests/test_ddp.py's tolerance


def _headline(row: str) -> str:
    return "accuracy" if row == "classify" else "psnr"


def _evaluate(row: str, ckpt: Path, out: Path) -> dict:
    """evaluate.py's function (in this process) on a checkpoint, on the row's validation data."""
    from lightning_sr.run import evaluate

    data = {"frvsr": ["data=embedded_video"], "tecogan": ["data=embedded_video"],
            "classify": ["data=cifar10", "data.kind=embedded", "data.name=embedded_classify", "data.root=null",
                         "data.num_workers=0", "data.pin_memory=false"]}.get(row, [])
    return evaluate(compose([f"ckpt_path={ckpt}", *data, "cost.latency=false", "progress_bar=false"], out,
                            "evaluate"))


def _numbers(d: dict, path: str = "") -> dict[str, float]:
    """Every number under ``d`` (a set's metrics: PSNR, SSIM, tOF, counts, per-clip values), by its key path."""
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_numbers(v, f"{path}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{path}{k}"] = v
    return out


def _check_jobs(row: str, folders: dict[str, Path], tmp_path: Path, world_size: int) -> dict[str, dict]:
    """Every job finished with a finite headline metric, and every number of every set (PSNR, SSIM, tOF, the
    image, frame and clip counts, the per-clip values) is the one an independent evaluation of the job's last.ckpt
    gives."""
    key, out = _headline(row), {}
    for c, d in folders.items():
        m = json.loads((d / "metrics.json").read_text())
        assert m["status"] == "finished", (c, m.get("error"))
        assert m["world_size"] == world_size and m["written_by_rank"] == 0, c
        assert math.isfinite(m[key]), (c, m[key])
        ev = _evaluate(row, d / "checkpoints" / "last.ckpt", tmp_path / "eval" / d.parent.name / d.name)
        assert m["sets"].keys() == ev["sets"].keys(), (c, list(m["sets"]), list(ev["sets"]))
        for s, v in ev["sets"].items():
            got, want = _numbers(m["sets"][s]), _numbers(v)
            assert key in want and got.keys() == want.keys(), (c, s, sorted(got), sorted(want))
            bad = {k: (got[k], want[k]) for k in want if got[k] != pytest.approx(want[k], abs=TOL)}
            assert not bad, (c, s, bad)
        assert m[key] == pytest.approx(ev[key], abs=TOL), (c, m[key], ev[key])
        out[c] = m
    return out


@pytest.mark.timeout(1800)  # ten jobs and their evaluations (pyproject's 600 s is per ordinary test)
@pytest.mark.parametrize("row", [pytest.param(r, marks=row_group(r)) for r in cells.ROWS])
def test_row_single_process_multirun_through_the_report(row, row_sweep, checkpoints, tmp_path):
    """(a)+(c): every runnable cell of the row as a job of one multirun (Hydra's basic launcher: the jobs one after
    the other in one process), then the report; and one cell as a plain ``python train.py`` (its own run folder
    handling), equal to its multirun job. Column (d) resumes every other cell to its job's result the same way."""
    sweep, folders, _, _ = row_sweep(row)
    metrics = _check_jobs(row, folders, tmp_path, world_size=1)
    # the report the multirun wrote at its end: one measured row per job, its values the job's metrics.json
    with open(sweep / "report.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "measured"]
    assert sorted(r["job"] for r in rows) == sorted(d.name for d in folders.values())
    key = _headline(row)
    for r in rows:
        (c,) = [c for c, d in folders.items() if d.name == r["job"]]
        assert r["status"] == "finished" and float(r[key]) == pytest.approx(metrics[c][key], abs=1e-4), (c, r)
    # the plain command (hydra.run.dir, no sweep, every override written out instead of +cell=) of one cell gives
    # that job's result exactly
    c = cells.PLAIN[row]
    run = tmp_path / "plain"
    run_cli("train.py", [*cells.overrides(row, c, checkpoints[row]), f"hydra.run.dir={run}"], timeout=600)
    plain = json.loads((run / "metrics.json").read_text())
    assert plain["status"] == "finished" and plain[key] == metrics[c][key], (plain[key], metrics[c][key])
    a = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(folders[c] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("row", [pytest.param(r, marks=pytest.mark.cost(DDP_COST[r])) for r in cells.ROWS])
def test_row_under_ddp_equals_a_single_process_evaluation(row, checkpoints, tmp_path):
    """(b): every cell of the row that runs under DDP, as the jobs of one multirun of 2-process DDP jobs (each job
    launched once); each job's final validation equals a single-process evaluation of its last.ckpt."""
    jobs = cells.runnable(row, ddp=True)
    sweep, folders, p, _ = multirun(row, jobs, checkpoints[row], tmp_path, extra=DDP, name="ddp")
    out = p.stdout + p.stderr
    assert out.count(f"Launching {len(jobs)} jobs locally") == 1 and out.count("Launching") == 1, out[-3000:]
    for i in range(len(jobs)):
        assert out.count(f"#{i} : ") == 1, out[-3000:]
    for d in folders.values():  # rank 1 ran this very job in this folder
        assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (d / "ddp_rank1.log").read_text()
    _check_jobs(row, folders, tmp_path, world_size=2)


REFUSALS = [(r, c, ddp) for r, c in cells.refused(ddp=True) for ddp in (False, True)
            if not (ddp is False and (r, c) not in cells.refused())]


@pytest.mark.parametrize("row,compression,ddp", REFUSALS,
                         ids=[f"{r}-{c}-{'ddp' if d else 'single'}" for r, c, d in REFUSALS])
def test_refused_cell_is_one_line(row, compression, ddp, checkpoints, tmp_path):
    """A refused cell: exit status 2, exactly one ``error:`` line (also with 2 DDP ranks) that names the keys and
    the fix, refused before fit launches anything (no DDP rank 1: lightning_sr.compression.base.preflight), nothing
    trained, nothing written outside the run folder (the working directory and TMPDIR stay
    empty)."""
    cwd, tmp, run = tmp_path / "cwd", tmp_path / "tmp", tmp_path / "run"
    cwd.mkdir()
    tmp.mkdir()
    p = run_cli("train.py", [*cells.overrides(row, compression, checkpoints[row], ddp), *(DDP if ddp else []),
                             f"hydra.run.dir={run}"], cwd=cwd, env={"TMPDIR": str(tmp)}, check=False, timeout=600)
    needle = cells.refusal(row, compression, ddp).needle
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(lines) == 1 and needle in lines[0], (p.returncode, lines, p.stderr[-3000:])
    assert "Traceback" not in p.stderr
    assert not (run / "ddp_rank1.log").exists(), "refused after rank 1 was launched; refuse in preflight, before fit"
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "failed" and needle in rec["error"]
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["cwd", "run", "tmp"]


def test_docs_table_is_generated_from_the_cells():
    """docs/testing.md's matrix table is ``python -m tests.matrix.cells``'s output."""
    doc = (ROOT / "docs" / "testing.md").read_text()
    assert cells.table() in doc, "docs/testing.md is out of date: paste the output of python -m tests.matrix.cells"
