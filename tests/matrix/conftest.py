"""Fixtures of the path matrix: a random-weight checkpoint of each row's architecture (the distillation teacher,
GAN Slimming's starting point) and the matrix's cells as a Hydra config group (``+cell=<compression>``), so that
one ``python train.py -m +cell=a,b,...`` runs a row's cells as the jobs of one real multirun.

``row_sweep(row)`` runs that multirun once per session: its jobs are column (a)/(c)'s runs and column (d)'s
uninterrupted references (a row's tests share one xdist group, so one worker runs it once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import run_cli
from tests.matrix import cells

GROUPS = ("compression", "experiment", "model", "data", "task")  # overrides that choose a config group


def random_checkpoint(row: str, folder: Path, seed: int, recycle: bool = False) -> Path:
    """A checkpoint of the row's generator (its tiny spec from the row's config) with random non-zero weights."""
    from lightning_sr.config import generator_spec
    from lightning_sr.networks import build_generator
    from tests.compression_helpers import randomize, save_ckpt
    from tests.conftest import compose

    spec = generator_spec(compose([*cells.COMMON, *cells.BASE[row], *(["model.conv=recycle"] if recycle else [])]))
    folder.mkdir(parents=True, exist_ok=True)
    return save_ckpt(randomize(build_generator(spec), seed).eval(), spec, folder / f"{row}_seed{seed}{'_recycle' if recycle else ''}.ckpt")


def cell_config(overrides: list[str]) -> str:
    """One cell's compression overrides as a ``# @package _global_`` config: group choices become defaults-list
    overrides, dotted keys its body (what ``+cell=<name>`` adds to the command line)."""
    defaults, body = [], []
    for o in overrides:
        key, value = o.split("=", 1)
        if key in GROUPS:
            v = yaml.safe_load(value.replace("[", "[ ").replace(",", ", "))
            defaults.append({f"override /{key}": v})
        else:
            body.append(o)
    text = "# @package _global_\n" + yaml.safe_dump({"defaults": [*defaults, "_self_"]}, sort_keys=False)
    if body:
        text += OmegaConf.to_yaml(OmegaConf.from_dotlist(body))
    return text


def cell_name(compression: str) -> str:
    return compression.replace("+", "_and_")


def write_cell_group(folder: Path, row: str, ckpts: dict[str, Path], ddp: bool = False) -> Path:
    """``folder/cell/<compression>.yaml`` for every runnable cell of ``row`` (its start and its compression);
    returns the search-path folder."""
    (folder / "cell").mkdir(parents=True, exist_ok=True)
    for c in cells.runnable(row, ddp):
        over = cells.cell_overrides(row, c, ckpts, ddp)
        (folder / "cell" / f"{cell_name(c)}.yaml").write_text(cell_config(over))
    return folder


def row_checkpoints(row: str, folder: Path) -> dict[str, Path]:
    """{init, init_recycle, teacher}: random-weight checkpoints of the row's architecture."""
    return {"init": random_checkpoint(row, folder, 0), "teacher": random_checkpoint(row, folder, 1),
            "init_recycle": random_checkpoint(row, folder, 0, recycle=True)}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("matrix_checkpoints")
    return {row: row_checkpoints(row, folder) for row in cells.ROWS}


def multirun(row: str, jobs: list[str], ckpts: dict[str, Path], folder: Path, extra=(), name: str = "sweep"):
    """``python train.py -m <row> +cell=<job>,<job>,...``: one real multirun (Hydra's basic launcher, jobs one after
    the other, in one process); returns (sweep folder, {compression: job folder}, the process, the cell group's
    search-path folder)."""
    conf = write_cell_group(folder / f"{name}_conf", row, ckpts, ddp=bool(extra))
    sweep = folder / name
    p = run_cli("train.py", ["-m", *cells.row_overrides(row), *extra, f"hydra.searchpath=[file://{conf}]",
                             "+cell=" + ",".join(cell_name(c) for c in jobs), f"hydra.sweep.dir={sweep}"],
                timeout=1500)
    folders = {}
    for d in sorted((p_ for p_ in sweep.iterdir() if (p_ / ".hydra").is_dir()), key=lambda p_: int(p_.name)):
        over = (d / ".hydra" / "overrides.yaml").read_text()
        (c,) = [c for c in jobs if f"+cell={cell_name(c)}\n" in over]
        folders[c] = d
    assert list(folders) == jobs, (sweep, list(folders))
    return sweep, folders, p, conf


def cell_command(row: str, compression: str, conf: Path) -> list[str]:
    """The plain ``python train.py`` command line of one job of ``row_sweep(row)`` (without hydra.run.dir)."""
    return [*cells.row_overrides(row), f"hydra.searchpath=[file://{conf}]", f"+cell={cell_name(compression)}"]


@pytest.fixture(scope="session")
def row_sweep(checkpoints, tmp_path_factory):
    """``row_sweep(row)``: the row's single-process multirun (every runnable cell one job), run once per session;
    a failed multirun fails every test that asks for it, without running it again."""
    done: dict[str, object] = {}

    def get(row: str):
        if row not in done:
            try:
                done[row] = multirun(row, cells.runnable(row), checkpoints[row], tmp_path_factory.mktemp(f"row_{row}"))
            except Exception as e:  # noqa: BLE001 -- kept and raised for every test of the row
                done[row] = e
        if isinstance(done[row], Exception):
            raise done[row]
        return done[row]

    return get


# measured idle seconds on the project's 2-core Intel Xeon (make test-matrix --durations=0, 2026-12-07), so that
# the longest start first (tests/conftest.py sorts by the `cost` mark): a row's single-process group (its multirun,
# its checks and its resume cells) and its DDP multirun
GROUP_COST = {"srgan": 505, "multi_exit": 438, "srresnet": 386, "tecogan": 366, "frvsr": 316, "classify": 93}
DDP_COST = {"srgan": 215, "tecogan": 170, "srresnet": 166, "multi_exit": 154, "frvsr": 128, "classify": 38}


def row_group(row: str) -> list:
    """The marks of a row's single-process tests: one xdist group (one worker runs its multirun once, and its
    resume cells), started by its cost."""
    return [pytest.mark.xdist_group(f"matrix-row-{row}"), pytest.mark.cost(GROUP_COST[row])]
