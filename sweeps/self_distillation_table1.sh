#!/usr/bin/env bash
# Self-distillation, Table 1 (Lee & Park): SRResNet-8 trained alone vs exit 8 of a self-distilled SRResNet-32.
# Two jobs, same data/steps/optimiser (x4, DIV2K, Adam 1e-4, batch 4, 40k steps; Set5/Set14/BSD100/Urban100):
#   0: experiment=self_distillation_baseline  -> SRResNet-8 alone (metrics.json "sets")
#   1: experiment=self_distillation           -> exit8 of SRResNet-32 (metrics.json "exits"/<Set>/exit8)
# Full scale (one GPU; DIV2K in data.root or $DIV2K_ROOT, benchmark sets in $BENCHMARK_ROOT):
#   sweeps/self_distillation_table1.sh
# Smoke (CPU, embedded photos, a few steps; minutes): the same command plus profile=smoke
#   sweeps/self_distillation_table1.sh profile=smoke hydra.sweep.dir=/tmp/sd_table1
# The multirun writes report.md/report.csv (published rows: sweeps/published/self_distillation_table1.yaml)
# into outputs/self_distillation_table1/multiruns/<time>/ when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
exec "$PY" train.py -m experiment=self_distillation_baseline,self_distillation \
  name=self_distillation_table1 "$@"
