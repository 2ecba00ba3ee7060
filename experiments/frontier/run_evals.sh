#!/usr/bin/env bash
# The legibility frontier on trained toy models, evaluation only (experiments/frontier/README.md):
# every optical-memory model (2.25x: train runs; 1.125x: last checkpoints) read its pages under
# each degradation level, then the 2.25x models under down/up-scaling (the resolution frontier).
# One eval at a time, niced: 200 held-out problems, greedy, the optical loop only.
#   experiments/frontier/run_evals.sh /work/runs/frontier
# Environment: TOY=<dir of the 2.25x runs 0 1 2> COMP=<dir of the 1.125x runs 0 1 2>.
set -u
OUT=${1:?usage: run_evals.sh OUTPUT_ROOT}
TOY=${TOY:-/work/runs/toy/toy}
COMP=${COMP:-/work/runs/comp/toy_compression}
mkdir -p "$OUT"
COMMON=(experiment=toy_eval "output_root=$OUT" "tracking.uri=sqlite:///$OUT/mlflow.db"
        tracking.experiment=toy_frontier progress=false 'loops=[optical]')

one() {  # name, then overrides
  local name=$1; shift
  if [ -f "$OUT/done/$name" ]; then return; fi
  echo "== $name $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  local t0=$(date +%s)
  if nice -n 10 vtc-lab eval "${COMMON[@]}" "run_name=$name" "$@" > "$OUT/logs/$name.log" 2>&1; then
    mkdir -p "$OUT/done"
    echo "$(( $(date +%s) - t0 )) s, load after: $(cut -d' ' -f1-3 /proc/loadavg)" > "$OUT/done/$name"
    grep -E "^(accuracy|read_rate) " "$OUT/logs/$name.log"
  else
    echo "FAILED: see $OUT/logs/$name.log"
  fi
}
optical_225() { one "c2.25-s$1-$2" "train_run=$TOY/$1" "eval_degrade=$2" "${@:3}"; }
optical_1125() {
  one "c1.125-s$1-$2" "checkpoint=$COMP/$1/checkpoints/last.ckpt" renderer=toy_task_wide \
    image_position=after system_prompt=null "eval_degrade=$2" "${@:3}"
}
mkdir -p "$OUT/logs"
# most informative points first (the machine is shared: whatever finishes is reported). Only
# the clean 2.25x runs use all 200 problems; the rest use 100 (benchmark.limit=100, a subset
# of the 200, paired with the clean runs on it): at a load average of ~15 an eval of 200 took
# 6-16 min, and a 2x2 of compression x degradation with 3 seeds comes first.
N100=benchmark.limit=100
for s in 0 1 2; do optical_225 $s none; done
for s in 0 1 2; do optical_225 $s moderate $N100; done
# (the clean 1.125x runs come last: their in-training step-450 evaluation is a fallback
# reference, `summarize.py --reference`, but last.ckpt is a few steps past 450)
for s in 0 1 2; do optical_1125 $s moderate $N100; done
for s in 0 1 2; do optical_225 $s severe $N100; done
for s in 0 1 2; do
  one "c2.25-s$s-down0.5" "train_run=$TOY/$s" eval_degrade=none eval_degrade.downscale=0.5 $N100
done
for s in 0 1 2; do optical_225 $s mild $N100; done
for s in 0 1 2; do
  one "c2.25-s$s-down0.75" "train_run=$TOY/$s" eval_degrade=none eval_degrade.downscale=0.75 $N100
done
for s in 0 1 2; do optical_1125 $s none $N100; done
