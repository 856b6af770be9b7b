#!/usr/bin/env bash
# The toy tier's acceptance grid (issue 4): every method at a 512-feedback budget on every toy
# task, 3 seeds, run straight from the CLI (no Snakemake), N jobs at a time, then gathered and
# summarised by the same `hero-bench gather` / `hero-bench report` the workflow uses.
#
#   scripts/toy_acceptance.sh [OUT_DIR] [JOBS]        # defaults: results/acceptance-512, 2
#
# Each run: the toy preset (64 images per epoch, D3PO 9 groups of 7), evaluation on 128 held-out
# images at 0, 256 and 512 feedback (and at the budget's last epoch). Runs resume if restarted;
# finished runs (DONE.json) are skipped. Tasks are the outer loop, so an interrupted grid has
# whole tasks (every method and seed) rather than a little of everything. On 2 cores the grid
# takes several hours (D3PO's update dominates; measured figures in docs/methods.md).
set -euo pipefail
OUT=${1:-results/acceptance-512}
JOBS=${2:-2}
SEEDS=${SEEDS:-"0 1 2"}
TASKS=${TASKS:-"anomaly counting rare_binding relation preference safety"}
METHODS=${METHODS:-"d3po hero ddpo base"}
BUDGET=${BUDGET:-512}
HB=${HERO_BENCH:-hero-bench}
mkdir -p "$OUT/logs"
jobs_file="$OUT/jobs.txt"
: > "$jobs_file"
for task in $TASKS; do
  for seed in $SEEDS; do
    for method in $METHODS; do
      run="$OUT/runs/toy/$task/$method/seed$seed"
      echo "$HB train --tier toy --task $task --method $method --seed $seed --budget $BUDGET --out $run" \
           "--threads 1 --quiet --set eval.every_epochs=4 --set eval.n_images=128" \
           "> $OUT/logs/$task-$method-seed$seed.log 2>&1 && echo done $task $method $seed" >> "$jobs_file"
    done
  done
done
start=$(date +%s)
xargs -P "$JOBS" -I{} bash -c '{}' < "$jobs_file"
echo "grid wall time: $(( $(date +%s) - start )) s"
$HB gather --out "$OUT/summary/runs.csv" "$OUT"/runs/toy/*/*/seed*/eval.csv
$HB report --runs "$OUT/summary/runs.csv" --out-dir "$OUT" --budgets 128,256,384,512 --threshold 0.4
