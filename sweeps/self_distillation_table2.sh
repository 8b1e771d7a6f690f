#!/usr/bin/env bash
# Self-distillation, Table 2 (Lee & Park): exit 8 of self-distilled SRResNet-32/50/100 (teacher-size sweep).
# Three jobs, model.res_blocks=32,50,100 with model.exits=[8] (x4, DIV2K, Adam 1e-4, batch 4, 40k steps;
# Set5/Set14/BSD100/Urban100); the row of each job is metrics.json "exits"/<Set>/exit8.
# The swept values live in conf/experiment/self_distillation_teachers.yaml (hydra.sweeper.params).
# Full scale (one GPU; DIV2K in data.root or $DIV2K_ROOT, benchmark sets in $BENCHMARK_ROOT):
#   sweeps/self_distillation_table2.sh
# Smoke (CPU, embedded photos, a few steps; minutes): the same command plus profile=smoke
#   sweeps/self_distillation_table2.sh profile=smoke hydra.sweep.dir=/tmp/sd_table2
# The multirun writes report.md/report.csv (published rows: sweeps/published/self_distillation_table2.yaml)
# into outputs/self_distillation_teachers/multiruns/<time>/ when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
exec "$PY" train.py -m experiment=self_distillation_teachers "$@"
