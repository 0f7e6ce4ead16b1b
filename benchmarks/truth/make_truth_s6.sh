#!/bin/sh
# The committed 6-seed nb201 MNIST-1D truth (session 16): the same 500 cells as
# nb201_mnist1d_w16.csv, trained with seeds 0-5. Its seeds 0-2 are taken from that table
# (--from), so only seeds 3-5 train (1,500 trainings, about 3.6 s each on one core).
exec archrank bench table --space nb201 \
    --dataset mnist1d:num_samples=20000,val_fraction=0.8 --width 16 --depth 1 --epochs 5 \
    --n 500 --sample-seed 0 --train-seeds 0,1,2,3,4,5 \
    --from benchmarks/truth/nb201_mnist1d_w16.csv --workers 2 \
    --out benchmarks/truth/nb201_mnist1d_w16_s6.csv --json benchmarks/truth/nb201_mnist1d_w16_s6.json
