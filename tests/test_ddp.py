"""DDP on CPU (gloo, 2 processes): metrics equal a single process for every module; a crash on one rank neither
hangs nor loses the checkpoint. A multirun of DDP jobs running each job once (launch lines counted, rank 1's log in
the job's folder, rank 0 alone writing metrics.json): tests/matrix's (b) column, for every module."""

import json

import pytest

from tests.conftest import SMOKE, compose, run_cli


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
    # trainer=ddp's default (devices=-1: all GPUs) cannot size a SLURM request: one clear line
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        bad = hc("train", overrides=["trainer=ddp", "hydra/launcher=slurm"], return_hydra_config=True)
    from omegaconf.errors import InterpolationResolutionError

    with pytest.raises(InterpolationResolutionError, match=r"ConfigError raised while resolving interpolation: "
                                                          r"trainer.devices=-1 does not say how many GPUs per node to ask for"):
        _ = bad.hydra.launcher.gpus_per_node
    # SyncBatchNorm on CPU processes is refused before training
    from lightning_sr.config import validate_config
    from lightning_sr.errors import ConfigError

    with pytest.raises(ConfigError, match="sync_batchnorm=true works on GPUs only"):
        validate_config(compose(["trainer=ddp_cpu", "trainer.sync_batchnorm=true"]))


def _evaluate(ckpt, out):
    run_cli("evaluate.py", [f"ckpt_path={ckpt}", "cost.latency=false", f"hydra.run.dir={out}"], timeout=300)
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.matrix  # make test-matrix (the full path matrix): the matrix's srgan row runs channel pruning under DDP
@pytest.mark.slow
def test_srgan_with_data_driven_pruning_under_ddp_equals_a_single_process(tmp_path):
    """SRGAN (BatchNorm discriminator, generator/discriminator toggling) trains on 2 CPU processes; global
    Taylor pruning decides on the same (full) calibration data on both ranks; every logged PSNR covers every
    image and equals a single-process evaluation."""
    from tests.compression_helpers import SPEC, save_ckpt, tiny_generator

    spec = {**SPEC, "res_blocks": 2}
    dense = save_ckpt(tiny_generator(**spec), spec, tmp_path / "dense.ckpt")
    run = tmp_path / "ddp"
    no_arch = [o for o in SMOKE if not o.startswith(("model.res_blocks", "model.channels"))]  # from the checkpoint
    run_cli("train.py", [*no_arch, "model=srgan", "model.perceptual.pretrained=false", "model.discriminator.channels=8",
                         f"model.init_from={dense}", "compression=channel_prune",
                         "compression.channel_prune.importance=taylor", "compression.channel_prune.global_pruning=true",
                         "trainer=ddp_cpu", "trainer.devices=2", "cost.latency=false", f"hydra.run.dir={run}"],
            timeout=600)
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "finished" and m["global_step"] == 4 and m["sets"]["embedded"]["images"] == 2
    single = _evaluate(m["last_ckpt"], tmp_path / "single")
    assert m["psnr"] == pytest.approx(single["psnr"], abs=1e-6) and m["ssim"] == pytest.approx(single["ssim"], abs=1e-6)
    before = _evaluate(dense, tmp_path / "dense_eval")
    (entry,) = m["compression"]
    assert entry["before"]["psnr"] == pytest.approx(before["psnr"], abs=1e-6)  # both images, not rank 0's one


@pytest.mark.slow
def test_multi_exit_with_batchnorm_under_ddp_equals_a_single_process(tmp_path):
    run = tmp_path / "ddp"
    run_cli("train.py", [*SMOKE, "model=multi_exit", "model.res_blocks=2", "model.exits=[1]", "trainer=ddp_cpu",
                         "trainer.devices=2", "cost.latency=false", f"hydra.run.dir={run}"], timeout=600)
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "finished" and m["generator"]["norm"] == "batch"
    single = _evaluate(m["last_ckpt"], tmp_path / "single")
    assert m["psnr"] == pytest.approx(single["psnr"], abs=1e-6)
    assert m["exits"]["embedded"]["exit1"]["psnr"] == pytest.approx(single["exits"]["embedded"]["exit1"]["psnr"],
                                                                     abs=1e-6)


