"""Each structural signal's Kendall tau against a table's accuracy, and the time to compute
them all for the table's cells in one batched pass. Usage (docs/benchmarks.md, "Structural
signals as arch inputs"):

    python benchmarks/structure_signals.py nb101 ../shared/data/nb101_10k.csv val_acc_108
    python benchmarks/structure_signals.py nb201 ../shared/data/nb201.csv cifar10_test
"""
import sys
import time

import numpy as np
from scipy.stats import kendalltau

from archrank.spaces import get_space
from archrank.structure import structure_matrix, structure_names
from archrank.tables import load_benchmark

space_name, table_path, metric = sys.argv[1:4]
space = get_space(space_name)
table = load_benchmark(table_path, space)
names = structure_names(space)
t0 = time.perf_counter()
signals = structure_matrix(space, table.archs, names)
seconds = time.perf_counter() - t0
y = np.asarray(table.values(metric), dtype=float)
print(f"{len(table.archs):,} cells, {seconds:.3f} s for every structural signal")
for k, name in enumerate(names):
    print(f"{name:24s} Kendall tau {kendalltau(signals[:, k], y)[0]:+.3f}")
