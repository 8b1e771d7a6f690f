"""DDP that works inside a Hydra multirun.

Lightning's default DDP launcher starts ranks 1..N-1 by re-running the command line. Under
``python train.py -m a=1,2`` that command is the whole sweep, so every child starts a sweep of its
own: duplicated jobs or a hang (Lightning issue 11300). :class:`HydraDDPStrategy` starts each child
as a *single run of the current job*: ``python train.py <this job's overrides> hydra.run.dir=<this job's
folder>``, so a sweep of J jobs on N devices runs J jobs with N processes each. After a job (finished or failed), the
process group is torn down and a fresh port is chosen, so the next job of the sweep gets a new group.
On SLURM (or torchrun) the processes come from outside and no launcher runs at all.

Modules with manual optimisation (SRGAN, TecoGAN: generator and discriminator steps, each optimiser's
parameters toggled on and off) leave parameters without gradients in each backward pass; DDP then needs
``find_unused_parameters=True`` (Lightning issues 20328, 20866), which :class:`HydraDDPStrategy` turns on for
such modules by itself.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from lightning_sr.networks.gates import carry_gates, gates_by_name

log = logging.getLogger(__name__)


def _job_command(local_rank: int) -> tuple[list[str], str | None]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hc = HydraConfig.get()
    if __main__.__spec__ is None:
        cmd = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        cmd = [sys.executable, "-m", __main__.__spec__.name]
    cmd += list(hc.overrides.task)
    # where the job's configs come from (hydra.searchpath: `+experiment=mine` from the user's own folder)
    cmd += [o for o in hc.overrides.hydra if o.split("=", 1)[0].lstrip("+~") == "hydra.searchpath"]
    cmd += [f"hydra.run.dir={hc.runtime.output_dir}", f"hydra.job.name=ddp_rank{local_rank}",
            "hydra.output_subdir=null"]
    return cmd, get_original_cwd()


class _JobObserver(threading.Thread):
    """Lightning's child-process observer, for one job only. When a rank exits with an error, the other ranks are
    killed and, unless the job has ended within ``grace`` seconds, this process too, so no rank waits in a
    collective for a dead one. Lightning's own observer never stops: in a multirun, a failed job's rank 1 exiting
    with an error would SIGKILL the process that is already running the next job. This one is stopped when the job
    ends (:func:`end_process_group`)."""

    def __init__(self, procs: list[subprocess.Popen], period: float = 1.0, grace: float = 10.0) -> None:
        super().__init__(daemon=True, name="lsr-ddp-job-observer")
        self.procs, self.period, self.grace = procs, period, grace
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            codes = [p.poll() for p in self.procs]
            if all(c == 0 for c in codes):
                return
            failed = [(rank, p) for rank, p in enumerate(self.procs, start=1) if p.returncode]
            if not failed:
                continue
            rank, proc = failed[0]
            log.error("rank %d (pid %d) exited with code %d: stopping the job's other processes", rank, proc.pid,
                      proc.returncode)
            for p in self.procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
            if not self.stopped.wait(self.grace):  # rank 0 did not end the job: it may wait in a collective
                os.kill(os.getpid(), signal.SIGKILL)
            return


_job: dict = {}  # the DDP job this process launched: its child processes and their observer


class _HydraJobLauncher(_SubprocessScriptLauncher):
    def launch(self, function, *args, trainer=None, **kwargs):
        """Lightning's launch with a job-scoped observer (:class:`_JobObserver`) in place of its own."""
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            observer = _JobObserver(self.procs)
            _job.update(procs=list(self.procs), observer=observer)
            observer.start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return super()._call_children_scripts()
        self._check_can_spawn_children()
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            child_env = os.environ.copy()
            child_env["LOCAL_RANK"] = str(local_rank)
            cmd, cwd = _job_command(local_rank)
            self.procs.append(subprocess.Popen(cmd, env=child_env, cwd=cwd))


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose child processes run this Hydra job only (see module docstring)."""

    strategy_name = "hydra_ddp"

    def _configure_launcher(self) -> None:
        assert self.cluster_environment is not None
        self._launcher = _HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)

    def _setup_model(self, model):
        lm = self.lightning_module
        if lm is not None and not lm.automatic_optimization and not self._ddp_kwargs.get("find_unused_parameters"):
            log.info("%s optimises manually (several optimisers): DDP with find_unused_parameters=True",
                     type(lm).__name__)
            self._ddp_kwargs["find_unused_parameters"] = True
        return super()._setup_model(model)


class GateKeepingSyncBatchNorm(TorchSyncBatchNorm):
    """Lightning's ``sync_batchnorm`` conversion (and its revert at teardown) keeping channel gates
    (:mod:`lightning_sr.networks.gates`): the plain conversion replaces every BatchNorm by a new module and copies
    only its weight, bias and statistics, so the gates that channel sparsity puts on BatchNorms -- and their
    hooks -- would vanish from the model while the callback went on shrinking orphaned copies."""

    def apply(self, model):
        gates = gates_by_name(model)
        model = super().apply(model)
        carry_gates(model, gates)
        return model

    def revert(self, model):
        gates = gates_by_name(model)
        model = super().revert(model)
        carry_gates(model, gates)
        return model


def keep_gates_through_layer_sync(strategy) -> None:
    """Make ``strategy``'s BatchNorm conversion (if it has one) keep channel gates; called by the callbacks that
    gate BatchNorms from their ``setup``, which Lightning runs before the strategy converts the model."""
    sync = getattr(strategy, "_layer_sync", None)
    if type(sync) is TorchSyncBatchNorm:
        strategy._layer_sync = GateKeepingSyncBatchNorm()


def end_process_group(wait_s: float = 60.0) -> None:
    """Called after a job, finished (train()) or failed (the entry point): tear the group down so the next job of a
    sweep can start its own. On the rank that launched the job: stop the job's observer first, then, with the group
    gone (a rank still waiting in a collective then fails on the closed connection), wait up to ``wait_s`` for the
    job's other ranks to exit and kill those that have not."""
    import torch.distributed as dist

    observer, procs = _job.pop("observer", None), _job.pop("procs", [])
    if observer is not None:
        observer.stopped.set()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    deadline = time.monotonic() + wait_s  # one deadline for all the job's ranks
    try:
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("rank process %d did not exit %.0f s after the job ended: killed", p.pid, wait_s)
    finally:  # also when interrupted while waiting: no rank outlives its job
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if os.environ.get("LOCAL_RANK", "0") == "0" and "SLURM_PROCID" not in os.environ and \
            "TORCHELASTIC_RUN_ID" not in os.environ:
        for k in ("MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK"):
            os.environ.pop(k, None)
