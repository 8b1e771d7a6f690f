"""Published-table sweeps: experiment configs (full and smoke), launcher configs, run names, and (slow)
real multiruns through submitit's local executor and the SRGAN table's smoke variant."""

from __future__ import annotations

import json
from pathlib import Path

import hydra.utils
import pytest
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from lightning_sr.overrides import job_run_name
from lightning_sr.report.jobs import swept_keys
from lightning_sr.report.published import load_published
from tests.conftest import CONF, ROOT, SHARED, SMOKE, compose, run_cli

TABLES = {"srgan_layer_pruning": ("srgan", "srgan_layer_pruning"), "srresnet_layer_pruning": ("sr", None)}  # module


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("experiment", sorted(TABLES))
def test_experiment_full_and_smoke(experiment):
    model, published = TABLES[experiment]
    full = compose_with_hydra([f"experiment={experiment}"])
    assert full.name == experiment and full.get("published") == published
    assert full.model.module == model and full.model.res_blocks == 16
    assert full.data.name == "div2k" and full.data.kind == "folders"
    assert full.trainer.accelerator == "gpu" and full.trainer.max_steps >= 100000
    assert str(full.hydra.sweeper.params["model.res_blocks"]) == "16,12,8,4,2"
    smoke = compose_with_hydra([f"experiment={experiment}", "profile=smoke"])
    assert smoke.name == experiment and smoke.get("published") == published
    assert smoke.model.module == model and smoke.model.res_blocks == 16  # the model is the experiment's
    assert smoke.data.kind == "embedded" and smoke.trainer.accelerator == "cpu"
    assert smoke.trainer.precision == "32-true" and smoke.trainer.max_steps <= 10
    assert str(smoke.hydra.sweeper.params["model.res_blocks"]) == "16,12,8,4,2"
    if model == "srgan":  # no pretrained VGG19 here: smoke uses a random one (warns: tests only)
        assert full.model.perceptual.pretrained is True and smoke.model.perceptual.pretrained is False
    else:
        assert "perceptual" not in smoke.model  # the smoke profile adds nothing to other models


def test_srgan_and_srresnet_tables_have_the_same_generator():
    a = compose(["experiment=srgan_layer_pruning"]).model
    b = compose(["experiment=srresnet_layer_pruning"]).model
    assert (a.norm, a.skip, a.channels, a.act) == (b.norm, b.skip, b.channels, b.act)


def test_every_swept_value_has_a_published_row():
    cfg = compose_with_hydra(["experiment=srgan_layer_pruning"])
    swept = [int(v) for v in str(cfg.hydra.sweeper.params["model.res_blocks"]).split(",")]
    table = load_published(cfg.published)
    assert sorted(r.match["model.res_blocks"] for r in table.rows) == sorted(swept)
    assert table.meta["source"] == "000_26588d7da2163c91.txt"
    assert table.meta["eval_set"] == "DIV2K_valid"


@pytest.mark.skipif(not (SHARED / "papers").is_dir(), reason="../shared/papers not present: the published numbers "
                                                              "cannot be checked against the paper's text")
def test_published_numbers_are_in_the_paper():
    """Every transcribed parameter count and SSIM appears in the paper the table names as its source."""
    table = load_published(compose_with_hydra(["experiment=srgan_layer_pruning"]).published)
    text = (SHARED / "papers" / table.meta["source"]).read_text()
    assert table.rows and all(f"{r.values['params']:,}" in text for r in table.rows)
    assert all(f"{r.values['DIV2K_valid/ssim']:.4f}" in text for r in table.rows)


@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/submitit_local' is validated:UserWarning")  # see lightning_sr/__init__.py
def test_launcher_configs():
    par = compose_with_hydra(["hydra/launcher=local_parallel"]).hydra.launcher
    assert par._target_.endswith("JoblibLauncher") and par.n_jobs == 2
    slurm_cfg = compose_with_hydra(["experiment=srgan_layer_pruning", "hydra/launcher=slurm", "trainer.devices=4",
                                    "trainer.num_nodes=2", "hydra.launcher.partition=gpu",
                                    "hydra.sweep.dir=/tmp/lsr_sweep"])
    lc = OmegaConf.to_container(slurm_cfg.hydra.launcher, resolve=True)
    assert lc["_target_"].endswith("SlurmLauncher")
    assert lc["gpus_per_node"] == lc["tasks_per_node"] == 4 and lc["nodes"] == 2  # one task per GPU
    assert lc["partition"] == "gpu" and lc["timeout_min"] > 0 and lc["cpus_per_task"] and lc["mem_gb"]
    assert lc["submitit_folder"] == "/tmp/lsr_sweep/.submitit/%j" and lc["additional_parameters"] == {}
    local = OmegaConf.to_container(compose_with_hydra(["hydra/launcher=submitit_local",
                                                       "hydra.sweep.dir=/tmp/x"]).hydra.launcher, resolve=True)
    assert local["_target_"].endswith("LocalLauncher") and local["submitit_folder"] == "/tmp/x/.submitit/%j"
    for cfg in (slurm_cfg.hydra.launcher, par):  # the plugins accept them
        launcher = hydra.utils.instantiate(cfg)
        assert type(launcher).__name__ in ("SlurmLauncher", "JoblibLauncher")


