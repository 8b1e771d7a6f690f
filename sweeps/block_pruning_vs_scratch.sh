#!/usr/bin/env bash
# Block pruning + fine-tuning vs the same small SRResNet trained from scratch (x4; SRGAN seeds: 16 -> 8/4 blocks).
#   1. dense:   SRResNet-16                                   -> $OUT/dense16/checkpoints/last.ckpt
#   2. pruned:  keep 8 / 4 of its blocks, then fine-tune      -> $OUT/pruned_keep8, $OUT/pruned_keep4
#        train.py -m compression=block_prune compression.block_prune.keep=8,4 model.init_from=$OUT/dense16/...
#   3. scratch: SRResNet-8 / 4 from random initialisation     -> $OUT/scratch8, $OUT/scratch4
#        train.py -m model.res_blocks=8,4
# Steps 2 and 3 use the same data, optimiser and number of steps (fine-tuning = training from scratch in length).
# All jobs are folders of $OUT, so one report compares them (metrics.json "compression" holds the PSNR of each
# pruned model before and right after pruning; "psnr" is after fine-tuning):
#   python -m lightning_sr.report $OUT
#
# Full (one GPU; default data = embedded photos, add e.g. data=div2k):
#   sweeps/block_pruning_vs_scratch.sh
# Smoke (CPU, embedded photos, a few steps each, a few minutes in all): checks the machinery, not the numbers
#   sweeps/block_pruning_vs_scratch.sh smoke
#
# usage: sweeps/block_pruning_vs_scratch.sh [smoke] [more Hydra overrides for every job, e.g. data=div2k]
# env:   OUT (default outputs/block_pruning_vs_scratch/<time>), KEEP (default 8,4), CRITERION (default last;
#        l1 or output_delta, or several: last,output_delta), DENSE (an existing 16-block checkpoint: skips step 1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
if [[ "${1:-}" == "smoke" ]]; then shift; set -- profile=smoke "$@"; fi
OUT=${OUT:-outputs/block_pruning_vs_scratch/$(date +%Y-%m-%d_%H-%M-%S)}
KEEP=${KEEP:-8,4}
CRITERION=${CRITERION:-last}
NOREPORT=hydra.callbacks.sweep_report.enabled=false   # one report over all jobs at the end instead

if [[ -z "${DENSE:-}" ]]; then
  "$PY" train.py name=block_pruning_vs_scratch model.res_blocks=16 hydra.run.dir="$OUT/dense16" "$@"
  DENSE=$OUT/dense16/checkpoints/last.ckpt
fi
"$PY" train.py -m name=block_pruning_vs_scratch compression=block_prune model.init_from="$DENSE" \
  compression.block_prune.keep="$KEEP" compression.block_prune.criterion="$CRITERION" \
  hydra.sweep.dir="$OUT" 'hydra.sweep.subdir=pruned_keep${compression.block_prune.keep}_${compression.block_prune.criterion}' \
  "$NOREPORT" "$@"
"$PY" train.py -m name=block_pruning_vs_scratch model.res_blocks="$KEEP" \
  hydra.sweep.dir="$OUT" 'hydra.sweep.subdir=scratch${model.res_blocks}' "$NOREPORT" "$@"
"$PY" -m lightning_sr.report "$OUT"
