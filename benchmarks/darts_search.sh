#!/usr/bin/env bash
# GATES-guided vs random search on the darts space with real training on MNIST-1D
# (width 8, 5 cells, 5 epochs: the darts defaults of archrank.oracles.training), budget 40,
# 2 workers, search seeds 0-2; then the best cell of every search retrained with training
# seeds 0-2 (benchmarks/darts_retrain.py). Every step is resumable: rerun to continue.
# DATA: the MNIST-1D of the documented figures, the small default of the time (3,200 / 800 /
# 1,000 signals); DATA=mnist1d runs on today's default (the truth recipe's data).
set -euo pipefail
OUT=${OUT:-runs/darts}
DATA=${DATA:-mnist1d:num_samples=5000,val_fraction=0.2}
mkdir -p "$OUT"
for seed in 0 1 2; do
  for strategy in gates random; do
    name="$strategy-$seed"
    if [ -f "$OUT/$name.json" ]; then continue; fi
    if [ -d "$OUT/$name" ]; then resume=(--resume "$OUT/$name"); else
      resume=(--space darts --oracle train --dataset "$DATA" --strategy "$strategy" \
              --budget 40 --workers 2 --seed "$seed" --run-dir "$OUT/$name"); fi
    start=$SECONDS
    archrank search "${resume[@]}" --json "$OUT/$name.json"
    echo "$name: $((SECONDS - start)) s wall" | tee -a "$OUT/times.txt"
  done
done
python benchmarks/darts_retrain.py "$OUT"/gates-*.json "$OUT"/random-*.json \
    --train-seeds 0,1,2 --dataset "$DATA" --out "$OUT/retrain.json"
