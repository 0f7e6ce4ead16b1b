#!/bin/bash
# Device batch: issue-13 predictor/guided measurements (GPU), issue-12 ablations (CPU, 1 thread each).
# Usage: bash .devcarry/run.sh [DEADLINE_S] [SMALL]
DEADLINE=${1:-470}
SMALL=${2:-0}
T0=$(date +%s)
ROOT=$PWD
R=$ROOT/.devres; rm -rf "$R"; mkdir -p "$R"
OUTDIR=${OUT:-$ROOT/.devout}; mkdir -p "$OUTDIR"
if [ -z "$LOCAL" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devcarry/whl/*.whl
  export PYTHONPATH=$ROOT/src:/tmp/site
  PY=python3
else
  export PYTHONPATH=$ROOT/src
  PY=$ROOT/.venv/bin/python
fi
export ARCHRANK_CACHE_DIR=$ROOT/.devcarry/cache OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
D=$ROOT/.devcarry/shared/data
P="$PY -m archrank"
PC="env CUDA_VISIBLE_DEVICES= $PY -m archrank"
{ date; nproc; free -g | head -2; nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1;
  $PY -c "import torch,sys; print(sys.version); print(torch.__version__, torch.cuda.is_available())"; } > "$R/machine.txt" 2>&1

# one chain = one background shell running its commands in order; a command that fails fast on
# the GPU is rerun on the CPU (logged)
chain() {  # name cmd1 ;; cmd2 ...
  local name=$1; shift
  (
    for cmd in "$@"; do
      s=$(date +%s); echo "== $(date +%T) $cmd" >> "$R/$name.log"
      bash -c "$cmd" >> "$R/$name.log" 2>&1; rc=$?
      e=$(( $(date +%s) - s ))
      echo "== rc=$rc in ${e}s" >> "$R/$name.log"
      if [ $rc -ne 0 ] && [ $e -lt 90 ] && [ -z "$NOCPU_RETRY" ]; then
        echo "== retry on CPU" >> "$R/$name.log"
        CUDA_VISIBLE_DEVICES= bash -c "$cmd" >> "$R/$name.log" 2>&1
        echo "== rc=$? (cpu retry)" >> "$R/$name.log"
      fi
    done
  ) &
}

NEW="--set gates++.op_costs=linear --set gates++.op_norm=1 --set gates++.free_scale=1 --set gates++.proj_scale=0"
GNEW="--set gates++.predictor.op_costs=linear --set gates++.predictor.op_norm=1 --set gates++.predictor.free_scale=1 --set gates++.predictor.proj_scale=0"
if [ "$SMALL" = 1 ]; then S5=1; S40=1; S20=1; BUD=20; EP=1; else S5=5; S40=40; S20=20; BUD=150; EP=50; fi
B201="bench predictor --space nb201 --bench $D/nb201.csv --metric cifar10_test"
B101="bench predictor --space nb101 --bench $D/nb101_10k.csv --metric val_acc_108"
AUX="--aux-targets val_acc_4,val_acc_12,val_acc_36"
GS="bench search --space nb201 --bench $D/nb201.csv --metric cifar10_test --budget $BUD --jobs 4"

GB="--set gates++.batch=5"
chain guidedA \
  "$P $GS --strategies gates++ --seeds $S40 $GNEW $GB --set gates++.explore=0.1 --json $R/g2_b5_ex01.json" \
  "$P $GS --strategies gates++ --seeds $S40 $GB --json $R/g2_b5_oldop.json" \
  "$P $GS --strategies gates++ --seeds $S40 $GNEW --set gates++.batch=2 --json $R/g2_b2.json"
chain guidedB \
  "$P $GS --strategies gates++ --seeds $S40 $GNEW $GB --set gates++.n_init=5 --json $R/g2_b5_init5.json" \
  "$P $GS --strategies gates --seeds $S40 --set gates.batch=5 --json $R/g2_gates_b5.json" \
  "$P $GS --strategies gates++ --seeds $S40 $GNEW $GB --set gates++.predictor.ensemble=3 --json $R/g2_b5_ens3.json"

i=0
for job in proxy-darts:0 proxy-darts:1 proxy-darts:2 proxy-ea:0 proxy-ea:1 proxy-ea:2 \
           proxy-darts:3 proxy-darts:4 proxy-ea:3 proxy-ea:4 \
           proxy-darts:sampling=uniform:3 proxy-darts:sampling=uniform:4 \
           proxy-darts:oiw=off:3 proxy-darts:oiw=off:4; do
  spec=${job%:*}; s=${job##*:}
  [ "$SMALL" = 1 ] && [ $s -gt 0 ] && continue
  i=$((i+1))
  NOCPU_RETRY=1 chain "abl$i" \
    "$PC bench oneshot-search --space nb201 --dataset mnist1d:num_samples=20000,val_fraction=0.8 --methods $spec --seeds 1 --first-seed $s --epochs $EP --truth benchmarks/truth/nb201_mnist1d_w16.csv --work-dir /tmp/abl$i --json $R/abl_${i}_${spec//[:=]/_}_s$s.json"
done

# wait until everything is done or the deadline
while [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ]; do
  if [ -z "$(jobs -rp)" ]; then break; fi
  sleep 5
  { date +%T; uptime; } > "$R/load_last.txt"
done
echo "stopped at $(( $(date +%s) - T0 ))s; still running: $(jobs -rp | wc -l)" > "$R/end.txt"
nvidia-smi > "$R/nvidia_end.txt" 2>&1
# keep the newest progress of unfinished ablations: their search logs, not checkpoints
for d in /tmp/abl*; do [ -d "$d" ] && ls -la "$d" > "$R/$(basename $d)_ls.txt" 2>&1; done
tar czf "$OUTDIR/res.tgz" -C "$ROOT" .devres
ls -la "$OUTDIR"
cat "$R/end.txt"; tail -n 3 "$R"/*.log
