#!/usr/bin/env bash
# The README's report screenshot (docs/report.png) from small real data: a bench search and a
# predictor benchmark on ../shared/data/nb201.csv, four run directories, one report, and a
# headless-Chromium screenshot of its top. About 2 minutes on 2 cores.
#   benchmarks/make_report_screenshot.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=../shared/data/nb201.csv
WORK=${1:-$(mktemp -d)}
COMMON=(--space nb201 --bench "$DATA" --metric cifar10_test)
mkdir -p "$WORK"
for strategy in random rea; do
  for seed in 0 1; do
    [ -f "$WORK/runs/$strategy-$seed/run.sqlite" ] ||
      "$BIN/archrank" search "${COMMON[@]}" --strategy "$strategy" --budget 150 --seed "$seed" \
        --run-dir "$WORK/runs/$strategy-$seed" > /dev/null
  done
done
[ -f "$WORK/search.json" ] ||
  "$BIN/archrank" bench search "${COMMON[@]}" --strategies random,rea,ls --budget 150 \
    --seeds 8 --json "$WORK/search.json" > /dev/null
[ -f "$WORK/predictors.json" ] ||
  "$BIN/archrank" bench predictor "${COMMON[@]}" --predictors mlp,xgb,rf \
    --train-sizes 50,100,200 --seeds 3 --json "$WORK/predictors.json" > /dev/null
"$BIN/archrank" report "$WORK/search.json" "$WORK/predictors.json" "$WORK"/runs/* \
  --title "archrank report: NAS-Bench-201, CIFAR-10" --out "$WORK/report.html"
"$BIN/python" -m archrank.report.browser "$WORK/report.html" docs/report.png 1200 1250
