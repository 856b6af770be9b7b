#!/usr/bin/env bash
# In-distribution success of a finished acceptance grid (scripts/toy_acceptance.sh): every run's
# last adapter evaluated on the task's *training* prompts, with the fixed eval noise and the
# noise-free oracle (`hero-bench evaluate --prompts train`), N jobs at a time.  Base runs hold only
# the pretrained model, so their row is the starting point.  Writes RUN/eval_train.csv next to each
# run's eval.csv (skipped when present); scripts/acceptance_tables.py tabulates them.
#
#   scripts/train_prompt_eval.sh [GRID_DIR] [JOBS]      # defaults: results/acceptance-512, 2
set -euo pipefail
OUT=${1:-results/acceptance-512}
JOBS=${2:-2}
HB=${HERO_BENCH:-hero-bench}
mkdir -p "$OUT/logs"
jobs_file="$OUT/jobs_train_prompts.txt"
: > "$jobs_file"
for run in "$OUT"/runs/toy/*/*/seed*; do
  [ -f "$run/DONE.json" ] || continue
  [ -f "$run/eval_train.csv" ] && continue
  name=$(echo "${run#"$OUT"/runs/toy/}" | tr / -)
  echo "$HB evaluate $run --prompts train --epochs last --threads 1 --quiet > $OUT/logs/train-prompts-$name.log 2>&1" \
       "&& echo done $name" >> "$jobs_file"
done
start=$(date +%s)
xargs -P "$JOBS" -I{} bash -c '{}' < "$jobs_file"
echo "train-prompt evaluation wall time: $(( $(date +%s) - start )) s"
