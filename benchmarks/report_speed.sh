#!/usr/bin/env bash
# Wall time of `archrank report` on 20 run directories of 150 evaluations each (10 random, 10
# regularized evolution, nb201.csv) plus a predictor benchmark JSON: the whole command, Python
# start-up and imports included, 3 repeats.
#   benchmarks/report_speed.sh [WORK_DIR] [PREDICTOR_JSON]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${1:-$(mktemp -d)}
PRED=${2:-$WORK/predictors.json}
COMMON=(--space nb201 --bench ../shared/data/nb201.csv --metric cifar10_test)
mkdir -p "$WORK/runs"
for strategy in random rea; do
  for seed in $(seq 0 9); do
    [ -f "$WORK/runs/$strategy-$seed/run.sqlite" ] ||
      "$BIN/archrank" search "${COMMON[@]}" --strategy "$strategy" --budget 150 --seed "$seed" \
        --run-dir "$WORK/runs/$strategy-$seed" > /dev/null 2>&1
  done
done
[ -f "$PRED" ] ||
  "$BIN/archrank" bench predictor "${COMMON[@]}" --predictors mlp,xgb,rf \
    --train-sizes 50,100,200 --seeds 3 --json "$PRED" > /dev/null 2>&1
echo "machine: $(nproc) cores; $(uptime)"
for i in 1 2 3; do
  TIMEFORMAT="run $i: %R s wall, %U s user, %S s system"
  time "$BIN/archrank" report "$WORK"/runs/* "$PRED" --out "$WORK/report.html"
done
