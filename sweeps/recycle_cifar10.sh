#!/usr/bin/env bash
# Weight Recycle (paper 004), Table 1 on CIFAR-10: LeNet5 at lr 1e-3/8e-4 and ResNet18 at lr 1e-3/5e-4/1e-4, each
# with ordinary and recycled convolutions (model.conv=normal,recycle): 10 jobs, Adam, 200 epochs, one GPU.
# Both multiruns write into one folder, whose report (report.md/report.csv, published rows from
# sweeps/published/recycle_cifar10.yaml) covers every job.
# Full scale (CIFAR-10 in data.root or $CIFAR10_ROOT: cifar-10-batches-py/ or train/<class>/, test/<class>/):
#   sweeps/recycle_cifar10.sh
# Smoke (CPU, embedded 10-class tiles, a few steps; minutes): the same command plus profile=smoke
#   sweeps/recycle_cifar10.sh profile=smoke
# Extra arguments go to both commands; SWEEP_DIR=... chooses the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${SWEEP_DIR:-outputs/recycle_cifar10/multiruns/$(date +%Y-%m-%d_%H-%M-%S)}"
PY="${PYTHON:-python}"
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
"$PY" train.py -m experiment=recycle_cifar10 model=lenet5 model.optim.lr=1e-3,8e-4 \
  hydra.sweep.dir="$DIR" 'hydra.sweep.subdir=lenet5_${hydra.job.num}' "$@"
"$PY" train.py -m experiment=recycle_cifar10 model=resnet18 model.optim.lr=1e-3,5e-4,1e-4 \
  hydra.sweep.dir="$DIR" 'hydra.sweep.subdir=resnet18_${hydra.job.num}' "$@"
echo "report: $DIR/report.md"
