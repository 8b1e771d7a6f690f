#!/usr/bin/env bash
# TecoGAN structured pruning the paper's way (001_7e75d2e60180182f.txt): train, prune, fine-tune.
#   1. FRVSR-10 (PSNR stage)                                    -> $OUT/frvsr10
#   2. TecoGAN-10 initialised from it                           -> $OUT/tecogan10   (the "vanilla" row)
#   3. keep 7/5/3/1 of TecoGAN-10's SRNet blocks, fine-tune     -> $OUT/keep7 ... $OUT/keep1
#   4. one report beside the published Table 3                  -> $OUT/report.md
# Full (one GPU, REDS at $REDS_ROOT, Vid4 at $VID4_ROOT, the AlexNet weights for LPIPS):
#   sweeps/tecogan_block_pruning.sh
# Smoke (CPU, embedded clips, a few steps each): sweeps/tecogan_block_pruning.sh smoke
# usage: sweeps/tecogan_block_pruning.sh [smoke] [more Hydra overrides for every job]
# env:   OUT (default outputs/tecogan_block_pruning/<time>), KEEP (default 7,5,3,1), FRVSR_STEPS, STEPS
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
if [[ "${1:-}" == "smoke" ]]; then shift; set -- profile=smoke "$@"; SMOKE=1; fi
OUT=${OUT:-outputs/tecogan_block_pruning/$(date +%Y-%m-%d_%H-%M-%S)}
KEEP=${KEEP:-7,5,3,1}
FRVSR_STEPS=${FRVSR_STEPS:-$([[ -n "${SMOKE:-}" ]] && echo 4 || echo 400000)}
NOREPORT=hydra.callbacks.sweep_report.enabled=false

"$PY" train.py experiment=tecogan_block_pruning model=frvsr trainer.max_steps="$FRVSR_STEPS" \
  hydra.run.dir="$OUT/frvsr10" "$@"
"$PY" train.py experiment=tecogan_block_pruning model.init_from="$OUT/frvsr10/checkpoints/last.ckpt" \
  hydra.run.dir="$OUT/tecogan10" "$@"
"$PY" train.py -m experiment=tecogan_block_pruning model.init_from="$OUT/tecogan10/checkpoints/last.ckpt" \
  compression=block_prune compression.block_prune.keep="$KEEP" compression.block_prune.criterion=last \
  hydra.sweeper.params='{}' hydra.sweep.dir="$OUT" 'hydra.sweep.subdir=keep${compression.block_prune.keep}' \
  "$NOREPORT" "$@"
"$PY" -m lightning_sr.report "$OUT" --published tecogan_block_pruning
