"""Train an SR model. Examples:

    python train.py                                   # embedded default (CPU ok, ~4 minutes)
    python train.py -m model.res_blocks=2,4,8,12,16   # a sweep
    python train.py experiment=srgan_layer_pruning    # a published table (see sweeps/)
"""

import hydra
from omegaconf import DictConfig

import lightning_sr  # noqa: F401  (registers config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig):
    from lightning_sr.cli import run_task
    from lightning_sr.run import train

    return run_task(train, cfg)


if __name__ == "__main__":
    main()