@pytest.mark.slow
def test_a_crash_on_one_rank_neither_hangs_nor_loses_the_checkpoint(tmp_path):
    """Rank 1 fails at step 3 while rank 0 goes on: the run ends (no collective save from the exception handler
    waiting for the other rank) and rank 0's state at its last step is on disk."""
    import torch

    run = tmp_path / "ddp"
    # a hang (rank 0 waiting in a collective for the dead rank 1: gloo's 30-minute default) fails as TimeoutExpired;
    # no wall-time bar beside it: the run's own time depends on the shared machine's load
    p = run_cli("train.py", [*SMOKE, "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_steps=8",
                             "callbacks.last_checkpoint.every_n_steps=100", "cost.latency=false",
                             "+callbacks.crash._target_=tests.helpers.CrashAt", "+callbacks.crash.step=3",
                             "+callbacks.crash.rank=1", f"hydra.run.dir={run}"], timeout=240, check=False)
    assert p.returncode != 0
    assert "simulated crash at step 3 on rank 1" in p.stdout + p.stderr
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), (p.stdout + p.stderr)[-3000:]  # periodic saving is off: the exception handler wrote it
    assert 3 <= torch.load(ckpt, weights_only=True, map_location="cpu")["global_step"] <= 4


@pytest.mark.slow
def test_a_failed_ddp_job_leaves_the_next_job_of_a_multirun_intact(tmp_path):
    """Job 0 is refused in its callbacks' setup, after rank 1 started (the teacher lacks a layer): its process group
    ends with it (else job 1 reuses it and fails on rank 1's closed connection) and its rank 1 exiting with an
    error does not kill the process running job 1 (Lightning's child observer would). Job 1 finishes."""
    from tests.compression_helpers import SPEC, save_ckpt, tiny_generator

    t1, t2 = (save_ckpt(tiny_generator(**{**SPEC, "res_blocks": b}), {**SPEC, "res_blocks": b}, tmp_path / f"t{b}.ckpt")
              for b in (1, 2))
    sweep = tmp_path / "sweep"
    p = run_cli("train.py", ["-m", *SMOKE, "compression=distill", "compression.distill.output_weight=0",
                             "compression.distill.features=[{student:body.0,teacher:body.1}]",
                             f"compression.distill.teacher={t1},{t2}", "trainer=ddp_cpu", "trainer.devices=2",
                             "cost.latency=false", f"hydra.sweep.dir={sweep}"], timeout=300, check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    failed, finished = (json.loads((sweep / j / "metrics.json").read_text()) for j in ("0", "1"))
    assert failed["status"] == "failed" and "the teacher has no layer 'body.1'" in failed["error"]
    assert "error (rank 1)" in (sweep / "0" / "ddp_rank1.log").read_text()  # the refusal was reached under DDP
    assert finished["status"] == "finished" and finished["world_size"] == 2, out[-3000:]


@pytest.mark.matrix  # make test-matrix (the full path matrix): the matrix's (b) column runs channel_sparsity+distill under DDP
@pytest.mark.slow
def test_channel_sparsity_with_distillation_under_ddp_equals_a_single_process(tmp_path):
    """Gates (own optimiser), the teacher and a feature adapter (gradients averaged by hand) on 2 processes; the
    channels removed at the end are the same on both ranks, and the pruned model evaluates as validated."""
    from tests.compression_helpers import SPEC, save_ckpt, tiny_generator

    spec = {**SPEC, "res_blocks": 2, "channels": 8}
    teacher = save_ckpt(tiny_generator(seed=1, **spec), spec, tmp_path / "teacher.ckpt")
    run = tmp_path / "ddp"
    run_cli("train.py", [*SMOKE, "trainer=ddp_cpu", "trainer.devices=2", "cost.latency=false",
                         "model.res_blocks=2", f"model.init_from={teacher}", "compression=[channel_sparsity,distill]",
                         "compression.channel_sparsity.target_macs=0.5", f"compression.distill.teacher={teacher}",
                         "compression.distill.features=[{student: body.1, teacher: body.1}]",
                         f"hydra.run.dir={run}"], timeout=600)
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "finished" and m["teacher"]["params"] > m["params"]
    sp = next(e for e in m["compression"] if e["technique"] == "channel_sparsity")
    assert sp["after"]["macs"] <= 0.55 * sp["before"]["macs"]
    single = _evaluate(m["last_ckpt"], tmp_path / "single")
    assert m["psnr"] == pytest.approx(single["psnr"], abs=1e-6)


def _train_weights(run, extra: list[str], batch: int, ddp: bool) -> dict:
    """Train (SMOKE, 4 optimiser steps) and return last.ckpt's state_dict: on 2 CPU processes with batch/2 per rank,
    or on one process with the whole batch."""
    import torch

    ranks = ["trainer=ddp_cpu", "trainer.devices=2", f"data.batch_size={batch // 2}"] if ddp else \
        [f"data.batch_size={batch}"]
    no_arch = [o for o in SMOKE if not o.startswith(("model.res_blocks", "model.channels"))]  # from model.init_from
    run_cli("train.py", [*no_arch, *extra, *ranks, "cost.latency=false", f"hydra.run.dir={run}"], timeout=300)
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]


