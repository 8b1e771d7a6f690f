"""Evaluate a checkpoint (or the bicubic baseline) on named sets; writes metrics.json. Examples:

    python evaluate.py ckpt_path=outputs/.../checkpoints/last.ckpt data=benchmark data.benchmark_root=DIR
    python evaluate.py model=bicubic scale=4 data=folder data.hr_dir=DIR
"""

import hydra
from omegaconf import DictConfig

import lightning_sr  # noqa: F401  (registers config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig):
    from lightning_sr.cli import run_task
    from lightning_sr.run import evaluate

    return run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
