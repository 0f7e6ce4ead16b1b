#!/bin/sh
# The committed 10-seed nb201 MNIST-1D truth (sessions 16-17): the same 500 cells as
# nb201_mnist1d_w16.csv, trained with seeds 0-9. Its seeds 0-5 are taken from the 6-seed
# table (--from), so only seeds 6-9 train (2,000 trainings, about 3.6 s each on one core).
exec archrank bench table --space nb201 \
    --dataset mnist1d:num_samples=20000,val_fraction=0.8 --width 16 --depth 1 --epochs 5 \
    --n 500 --sample-seed 0 --train-seeds 0,1,2,3,4,5,6,7,8,9 \
    --from benchmarks/truth/nb201_mnist1d_w16_s6.csv --workers 2 \
    --out benchmarks/truth/nb201_mnist1d_w16_s10.csv --json benchmarks/truth/nb201_mnist1d_w16_s10.json
