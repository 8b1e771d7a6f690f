"""DDP on CPU (gloo, 2 processes): metrics equal a single process; a multirun of DDP jobs runs each job once."""

import json

import pytest

from tests.conftest import SMOKE, compose, run_cli


@pytest.mark.slow
def test_ddp_validation_equals_single_process(tmp_path):
    ddp = tmp_path / "ddp"
    run_cli("train.py", [*SMOKE, "trainer=ddp_cpu", "trainer.devices=2", "cost.latency=false",
                         f"hydra.run.dir={ddp}"], timeout=600)
    m = json.loads((ddp / "metrics.json").read_text())
    assert m["status"] == "finished" and m["sets"]["embedded"]["images"] == 2  # both shards, no duplicates
    single = tmp_path / "single"
    run_cli("evaluate.py", [f"ckpt_path={ddp / 'checkpoints' / 'last.ckpt'}", "cost.latency=false",
                            f"hydra.run.dir={single}"], timeout=300)
    s = json.loads((single / "metrics.json").read_text())
    assert m["psnr"] == pytest.approx(s["psnr"], abs=1e-6)
    assert m["ssim"] == pytest.approx(s["ssim"], abs=1e-6)
    # rank zero alone wrote the run's files
    assert not list(ddp.glob("**/*rank1*metrics*"))


@pytest.mark.slow
def test_multirun_times_ddp_runs_each_job_once(tmp_path):
    run_cli("train.py", ["-m", *SMOKE, "model.res_blocks=1,2", "trainer=ddp_cpu", "trainer.devices=2",
                         "cost.latency=false", f"hydra.sweep.dir={tmp_path}"], timeout=900)
    jobs = sorted(d.name for d in tmp_path.iterdir() if d.is_dir() and not d.name.startswith("."))
    assert jobs == ["0", "1"]
    for j, blocks in (("0", 1), ("1", 2)):
        m = json.loads((tmp_path / j / "metrics.json").read_text())
        assert m["status"] == "finished" and m["generator"]["res_blocks"] == blocks and m["global_step"] == 4


def test_ddp_and_slurm_configs_compose():
    cfg = compose(["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"])
    assert cfg.trainer.strategy._target_.endswith("HydraDDPStrategy") and cfg.trainer.sync_batchnorm
    assert cfg.trainer.use_distributed_sampler is False
    from hydra import compose as hc
    from hydra import initialize_config_dir

    from tests.conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        full = hc("train", overrides=["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                                      "hydra/launcher=slurm"], return_hydra_config=True)
    launcher = full.hydra.launcher
    assert launcher.nodes == 2 and launcher.gpus_per_node == 4 and launcher.tasks_per_node == 4
