#!/usr/bin/env bash
# PSNR-oriented counterpart of the SRGAN layer-pruning table: SRGAN's generator (batch norm, no global skip) with
# residual blocks 16/12/8/4/2 trained with an L1 pixel loss, DIV2K train -> DIV2K valid. The paper
# (../shared/papers/000_26588d7da2163c91.txt) publishes SRGAN numbers only: this table has no published rows.
# Its checkpoints can start the SRGAN of the same depth (model.init_from=<job>/checkpoints/last.ckpt).
# Config: conf/experiment/srresnet_layer_pruning.yaml (5 jobs).
#
# Full (one GPU, DIV2K at $DIV2K_ROOT):
#   python train.py -m experiment=srresnet_layer_pruning
#   python train.py -m experiment=srresnet_layer_pruning hydra/launcher=local_parallel hydra.launcher.n_jobs=2
# Smoke (CPU, embedded photos, a few minutes):
#   python train.py -m experiment=srresnet_layer_pruning profile=smoke
# Report:
#   python -m lightning_sr.report outputs/srresnet_layer_pruning/multiruns/<time>
#
# usage: sweeps/srresnet_layer_pruning.sh [smoke] [more Hydra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
if [[ "${1:-}" == "smoke" ]]; then shift; set -- profile=smoke "$@"; fi
exec "$PY" train.py -m experiment=srresnet_layer_pruning "$@"
