"""Fixtures of the path matrix: a random-weight checkpoint of each row's architecture (the distillation teacher,
GAN Slimming's starting point) and the matrix's cells as a Hydra config group (``+cell=<compression>``), so that
one ``python train.py -m +cell=a,b,...`` runs a row's cells as the jobs of one real multirun."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

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
        over = cells.fill([*cells.init(c), *cells.COMPRESSION_OVERRIDES[c]], ckpts)
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
