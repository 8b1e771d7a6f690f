#!/usr/bin/env bash
# SRGAN layer pruning: residual blocks 16/12/8/4/2, DIV2K train -> DIV2K valid.
# Paper: ../shared/papers/000_26588d7da2163c91.txt, Table 2. Published numbers: sweeps/published/srgan_layer_pruning.yaml
# Config: conf/experiment/srgan_layer_pruning.yaml (5 jobs; sweep values in hydra.sweeper.params).
#
# Full (one GPU, DIV2K at $DIV2K_ROOT with DIV2K_train_HR, DIV2K_valid_HR, DIV2K_{train,valid}_LR_bicubic/X4;
# the pretrained VGG19 vgg19-dcbfe0d2.pth in the torch hub cache or model.perceptual.weights_path=FILE):
#   python train.py -m experiment=srgan_layer_pruning
#   python train.py -m experiment=srgan_layer_pruning hydra/launcher=slurm hydra.launcher.partition=gpu   # cluster
# Smoke (CPU, embedded photos, random VGG19, a few minutes; checks the machinery, not the numbers):
#   python train.py -m experiment=srgan_layer_pruning profile=smoke
# Report (written into the multirun folder when the sweep ends; this rewrites it):
#   python -m lightning_sr.report outputs/srgan_layer_pruning/multiruns/<time>
#
# usage: sweeps/srgan_layer_pruning.sh [smoke] [more Hydra overrides, e.g. logger=many data.root=/data/DIV2K]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
if [[ "${1:-}" == "smoke" ]]; then shift; set -- profile=smoke "$@"; fi
exec "$PY" train.py -m experiment=srgan_layer_pruning "$@"
