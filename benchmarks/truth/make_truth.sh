#!/bin/sh
# The committed nb201 MNIST-1D truth (issue 11): 500 cells x 3 training seeds.
exec archrank bench table --space nb201 \
    --dataset mnist1d:num_samples=20000,val_fraction=0.8 --width 16 --depth 1 --epochs 5 \
    --n 500 --sample-seed 0 --train-seeds 0,1,2 --workers 2 \
    --out benchmarks/truth/nb201_mnist1d_w16.csv --json benchmarks/truth/nb201_mnist1d_w16.json
