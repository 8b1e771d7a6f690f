"""W&B with the real wandb package, offline: run summary (best/final metrics, model cost), one run per job,
failed jobs closing their run, and the online -> offline -> CSV fallback. The offline run files are read
back (tests/wandb_store.py); nothing is mocked."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lightning_sr.loggers import SRWandbLogger, build_loggers, close_open_runs, finish_loggers, summary_of
from tests.conftest import ROOT, compose
from tests.wandb_store import offline_runs, read_run

METRICS = {
    "status": "finished", "psnr": 27.5, "ssim": 0.8, "lpips": 0.2,
    "sets": {"Set5": {"psnr": 30.0, "ssim": 0.85, "lpips": 0.15}, "Set14": {"psnr": 25.0, "ssim": 0.75, "lpips": 0.25}},
    "exits": {"Set5": {"exit8": {"psnr": 29.0, "ssim": 0.8}}},
    "bicubic": {"Set5": {"psnr": 28.42, "ssim": 0.81}},
    "cost": {"params": 1234, "params_trainable": 1000, "macs": 5678, "macs_input": "3x32x32", "size_mb": 0.01,
             "latency_ms": 1.5, "latency_threads": 2},
    "exit_cost": {"exit8": {"params": 600, "macs": 2000}},
    "train_time_s": 12.0, "global_step": 30,
}


def _job_loggers(tmp_path: Path, job: str, extra: list[str] = ()):
    run_dir = tmp_path / job
    cfg = compose(["logger=wandb", "model.res_blocks=2", *extra], run_dir)
    return build_loggers(cfg, run_dir), run_dir


def _wandb_dir(run_dir: Path) -> Path:
    dirs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_summary_holds_best_final_and_cost_and_each_job_is_a_run(tmp_path):
    runs = []
    for job, vals in (("0", [20.0, 22.0, 21.0]), ("1", [18.0, 19.0, 19.5])):
        loggers, run_dir = _job_loggers(tmp_path, job)
        assert [type(lg) for lg in loggers] == [SRWandbLogger]
        lg = loggers[0]
        for step, v in enumerate(vals):
            lg.log_metrics({"val/psnr": v, "val/Set5/psnr": v + 1, "val/ssim": v / 100, "val/lpips": 1 - v / 100,
                            "val/Set5/exit8/psnr": v - 1, "train/loss": 1.0 / (step + 1)}, step=step * 10)
        finish_loggers(loggers, METRICS)
        runs.append(read_run(_wandb_dir(run_dir)))
    a, b = runs
    assert a.id != b.id and a.finished and b.finished and a.exit_code == 0
    assert a.summary["val/psnr"] == {"max": 22.0} and b.summary["val/psnr"] == {"max": 19.5}
    assert a.summary["val/Set5/psnr"] == {"max": 23.0} and a.summary["val/Set5/exit8/psnr"] == {"max": 21.0}
    assert a.summary["val/lpips"] == {"min": pytest.approx(0.78)}
    assert a.summary["train/loss"] == pytest.approx(1 / 3)  # other metrics: last value
    for k, v in summary_of(METRICS).items():
        assert a.summary[k] == pytest.approx(v) if isinstance(v, float) else a.summary[k] == v
    assert a.summary["cost/params"] == 1234 and a.summary["cost/exit8/params"] == 600
    assert a.summary["final/Set14/lpips"] == 0.25 and a.summary["final/Set5/exit8/psnr"] == 29.0
    assert a.summary["bicubic/Set5/psnr"] == 28.42 and a.summary["status"] == "finished"
    name = compose(["model.res_blocks=2"]).name
    assert a.group == name and a.name == name  # outside a multirun: group and name are the run name
    assert "srresnet2" in a.tags and "compression:none" in a.tags
    assert a.project == "lightning-sr"


def test_failed_job_closes_its_run_and_the_next_job_gets_a_new_one(tmp_path):
    loggers, run_dir = _job_loggers(tmp_path, "failed")
    loggers[0].log_metrics({"val/psnr": 10.0}, step=1)
    close_open_runs("DataError: no images")  # what lightning_sr.cli does when a job fails
    failed = read_run(_wandb_dir(run_dir))
    assert failed.exit_code == 1 and failed.summary["status"] == "failed"
    assert failed.summary["error"].startswith("DataError")
    loggers2, run_dir2 = _job_loggers(tmp_path, "next")
    finish_loggers(loggers2, METRICS)
    nxt = read_run(_wandb_dir(run_dir2))
    assert nxt.id != failed.id and nxt.exit_code == 0


def test_offline_failure_falls_back_to_csv_with_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lightning_sr"):
        loggers, run_dir = _job_loggers(tmp_path, "csv", ["+logger.wandb.id='bad/id'"])
    from lightning.pytorch.loggers import CSVLogger

    assert [type(lg) for lg in loggers] == [CSVLogger]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "logging to CSV" in warnings[0].getMessage()
    finish_loggers(loggers, METRICS)  # the CSV logger gets the summary too
    hparams = (run_dir / "csv" / "version_0" / "hparams.yaml").read_text()
    assert "model_cost:" in hparams and "params: 1234" in hparams
    metrics_csv = (run_dir / "csv" / "version_0" / "metrics.csv").read_text()
    assert "cost/params" in metrics_csv.splitlines()[0] and "final/Set5/psnr" in metrics_csv
    # with CSV already configured (logger=many) no second CSV logger is added
    caplog.clear()
    loggers, _ = _job_loggers(tmp_path, "many", ["logger=many", "+logger.wandb.id='bad/id'"])
    assert [type(lg) for lg in loggers] == [CSVLogger]


SCRIPT = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from tests.conftest import compose
    from lightning_sr.loggers import build_loggers, finish_loggers
    run_dir = Path({run_dir!r})
    cfg = compose(["logger=wandb", "logger.wandb.init_timeout=5"], run_dir)
    t0 = time.perf_counter()
    loggers = build_loggers(cfg, run_dir)
    print("START", round(time.perf_counter() - t0, 1), [type(lg).__name__ for lg in loggers],
          [lg._wandb_init.get("mode") for lg in loggers])
    loggers[0].log_metrics({{"val/psnr": 21.0}}, step=1)
    finish_loggers(loggers, {{"status": "finished", "psnr": 21.0, "cost": {{"params": 7}}, "global_step": 1}})
""")


@pytest.mark.slow
def test_online_failure_falls_back_to_offline_quickly(tmp_path):
    """WANDB_MODE=online, an invalid key and an unreachable server: offline after the init timeout, one warning."""
    run_dir = tmp_path / "job"
    script = tmp_path / "start_wandb.py"
    script.write_text(SCRIPT.format(root=str(ROOT), run_dir=str(run_dir)))
    env = {**os.environ, "WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9",
           "WANDB_SILENT": "true", "LSR_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    start = next(line for line in p.stdout.splitlines() if line.startswith("START"))
    seconds = float(start.split()[1])
    assert "['SRWandbLogger'] ['offline']" in start
    # init_timeout=5 was honoured: W&B's own default (90 s) would still be waiting; generous for a loaded machine
    assert seconds < 45, f"fallback took {seconds} s (init_timeout=5)"
    ours = [line for line in p.stderr.splitlines() if line.startswith("WARNING lightning_sr")]
    assert len(ours) == 1 and "W&B could not start (online:" in ours[0] and "logging offline" in ours[0]
    run = read_run(_wandb_dir(run_dir))
    assert run.exit_code == 0 and run.summary["cost/params"] == 7 and run.summary["val/psnr"] == {"max": 21.0}
    assert len(offline_runs(run_dir)) == 1