def test_run_names_and_swept_keys(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"name": "t", "hydra": {
        "overrides": {"task": ["experiment=srgan_layer_pruning", "model.channels=8,16", "logger=wandb"]},
        "sweeper": {"params": {"model.res_blocks": "16,12"}}}}))
    job = ["experiment=srgan_layer_pruning", "model.channels=8", "logger=wandb", "model.res_blocks=12"]
    assert job_run_name(job, sweep) == "model.channels=8,model.res_blocks=12"
    assert job_run_name(job) == "experiment=srgan_layer_pruning,model.channels=8,model.res_blocks=12"
    assert job_run_name(["logger=wandb", "hydra.sweep.dir=x"]) is None

    from lightning_sr.report.jobs import load_job

    for i, ov in enumerate((job, [*job[:3], "model.res_blocks=16"])):
        (sweep / str(i) / ".hydra").mkdir(parents=True)
        (sweep / str(i) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(ov))
    jobs = [load_job(sweep / str(i)) for i in range(2)]
    assert swept_keys(sweep, jobs) == ["model.channels", "model.res_blocks"]
    assert all(j.status == "unfinished" for j in jobs)


def _finished_jobs(sweep: Path) -> list[dict]:
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    return [json.loads((p / "metrics.json").read_text()) for p in jobs]


@pytest.mark.slow
def test_two_job_sweep_through_submitit_local(tmp_path):
    """hydra/launcher=submitit_local: every job its own process; 2 job folders with metrics.json."""
    sweep = tmp_path / "sweep"
    smoke = [a for a in SMOKE if not a.startswith("model.res_blocks")]
    p = run_cli("train.py", ["-m", "model.res_blocks=1,2", *smoke, "hydra/launcher=submitit_local",
                             f"hydra.sweep.dir={sweep}"], timeout=570)
    metrics = _finished_jobs(sweep)
    assert [m["status"] for m in metrics] == ["finished", "finished"]
    assert [m["generator"]["res_blocks"] for m in metrics] == [1, 2]
    # each job measured its own model: its parameter count and evaluate.py's PSNR of its last.ckpt
    from lightning_sr.checkpoint import load_generator
    from lightning_sr.cost import count_params
    from lightning_sr.run import evaluate

    for i, m in enumerate(metrics):
        assert m["cost"]["params"] == count_params(load_generator(m["last_ckpt"])[0])
        ev = evaluate(compose([f"ckpt_path={m['last_ckpt']}", "cost.latency=false"], tmp_path / f"ev{i}", "evaluate"))
        assert m["psnr"] == pytest.approx(ev["psnr"], abs=1e-6)
    assert metrics[0]["psnr"] != metrics[1]["psnr"]
    assert list((sweep / ".submitit").iterdir())  # submitit's own job files
    assert (sweep / "report.md").is_file()  # written by the multirun's end callback
    assert "Submitit 'local' sweep output dir" in p.stdout + p.stderr


@pytest.mark.slow
def test_srgan_table_smoke_variant(tmp_path):
    """The SRGAN table's smoke command (two depths, tiny): random VGG19, published rows in the report."""
    sweep = tmp_path / "sweep"
    p = run_cli("train.py", ["-m", "experiment=srgan_layer_pruning", "profile=smoke", "model.res_blocks=2,1",
                             "model.channels=8", "trainer.max_steps=2", "trainer.val_check_interval=1",
                             "callbacks.progress_bar.refresh_rate=0", f"hydra.sweep.dir={sweep}"], timeout=570)
    assert "RANDOM VGG19" in p.stderr
    metrics = _finished_jobs(sweep)
    assert [m["generator"]["res_blocks"] for m in metrics] == [2, 1]
    assert all(m["status"] == "finished" and m["generator"]["norm"] == "batch" for m in metrics)
    md = (sweep / "report.md").read_text()
    assert "**published**" in md and "000_26588d7da2163c91.txt" in md and "not comparable" in md
    assert md.count("| measured | finished |") == 2
    assert "| 2 | 0 | **published** |  | 478,653 |" in md
    assert (ROOT / "sweeps" / "srgan_layer_pruning.sh").is_file()
