"""sweeps/cpu_results.sh (issue 22): the research programme's one command, at toy budgets (``smoke``): every
question's jobs run through the real train.py / evaluate.py, every comparison gets its report with paired
differences, the results document's tables are filled from them, and the same command again trains nothing.

The questions run as two tests in two output folders (each trains its own toy teacher), so that the two xdist
workers of ``make test-research`` share them: the int8 questions (q6, q7: PTQ/QAT with compiled int8 evaluation)
take about as long as all the others together."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_sr.report.results_doc import read_latency

ROOT = Path(__file__).resolve().parents[1]
PARTS = {
    "fp32": (["teacher", "q2", "q3", "q4", "q5", "q8", "q9"],
             ["q2_depth8", "q2_depth4", "q3_macs50", "q3_macs25", "q4_kd", "q4_teacher_size", "q5_self_distillation",
              "q8_recycle", "q9_blocks5", "q9_blocks1"]),
    "int8": (["teacher", "q6", "q7"], ["q6_int8_teacher", "q6_int8_student", "q7_gan_slimming"]),
}


def _run(out: Path, *parts: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT=str(out), SMOKE_SEEDS="0", PYTHON=sys.executable, NICE="0")
    return subprocess.run(["bash", str(ROOT / "sweeps" / "cpu_results.sh"), "smoke", *parts], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)


@pytest.mark.research
@pytest.mark.timeout(3600)  # 20-40 jobs of 10-70 s each on the shared 2-core machine (pyproject's 600 s: one test)
@pytest.mark.parametrize("part", list(PARTS))
def test_cpu_results_smoke_runs_every_question_and_resumes(part, tmp_path):
    questions, reports = PARTS[part]
    out = tmp_path / "cpu_results"
    p = _run(out, *questions, "report")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ran = [ln.split()[-1] for ln in p.stdout.splitlines() if ln.startswith(("[cpu_results] run:", "[cpu_results] eval:"))]
    ledger = list(csv.DictReader(open(out / "ledger.tsv"), delimiter="\t"))
    assert sorted(r["job"] for r in ledger) == sorted(ran) and all(r["status"] == "ok" for r in ledger)
    assert all(r["cpu"] and int(r["wall_s"]) >= 0 for r in ledger)
    for job in ran:  # every job finished, in its own folder
        m = json.loads((out / job / "metrics.json").read_text())
        assert m["status"] == "finished", job
    if part == "fp32":  # equal budgets where the plan says so: a pruned + fine-tuned job counts its teacher's steps
        teacher = json.loads((out / "teacher/s0/metrics.json").read_text())["global_step"]
        pruned = json.loads((out / "q2/pruned8/s0/metrics.json").read_text())["global_step"]
        scratch = json.loads((out / "q2/scratch8/s0/metrics.json").read_text())["global_step"]
        assert teacher + pruned == scratch
    for name in reports:  # every comparison has its report, with the paired-difference column against its reference
        rows = list(csv.DictReader(open(out / "reports" / name / "report.csv")))
        measured = [r for r in rows if r["source"] in ("measured", "int8")]
        assert len(measured) >= 2, name
        assert sum(r.get("reference") == "reference" for r in measured) == 1, name
        assert any(k.endswith("/delta_psnr") and r[k] not in ("", "reference") for r in measured for k in r), name
        # every row's budget, evaluation jobs (q6, q7) included: the steps behind the checkpoint they measured
        assert all(r.get("steps_total") or r.get("global_step") for r in measured), name
        # the rows' latency side by side in one process (the video questions: none)
        label = "name" if "name" in rows[0] else "job"
        side = read_latency(out / "reports" / name)
        if name.startswith("q9"):
            assert not side, name
        else:
            assert {r[label] + (" (int8)" if r["source"] == "int8" else "") for r in measured} <= set(side), name
            assert sorted(v["ratio"] for v in side.values()).count("1.000") >= 1, name
    doc = (out / "results.md").read_text()
    for name in reports:  # the document's tables are the reports', none left empty
        block = doc.split(f"<!-- report:{name} -->")[1].split(f"<!-- /report:{name} -->")[0]
        assert "Not run yet." not in block and f"reports/{name}/report.csv" in block, name
    # the same command again: every job is found finished, nothing trains
    again = _run(out, *questions, "report")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[cpu_results] run:" not in again.stdout and "[cpu_results] eval:" not in again.stdout
    assert len(list(csv.DictReader(open(out / "ledger.tsv"), delimiter="\t"))) == len(ledger)
