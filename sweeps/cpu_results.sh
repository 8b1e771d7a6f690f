#!/usr/bin/env bash
# The research questions on real data, on a 2-core CPU (issue 22; plan, budgets and answers: docs/results.md).
# Every technique at equal training budgets from converged teachers: x4, trained on T91, validated on Set5, and
# evaluated at the end on the benchmark sets that are prepared (Set14/BSD100/Urban100 via lsr-data) plus Photos8
# (the 8 scikit-image photographs, none of them in T91). One training at a time; every job is its own folder under
# $OUT/<question>/<job>, so the same command again skips finished jobs and resumes an interrupted one from its
# last.ckpt (train.py does both). The reports (report.md/.csv/.html per comparison, paired bootstrap over images
# and seeds) are built at the end of each question and gathered into $OUT/results.md.
#
# usage: sweeps/cpu_results.sh [smoke] [QUESTION ...]        QUESTION: teacher q2 q3 q4 q5 q6 q7 q8 q9 report
#   sweeps/cpu_results.sh                  # everything (about 8 hours of a 2-core CPU), resumable
#   sweeps/cpu_results.sh teacher q2       # only these parts (a question's teacher jobs run first when missing)
#   sweeps/cpu_results.sh smoke            # the same jobs at toy budgets on the embedded photos (minutes; tested)
# env: OUT (default outputs/cpu_results, smoke: outputs/cpu_results_smoke), DATA (T91/ and Set5/ root; default: the
#      t91 preset's), SEEDS (default "0 1"), NICE (default 10: the background niceness), PYTHON
# The whole script is one function, parsed before it runs: editing this file never changes a driver that is running.
main() {
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python

SMOKE=0
if [[ "${1:-}" == "smoke" ]]; then SMOKE=1; shift; fi
PARTS=("$@")
[[ ${#PARTS[@]} -eq 0 ]] && PARTS=(teacher q2 q3 q4 q5 q6 q7 q8 q9 report)

SEEDS=${SEEDS:-"0 1"}   # a third seed where a question's interval still contains 0: SEEDS="0 1 2"
if [[ $SMOKE == 1 ]]; then
  OUT=${OUT:-outputs/cpu_results_smoke}
  # toy budgets: the same jobs and flags, a handful of steps, narrow models, the embedded photos
  T_STEPS=8; FT=6; C=8; SC=4; VAL=4; G_T=4; GS=12; V_T=4; V_FT=4
  BASE=(model=srresnet data=embedded profile=smoke "model.channels=$C" data.patch_size=24 data.batch_size=2
        data.val_max_images=1 cost.latency=false)
  SEEDS=${SMOKE_SEEDS:-"0 1"}
else
  OUT=${OUT:-outputs/cpu_results}
  # budgets (docs/results.md "Plan"): teacher 8000 steps (1.6x the 5000-step T91 recipe); every compressed job
  # fine-tunes FT steps; a from-scratch job trains T_STEPS + FT steps (the same total as teacher + fine-tune)
  T_STEPS=8000; FT=1500; C=64; SC=32; VAL=500; G_T=2000; GS=1500; V_T=2000; V_FT=500
  BASE=(experiment=t91_x4_cpu)
  [[ -n "${DATA:-}" ]] && BASE+=("data.root=$DATA")
fi
NICE=${NICE:-10}
ALEXNET=${ALEXNET:-$(cd ../shared/weights 2>/dev/null && pwd || true)/alexnet_features_imagenet.pth}
mkdir -p "$OUT"
LEDGER=$OUT/ledger.tsv
[[ -f $LEDGER ]] || printf 'job\tstatus\tstart_utc\tend_utc\twall_s\thost\tcpu\n' > "$LEDGER"
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)

# ----- evaluation sets: Photos8 (+ the prepared benchmarks), written into $OUT once ---------------------------------
BENCH=$OUT/benchmarks BENCH_ON=1
prepare_bench() {
  [[ -f $BENCH/Photos8/.done ]] && return
  "$PY" - "$BENCH" "$SMOKE" <<'EOF'
import shutil, sys
from pathlib import Path
from lightning_sr.data.embedded import materialize
out = Path(sys.argv[1]) / "Photos8" / "HR"
out.mkdir(parents=True, exist_ok=True)
files = sorted(f for folder in materialize().values() for f in folder.glob("*.png"))
if sys.argv[2] == "1":  # smoke: two small photographs
    files = [f for f in files if f.stem in ("astronaut", "coffee")]
for f in files:
    shutil.copyfile(f, out / f.name)
(out.parent / ".done").write_text("the 8 scikit-image photographs (lightning_sr.data.embedded), none in T91\n")
EOF
}
bench_sets() {  # the sets under $BENCH, Photos8 first
  local sets=(Photos8) root
  root=${DATA:-../shared/data}
  for s in Set14 BSD100 Urban100; do
    if [[ -d $root/$s && ! -e $BENCH/$s ]]; then ln -s "$(cd "$root/$s" && pwd)" "$BENCH/$s"; fi
    [[ -d $BENCH/$s ]] && sets+=("$s")
  done
  local IFS=,; echo "[${sets[*]}]"
}

# ledger_row JOB RC START_UTC START_EPOCH: one line of the ledger
ledger_row() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$([[ $2 == 0 ]] && echo ok || echo "exit $2")" "$3" \
    "$(date -u +%FT%TZ)" "$(( $(date +%s) - $4 ))" "$(hostname)" "$CPU" >> "$LEDGER"
}
# a job folder whose metrics.json says it finished (a failed job's metrics.json says "failed": it runs again)
finished() { [[ -f $1/metrics.json ]] && grep -q '"status": *"finished"' "$1/metrics.json"; }

# ----- one job: skipped when finished, resumed when interrupted, logged in the ledger --------------------------------
# job QUESTION/NAME overrides...
job() {
  local rel=$1; shift
  local dir=$OUT/$rel
  if finished "$dir"; then echo "[cpu_results] done: $rel"; return 0; fi
  echo "[cpu_results] run:  $rel"
  local t0 s0 rc=0
  t0=$(date -u +%FT%TZ); s0=$(date +%s)
  local extra=()
  [[ $BENCH_ON == 1 ]] && extra=(data.benchmark_root="$BENCH" "data.benchmark_sets=$(bench_sets)")
  nice -n "$NICE" "$PY" train.py "${BASE[@]}" name=cpu_results logger=csv trainer.val_check_interval=$VAL \
    "${extra[@]}" hydra.run.dir="$dir" "$@" || rc=$?
  ledger_row "$rel" $rc "$t0" "$s0"
  return $rc
}
# an evaluation job (evaluate.py: the same sets, per_image.csv for paired differences): ejob QUESTION/NAME CKPT overrides...
ejob() {
  local rel=$1 ckpt=$2; shift 2
  local dir=$OUT/$rel
  if finished "$dir"; then echo "[cpu_results] done: $rel"; return 0; fi
  [[ -f $ckpt ]] || { echo "[cpu_results] $rel: $ckpt not there yet; skipped"; return 0; }
  ckpt=$(cd "$(dirname "$ckpt")" && pwd)/$(basename "$ckpt")  # absolute: the report charges its run's budget
  echo "[cpu_results] eval: $rel"
  local ebase=(data=t91) t0 s0 rc=0
  [[ $SMOKE == 1 ]] && ebase=(data=embedded data.val_max_images=1 cost.latency=false)
  [[ -n "${DATA:-}" && $SMOKE == 0 ]] && ebase+=("data.root=$DATA")
  [[ -f $ALEXNET ]] && ebase+=(metrics.lpips.enabled=true "metrics.lpips.backbone_path=$ALEXNET")
  t0=$(date -u +%FT%TZ); s0=$(date +%s)
  nice -n "$NICE" "$PY" evaluate.py "${ebase[@]}" "ckpt_path=$ckpt" progress_bar=false data.benchmark_root="$BENCH" \
    "data.benchmark_sets=$(bench_sets)" hydra.run.dir="$dir" "$@" || rc=$?
  ledger_row "$rel" $rc "$t0" "$s0"
  return $rc
}
vjob() {  # a video job: the image benchmark sets do not apply
  local saved_bench=$BENCH_ON; BENCH_ON=0; local rc=0; job "$@" || rc=$?; BENCH_ON=$saved_bench; return $rc
}
# a report over some job folders: report DEST REFERENCE JOB... (job folders are linked into DEST)
report() {
  local dest=$OUT/reports/$1 ref=$2 name=$1; shift 2
  for j in "$@"; do
    finished "$OUT/$j" || { echo "[cpu_results] report $name: $j not finished; skipped"; return 0; }
  done
  mkdir -p "$dest"
  find "$dest" -maxdepth 1 -type l -delete  # this comparison's jobs only (not those of an earlier version)
  for j in "$@"; do ln -sfn "$(cd "$OUT/$j" && pwd)" "$dest/$(echo "$j" | tr / _)"; done
  "$PY" -m lightning_sr.report "$dest" --reference "$ref"
  # the rows' CPU latency side by side in one process (per-job latencies were measured at different loads): once
  # per set of jobs; a failure is reported and the programme goes on
  if [[ ! -f $dest/latency.csv || "$(cat "$dest/.latency_jobs" 2>/dev/null)" != "$*" ]]; then
    if nice -n "$NICE" "$PY" -m lightning_sr.report.latency "$dest" --reference "$ref" \
         --rounds "$([[ $SMOKE == 1 ]] && echo 3 || echo 20)"; then
      echo "$*" > "$dest/.latency_jobs"
    else
      rm -f "$dest/latency.csv"; echo "[cpu_results] report $name: latency side by side failed; table without it"
    fi
  fi
}
teacher_ckpt() { echo "$OUT/teacher/s$1/checkpoints/last.ckpt"; }

# ----- 1. teachers: SRResNet-16/64, one per seed ------------------------------------------------------------------
# Jobs of several seeds that differ only by seed are one report row: their teacher is named through ${seed} (the
# override is stored as written), so model.init_from / distill.teacher are the same text for every seed.
TEACHER='model.init_from='"$(cd "$OUT" && pwd)"'/teacher/s${seed}/checkpoints/last.ckpt'
TEACHER_KD='compression.distill.teacher='"$(cd "$OUT" && pwd)"'/teacher/s${seed}/checkpoints/last.ckpt'
need_teacher() { for s in "$@"; do job "teacher/s$s" seed="$s" model.res_blocks=16 trainer.max_steps=$T_STEPS; done; }
run_teacher() { need_teacher $SEEDS; }

# ----- 2. layer pruning (seed 0): 16 -> 8 / 4 blocks + fine-tune vs the same depth from scratch ---------------------
run_q2() {
  need_teacher 0
  for k in 8 4; do
    job "q2/pruned$k/s0" name="pruned$k" seed=0 "$TEACHER" compression=block_prune compression.block_prune.keep=$k \
      trainer.max_steps=$FT
    job "q2/scratch$k/s0" name="scratch$k" seed=0 model.res_blocks=$k trainer.max_steps=$((T_STEPS + FT))
  done
  for k in 8 4; do report "q2_depth$k" "name=scratch$k" "q2/pruned$k/s0" "q2/scratch$k/s0"; done
}

# ----- 3. channel compression to 50 % / 25 % of the MACs ------------------------------------------------------------
# uniform: L1 channel pruning, every layer at one ratio, the trunk width included (protect=[tail]); ratio 0.30 ->
#          0.498x MACs, 0.52 -> 0.249x (SRResNet-16/64, lightning_sr.cost.count_macs), then FT steps of fine-tuning;
# learned: channel gates (proximal, GAN Slimming's optimiser) for FT/2 steps, the smallest gates removed down to the
#          MAC target, fine-tuned for the other FT/2 steps (the same FT steps in all);
# scratch: the uniform shape from random weights (channel_prune at step 0, no init_from), T_STEPS + FT steps.
Q3_SEEDS=${Q3_SEEDS:-$SEEDS}
declare -A RATIO=([50]=0.30 [25]=0.52) TARGET=([50]=0.5 [25]=0.25)
uniform() {  # uniform PCT: the overrides of the uniform pruning at PCT % MACs
  echo compression=channel_prune compression.channel_prune.ratio=${RATIO[$1]} compression.channel_prune.importance=l1 \
    'compression.channel_prune.protect=[tail]'
}
run_q3() {
  need_teacher $Q3_SEEDS
  for s in $Q3_SEEDS; do
    for pct in 50 25; do
      # shellcheck disable=SC2046
      job "q3/uniform$pct/s$s" name="uniform$pct" seed=$s "$TEACHER" $(uniform $pct) trainer.max_steps=$FT
      job "q3/learned$pct/s$s" name="learned$pct" seed=$s "$TEACHER" compression=channel_sparsity \
        compression.channel_sparsity.target_macs=${TARGET[$pct]} compression.channel_sparsity.prune_at_step=$((FT / 2)) \
        trainer.max_steps=$FT
      # shellcheck disable=SC2046
      job "q3/scratch$pct/s$s" name="scratch_uniform$pct" seed=$s $(uniform $pct) trainer.max_steps=$((T_STEPS + FT))
    done
  done
  # a diagnostic (seed 0): the learned gates with a shorter gating phase (FT/6 steps, then 5 FT/6 of fine-tuning):
  # does the learned route lose to uniform pruning by its structure or by the fine-tuning steps its gating took?
  for pct in 50 25; do
    job "q3/learned${pct}_early/s0" name="learned${pct}_early" seed=0 "$TEACHER" compression=channel_sparsity \
      compression.channel_sparsity.target_macs=${TARGET[$pct]} compression.channel_sparsity.prune_at_step=$((FT / 6)) \
      trainer.max_steps=$FT
  done
  for pct in 50 25; do
    report "q3_macs$pct" "name=uniform$pct" $(for s in $Q3_SEEDS; do
      echo "q3/uniform$pct/s$s q3/learned$pct/s$s q3/scratch$pct/s$s"; done) "q3/learned${pct}_early/s0"
  done
}

# ----- 4. distillation into the 50 % student; teacher size -----------------------------------------------------------
# The student: q3's uniform 50 % model (pruned at step 0 from the teacher), fine-tuned FT steps with the ground-truth
# loss plus one distillation term from its own (converged) teacher: output L1, trunk features (1x1 adapter), or FAKD
# (spatial affinity at blocks 7 and 15). No KD = q3/uniform50 (the same steps and data order).
# Teacher size (seed 0): SRResNet-8/16/32 (width SC) teachers trained T_STEPS/2 steps; an SRResNet-4/SC student
# trained 2 FT steps from scratch with output KD from each, vs the same student without KD.
Q4_SEEDS=${Q4_SEEDS:-$SEEDS}
run_q4() {
  need_teacher $Q4_SEEDS
  for s in $Q4_SEEDS; do
    # shellcheck disable=SC2046
    job "q3/uniform50/s$s" name="uniform50" seed=$s "$TEACHER" $(uniform 50) trainer.max_steps=$FT
    local student=("$TEACHER" compression=[channel_prune,distill] compression.channel_prune.ratio=${RATIO[50]}
                   compression.channel_prune.importance=l1 'compression.channel_prune.protect=[tail]' "$TEACHER_KD"
                   trainer.max_steps=$FT)
    job "q4/kd_output/s$s" name=kd_output seed=$s "${student[@]}"
    job "q4/kd_feature/s$s" name=kd_feature seed=$s "${student[@]}" compression.distill.output_weight=0 \
      'compression.distill.features=[{student:body_tail.0,teacher:body_tail.0}]'
    job "q4/kd_fakd/s$s" name=kd_fakd seed=$s "${student[@]}" compression.distill.output_weight=0 \
      'compression.distill.fakd=[{student:body.7,teacher:body.7},{student:body.15,teacher:body.15}]'
  done
  report q4_kd name=uniform50 $(for s in $Q4_SEEDS; do echo "q3/uniform50/s$s q4/kd_output/s$s q4/kd_feature/s$s q4/kd_fakd/s$s"; done)
  local half=$((T_STEPS / 2)) small=("model.channels=$SC" model.res_blocks=4 trainer.max_steps=$((2 * FT)))
  job q4/student_nokd/s0 name=student4_nokd seed=0 "${small[@]}"
  for b in 8 16 32; do
    job "q4/teacher$b/s0" name="teacher$b" seed=0 "model.channels=$SC" model.res_blocks=$b trainer.max_steps=$half
    job "q4/student_kd$b/s0" name="student4_kd_teacher$b" seed=0 "${small[@]}" compression=distill \
      "compression.distill.teacher=$(cd "$OUT" && pwd)/q4/teacher$b/s0/checkpoints/last.ckpt"
  done
  report q4_teacher_size name=student4_nokd q4/student_nokd/s0 q4/student_kd8/s0 q4/student_kd16/s0 q4/student_kd32/s0
}

# ----- 5. self-distillation (seed 2): exit 8 of SRResNet-32/SC (9:1) vs SRResNet-8/SC alone, the same steps ----------
# Both networks train with the recipe of every other question (model=srresnet's blocks: no batch norm, bicubic skip;
# Adam 2e-4, betas 0.9/0.99, cosine), so that the two differ only by self-distillation; model=multi_exit's own
# defaults (the paper's: batch norm, no skip, Adam 1e-4, constant) would change five things at once.
Q5_RECIPE=(model.norm=none model.skip=bicubic model.optim.lr=2.0e-4 'model.optim.betas=[0.9,0.99]'
           model.scheduler.name=cosine)
run_q5() {
  local half=$((T_STEPS / 2))
  job q5/multi_exit32/s2 name=multi_exit32 seed=2 model=multi_exit model.res_blocks=32 "model.channels=$SC" \
    'model.exits=[8]' model.alpha=0.1 "${Q5_RECIPE[@]}" trainer.max_steps=$half
  job q5/alone8/s2 name=alone8 seed=2 model.res_blocks=8 "model.channels=$SC" trainer.max_steps=$half
  # exit 8 as the standalone SRResNet-8 it becomes (lightning_sr.export exit=8, written beside the job's last.ckpt),
  # evaluated alike with SRResNet-8 alone: the report compares the exit, not the 32-block network's main output
  local me=$OUT/q5/multi_exit32/s2/checkpoints
  if finished "$OUT/q5/multi_exit32/s2" && [[ ! -f $me/last_exit8.ckpt ]]; then
    "$PY" -m lightning_sr.export "ckpt_path=$me/last.ckpt" exit=8
  fi
  ejob q5/eval_exit8_of_32 "$me/last_exit8.ckpt" name=exit8_of_32
  ejob q5/eval_alone8 "$OUT/q5/alone8/s2/checkpoints/last.ckpt" name=alone8
  report q5_self_distillation name=alone8 q5/eval_exit8_of_32 q5/eval_alone8
}

# ----- 6. int8 (seed 0): PTQ and QAT of the teacher and of the 50 % student --------------------------------------------
run_q6() {
  need_teacher 0
  local studs=$(cd "$OUT" && pwd)/q3/uniform50/s0/checkpoints/last.ckpt
  job q6/teacher_ptq/s0 name=teacher_ptq seed=0 "$TEACHER" compression=ptq
  job q6/teacher_qat/s0 name=teacher_qat seed=0 "$TEACHER" compression=qat trainer.max_steps=$((FT / 3))
  # the 50 % student: q3's job (the same folder and command; it runs here when q3 has not)
  # shellcheck disable=SC2046
  job q3/uniform50/s0 name=uniform50 seed=0 "$TEACHER" $(uniform 50) trainer.max_steps=$FT
  job q6/student_ptq/s0 name=student_ptq seed=0 "model.init_from=$studs" compression=ptq
  job q6/student_qat/s0 name=student_qat seed=0 "model.init_from=$studs" compression=qat trainer.max_steps=$((FT / 3))
  # the int8 programs and their fp32 models evaluated alike (per image, compiled int8 latency beside fp32)
  local m
  for m in teacher student; do
    ejob "q6/eval_${m}_fp32" "$([[ $m == teacher ]] && teacher_ckpt 0 || echo "$studs")" name="${m}_fp32"
    ejob "q6/eval_${m}_ptq" "$OUT/q6/${m}_ptq/s0/checkpoints/int8.pt2" name="${m}_ptq_int8"
    ejob "q6/eval_${m}_qat" "$OUT/q6/${m}_qat/s0/checkpoints/int8.pt2" name="${m}_qat_int8"
    report "q6_int8_$m" "name=${m}_fp32" "q6/eval_${m}_fp32" "q6/eval_${m}_ptq" "q6/eval_${m}_qat"
  done
}

# ----- 7. GAN Slimming (seed 3) ------------------------------------------------------------------------------------
# The SRGAN teacher: SRGAN (pixel L1 + adversarial; no VGG19 perceptual term: its ImageNet weights cannot be fetched
# here) fine-tuned G_T optimiser steps from the seed-0 SRResNet teacher. Then, at GS optimiser steps each (SRGAN makes
# 2 per batch), all to the same MAC budget (target_macs 0.5):
#   one run:    experiment=gan_slimming: distillation + channel gates + fake quantization from step 0, int8 at the end
#   sequential: gates + removal (GS/3) -> distillation of the slim model (GS/3) -> QAT (GS/3), int8 at the end
GAN=(model.pixel_weight=1.0 model.perceptual.weight=0)
with_base() {  # with_base "BASE words" job ...: one job with another base config
  local saved=("${BASE[@]}"); read -r -a BASE <<< "$1"; shift
  local rc=0; "$@" || rc=$?; BASE=("${saved[@]}"); return $rc
}
run_q7() {
  need_teacher 0
  local abs gbase gsbase; abs=$(cd "$OUT" && pwd)
  if [[ $SMOKE == 1 ]]; then gbase="model=srgan data=embedded profile=smoke model.channels=$C data.patch_size=32 data.batch_size=2 data.val_max_images=1 cost.latency=false"
    gsbase="experiment=gan_slimming data=embedded trainer=default profile=smoke model.channels=$C data.patch_size=32 data.batch_size=2 data.val_max_images=1 cost.latency=false"
  else gbase="model=srgan data=t91 trainer=default"; gsbase="experiment=gan_slimming data=t91 trainer=default"
    [[ -n "${DATA:-}" ]] && { gbase+=" data.root=$DATA"; gsbase+=" data.root=$DATA"; }; fi
  local gt=$abs/q7/srgan_teacher/s3/checkpoints/last.ckpt third=$((GS / 3))
  with_base "$gbase" job q7/srgan_teacher/s3 name=srgan_teacher seed=3 "model.init_from=$abs/teacher/s0/checkpoints/last.ckpt" \
    "${GAN[@]}" trainer.max_steps=$G_T
  with_base "$gsbase" job q7/one_run/s3 name=gs_one_run seed=3 "compression.distill.teacher=$gt" "${GAN[@]}" \
    compression.channel_sparsity.target_macs=0.5 trainer.max_steps=$GS
  with_base "$gbase" job q7/seq1_prune/s3 name=gs_seq1_prune seed=3 "model.init_from=$gt" "${GAN[@]}" \
    compression=channel_sparsity compression.channel_sparsity.target_macs=0.5 trainer.max_steps=$third
  with_base "$gbase" job q7/seq2_distill/s3 name=gs_seq2_distill seed=3 \
    "model.init_from=$abs/q7/seq1_prune/s3/checkpoints/last.ckpt" "${GAN[@]}" compression=distill \
    "compression.distill.teacher=$gt" 'compression.distill.features=[{student:body_tail.0,teacher:body_tail.0}]' \
    trainer.max_steps=$third
  with_base "$gbase" job q7/seq3_qat/s3 name=gs_sequential seed=3 \
    "model.init_from=$abs/q7/seq2_distill/s3/checkpoints/last.ckpt" "${GAN[@]}" compression=qat trainer.max_steps=$third
  # the deployed models (int8) and the teacher, evaluated alike (PSNR, SSIM, LPIPS per image)
  ejob q7/eval_teacher "$gt" name=gs_teacher
  ejob q7/eval_one_run "$OUT/q7/one_run/s3/checkpoints/int8.pt2" name=gs_one_run_int8
  ejob q7/eval_sequential "$OUT/q7/seq3_qat/s3/checkpoints/int8.pt2" name=gs_sequential_int8
  report q7_gan_slimming name=gs_teacher q7/eval_teacher q7/eval_one_run q7/eval_sequential
}

# ----- 8. Weight Recycle (seed 4): recycled SRResNet-16/SC vs dense vs the plain model of the same stored size -------
run_q8() {
  local half=$((T_STEPS / 2))
  job q8/recycled/s4 name=recycled seed=4 model.conv=recycle "model.channels=$SC" trainer.max_steps=$half
  job q8/dense/s4 name=dense seed=4 "model.channels=$SC" trainer.max_steps=$half
  job q8/same_params/s4 name=same_stored_params seed=4 "model.channels=$((SC / 2))" trainer.max_steps=$half
  report q8_recycle name=dense q8/recycled/s4 q8/dense/s4 q8/same_params/s4
}

# ----- 9. video (seed 1): FRVSR-10/64 on the embedded clips, SRNet blocks 10 -> 5 -> 1 + fine-tune vs scratch --------
# evaluated at the end on Vid4 calendar (official BD frames; PSNR, LPIPS, tOF, tLP100). REDS training needs a GPU.
run_q9() {
  local abs vbase vid4 w; abs=$(cd "$OUT" && pwd)
  vid4=${VID4:-$(cd ../shared/data/Vid4 2>/dev/null && pwd || true)}
  w=$ALEXNET
  vbase="model=frvsr data=embedded_video"
  [[ $SMOKE == 1 ]] && vbase+=" profile=smoke model.channels=$C data.val_max_clips=1 cost.latency=false"
  if [[ -n $vid4 && -f $w ]]; then vbase+=" data.test_root=$vid4 metrics.lpips.enabled=true metrics.lpips.backbone_path=$w"
  else echo "[cpu_results] q9: Vid4 (VID4=) or the AlexNet weights (ALEXNET=) missing: embedded clips only"; fi
  local dense=$abs/q9/dense10/s1/checkpoints/last.ckpt
  # BENCH/bench_sets are image sets: video jobs get none (empty list)
  with_base "$vbase" vjob q9/dense10/s1 name=frvsr_dense10 seed=1 trainer.max_steps=$V_T
  for k in 5 1; do
    with_base "$vbase" vjob "q9/pruned$k/s1" name="frvsr_pruned$k" seed=1 "model.init_from=$dense" \
      compression=block_prune compression.block_prune.keep=$k trainer.max_steps=$V_FT
    with_base "$vbase" vjob "q9/scratch$k/s1" name="frvsr_scratch$k" seed=1 model.res_blocks=$k \
      trainer.max_steps=$((V_T + V_FT))
  done
  for k in 5 1; do report "q9_blocks$k" "name=frvsr_scratch$k" "q9/pruned$k/s1" "q9/scratch$k/s1"; done
}

# ----- report: docs/results.md's marked tables filled from the reports (into $OUT/results.md; DOC=FILE: that file) --
run_report() {
  local doc=${DOC:-$OUT/results.md}
  [[ -n "${DOC:-}" ]] || cp docs/results.md "$doc"
  "$PY" -m lightning_sr.report.results_doc "$doc" "$OUT/reports"
}

has() { local p; for p in "${PARTS[@]}"; do [[ $p == "$1" ]] && return 0; done; return 1; }
prepare_bench
has teacher && run_teacher
for q in q2 q3 q4 q5 q6 q7 q8 q9 report; do
  if has $q; then "run_$q"; fi
done
echo "[cpu_results] finished: ${PARTS[*]} (ledger: $LEDGER)"
}
main "$@"
