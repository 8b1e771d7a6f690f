#!/usr/bin/env bash
# Weight Recycle on SR (issue 14): SRResNet-16 with ordinary and with recycled residual-block convolutions, and two
# plain controls: half the width (32 channels: every conv weight / 4, 395k params) and the width with the recycled
# model's stored parameters (42 channels: 673k params vs 659k stored). Four jobs in one folder, one report
# (params = stored parameters; MACs are those of the full convolutions, unchanged by recycling). Recycling wins only
# if it beats the controls per parameter.
#
# Default: the embedded photos and the CPU default budget (500 steps; about 3 x 4 minutes on 2 CPU cores):
#   sweeps/recycle_srresnet.sh
# Full (DIV2K at $DIV2K_ROOT, one GPU):
#   sweeps/recycle_srresnet.sh data=div2k trainer=gpu trainer.max_steps=200000 trainer.val_check_interval=5000
# Smoke (a few steps: checks the machinery, not the numbers):
#   sweeps/recycle_srresnet.sh profile=smoke
# env: OUT (default outputs/recycle_srresnet/<time>)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
OUT=${OUT:-outputs/recycle_srresnet/$(date +%Y-%m-%d_%H-%M-%S)}
NOREPORT=hydra.callbacks.sweep_report.enabled=false   # one report over all jobs at the end instead
"$PY" train.py -m name=recycle_srresnet model.conv=normal,recycle hydra.sweep.dir="$OUT" \
  'hydra.sweep.subdir=c64_${model.conv}' "$NOREPORT" "$@"
"$PY" train.py -m name=recycle_srresnet model.channels=32,42 hydra.sweep.dir="$OUT" \
  'hydra.sweep.subdir=c${model.channels}_normal_control' "$NOREPORT" "$@"
"$PY" -m lightning_sr.report "$OUT"
echo "report: $OUT/report.md"
