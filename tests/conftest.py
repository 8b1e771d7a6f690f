"""Shared test helpers: compose the real Hydra configs and run the real train/evaluate functions.

``compose(["model.res_blocks=1", ...], tmp_path)`` returns the resolved config that
``python train.py <overrides>`` would get, with its output folder under ``tmp_path``.
``SMOKE`` is the override list of a tiny CPU run (a few steps, tiny model) used across tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Lightning's INFO lines ("Seed set to 0") go to the stderr of the moment Lightning is first imported: imported here,
# they stay out of the stderr that run_task_in_process reads (which must hold the one error line), whichever test
# happens to import Lightning first
import lightning.pytorch  # noqa: F401
import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

import lightning_sr  # noqa: F401  (resolvers)
from tests.compression_helpers import SPEC, save_ckpt, tiny_data_overrides, tiny_generator, write_tiny_images

# 2-core machines: one intra-op thread per test process (and per subprocess below) avoids thread
# oversubscription, which slows tiny models down by an order of magnitude.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED = ROOT.parent / "shared"
SET5 = SHARED / "data" / "Set5"
ALEXNET = SHARED / "weights" / "alexnet_features_imagenet.pth"

# a tiny model and run: seconds on a CPU
SMOKE = ["profile=smoke", "model.res_blocks=1", "model.channels=8", "trainer.max_steps=4",
         "trainer.val_check_interval=2", "callbacks.progress_bar.refresh_rate=0", "logger=csv"]

needs_set5 = pytest.mark.skipif(not (SET5 / "HR").is_dir(), reason="../shared/data/Set5 not present")
needs_alexnet = pytest.mark.skipif(not ALEXNET.is_file(), reason="../shared/weights AlexNet not present")


def compose(overrides: list[str], out_dir: Path | None = None, config_name: str = "train") -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    if out_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out_dir)
    return cfg


def resolved(cfg: DictConfig) -> DictConfig:
    OmegaConf.resolve(cfg)
    return cfg


def run_cli(script: str, args: list[str], cwd: Path = ROOT, timeout: int = 600, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python <script> args`` as a user would; returns the completed process."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", **(env or {})}
    p = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def run_task_in_process(overrides: list[str], out_dir: Path, capsys, task: str = "train", config_name: str = "train"):
    """What the entry point does with a bad config, without starting a process: (exit status, stderr lines)."""
    from lightning_sr import run
    from lightning_sr.cli import run_task

    cfg = compose(overrides, out_dir, config_name)
    code = 0
    capsys.readouterr()
    try:
        run_task(getattr(run, task), cfg)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.splitlines()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Embedded PNGs go to one session-wide temp cache; W&B stays offline and local."""
    cache = tmp_path_factory.getbasetemp() / "lsr_cache"
    monkeypatch.setenv("LSR_CACHE", str(cache))
    monkeypatch.setenv("WANDB_MODE", os.environ.get("WANDB_MODE", "offline"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def pytest_configure(config):
    """`--dist loadgroup` must keep an xdist_group on one worker (tests/matrix shares one multirun per row group):
    pytest 9.2's structured node ids make pytest-xdist <= 3.8 ignore the groups silently (pytest-dev/pytest-xdist
    #1386), so that pair is refused here, in the controlling process, before any test runs."""
    if config.getoption("dist", "no") != "loadgroup" or hasattr(config, "workerinput"):
        return
    from importlib.metadata import version

    def v(pkg):
        return tuple(int(x) for x in version(pkg).split(".")[:2] if x.isdigit())

    if v("pytest") >= (9, 2) and v("pytest-xdist") <= (3, 8):
        raise pytest.UsageError(
            f"pytest {version('pytest')} with pytest-xdist {version('pytest-xdist')}: --dist loadgroup ignores "
            f"xdist_group (pytest-dev/pytest-xdist#1386); pip install 'pytest<9.2' (pyproject's dev extra pins it)")


def pytest_collection_modifyitems(config, items):
    """`solo` (timed: nothing may run beside it) only exists together with `long`: `make test` runs everything but
    `long` on 2 xdist workers, and `make test-long` runs the `long` tests alone. A solo test without `long` would run
    beside others under `make test` and time the machine's load instead of the command."""
    bad = [it.nodeid for it in items if it.get_closest_marker("solo") and not it.get_closest_marker("long")]
    if bad:
        raise pytest.UsageError(f"tests marked solo must also be marked long (make test-long runs them alone): {bad}")
    # the longest work first: xdist hands tests (an xdist_group as one unit, where its first test is) to the workers
    # in collection order (make test-matrix passes --no-loadscope-reorder), so a long group collected last would
    # run alone at the end; `cost` is a test's (its group's) measured idle seconds; the sort is stable
    items.sort(key=lambda it: -(m.args[0] if (m := it.get_closest_marker("cost")) else 0))


# ----- fixtures of the compression and reload tests (built on tests/compression_helpers.py) ----------------------
@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> list[str]:
    return tiny_data_overrides(write_tiny_images(tmp_path_factory.mktemp("tiny_images")))


@pytest.fixture(scope="session")
def dense_ckpt(tmp_path_factory) -> Path:
    """A 4-block, 8-channel x4 SRResNet checkpoint with random (non-zero) weights."""
    spec = {**SPEC, "res_blocks": 4}
    return save_ckpt(tiny_generator(**spec), spec, tmp_path_factory.mktemp("dense") / "dense.ckpt")


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny models run far faster on one thread when the machine is shared (no oversubscription)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