def _assert_same_training(ddp: dict, single: dict, start: dict, tol: float = 1e-6):
    """Same keys, every float tensor equal within ``tol``, and training moved the generator far beyond ``tol``."""
    assert ddp.keys() == single.keys()
    diffs = {k: float((ddp[k].double() - single[k].double()).abs().max()) for k in ddp if ddp[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    print(f"max |DDP - single| {diffs[worst]:.3g} at {worst}")
    assert diffs[worst] <= tol, f"DDP and single-process training differ most at {worst}: {diffs[worst]:.3g}"
    moved = max(float((ddp[f"generator.{k}"] - v).abs().max()) for k, v in start.items())
    print(f"max |trained - init| {moved:.3g}")
    assert moved > 20 * tol, f"the generator barely moved ({moved:.3g}): the comparison says nothing"


@pytest.mark.slow
def test_srresnet_ddp_training_equals_single_process_training(tmp_path):
    """2 processes x batch 2 see exactly the samples of 1 process x batch 4 (ResumableSampler: rank r takes the
    sample numbers r, r+2, ... of each step's block; crops and flips come from (seed, sample number)), and DDP
    averages the per-rank mean gradients, so every weight after 4 Adam steps is the same within float rounding."""
    from tests.compression_helpers import SPEC, save_ckpt, tiny_generator

    init = save_ckpt(tiny_generator(**SPEC), SPEC, tmp_path / "init.ckpt")
    start = {k: v.clone() for k, v in tiny_generator(**SPEC).state_dict().items()}
    extra = [f"model.init_from={init}", "model.optim.lr=1e-3"]
    ddp = _train_weights(tmp_path / "ddp", extra, 4, ddp=True)
    single = _train_weights(tmp_path / "single", extra, 4, ddp=False)
    _assert_same_training(ddp, single, start)


@pytest.mark.slow
def test_srgan_ddp_training_equals_single_process_training(tmp_path):
    """Same for SRGAN's two optimisers (generator step, then discriminator step, both gradient-averaged), with the
    random VGG19 perceptual loss of profile=smoke. BatchNorm is off in both networks: without SyncBatchNorm (CUDA
    only) each rank normalises with its own half batch's statistics, which is DDP's documented behaviour, not equal
    to one process by design."""
    from tests.compression_helpers import SPEC, save_ckpt, tiny_generator

    init = save_ckpt(tiny_generator(**SPEC), SPEC, tmp_path / "init.ckpt")
    start = {k: v.clone() for k, v in tiny_generator(**SPEC).state_dict().items()}
    extra = ["model=srgan", f"model.init_from={init}", "model.discriminator.channels=8",
             "model.discriminator.norm=none", "model.optim.lr=1e-3", "model.optim_d.lr=1e-3"]
    ddp = _train_weights(tmp_path / "ddp", extra, 4, ddp=True)
    single = _train_weights(tmp_path / "single", extra, 4, ddp=False)
    assert any(k.startswith("discriminator.") for k in ddp)
    _assert_same_training(ddp, single, start, tol=1e-5)  # Adam divides rounding noise by tiny discriminator gradients


def _processes_of(run_dir) -> list[str]:
    """pid + command line of every live process whose command line names ``run_dir`` (the job's ranks)."""
    from pathlib import Path

    out = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and str(run_dir) in cmd:
            out.append(f"{proc.name}: {cmd[:200]}")
    return out


KILL_CMD = [*SMOKE, "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_steps=8", "cost.latency=false",
            "callbacks.last_checkpoint.every_n_steps=2"]


@pytest.fixture(scope="module")
def uninterrupted_ddp_run(tmp_path_factory):
    """The DDP run of KILL_CMD, uninterrupted (one per worker: both kill tests are one xdist group)."""
    ref = tmp_path_factory.mktemp("ddp_kill") / "uninterrupted"
    p = run_cli("train.py", [*KILL_CMD, f"hydra.run.dir={ref}"], timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return ref


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.xdist_group("ddp_kill")
@pytest.mark.parametrize("rank", [0, 1])
def test_a_ddp_run_killed_on_one_rank_resumes_to_the_uninterrupted_run(rank, uninterrupted_ddp_run, tmp_path):
    """trainer=ddp_cpu on 2 processes, SIGKILLed mid-run on one rank (rank 0: the process the scheduler sees, whose
    rank 1 is left behind; rank 1: a worker lost, rank 0 records the failure): no process of the job outlives it,
    and the very same command then resumes from the last checkpoint to the uninterrupted DDP run's weights and
    metrics (1e-6)."""
    import os
    import signal
    import time

    from lightning_sr.checkpoint import read_checkpoint
    from tests.matrix.test_resume_matrix import assert_same_run

    marker, run = tmp_path / "killed.marker", tmp_path / "killed"
    kill = ["+callbacks.kill._target_=tests.helpers.KillAt", f"+callbacks.kill.marker={marker}",
            "+callbacks.kill.step=5", f"+callbacks.kill.rank={rank}"]
    try:
        p = run_cli("train.py", [*KILL_CMD, *kill, f"hydra.run.dir={run}"], timeout=300, check=False)
        assert p.returncode != 0 and marker.is_file(), (p.returncode, p.stderr[-3000:])
        if rank == 0:  # killed outright: nothing recorded
            assert p.returncode == -9 and not (run / "metrics.json").exists()
        else:  # rank 0 lived on, saw the broken collective and recorded the failure
            assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
        deadline = time.monotonic() + 120  # the other rank ends on its own (a broken collective) or is ended
        while _processes_of(run) and time.monotonic() < deadline:
            time.sleep(1)
        assert not _processes_of(run), _processes_of(run)
    finally:  # a failed check leaves no rank behind
        for line in _processes_of(run):
            try:
                os.kill(int(line.split(":")[0]), signal.SIGKILL)
            except ProcessLookupError:  # ended meanwhile
                pass
    step = read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    # rank 0 killed: the periodic checkpoint before the kill (the steps after it are replayed); rank 1 killed: rank 0
    # saved its state at the last finished step when the broken collective raised (as after a crash)
    assert 2 <= step < 5 if rank == 0 else 2 <= step <= 5, step
    again = run_cli("train.py", [*KILL_CMD, *kill, f"hydra.run.dir={run}"], timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout + again.stderr
    assert_same_run(uninterrupted_ddp_run, run)
