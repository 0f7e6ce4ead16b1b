"""Agreement of archrank's zero-cost proxies with the published values of nb201_zc.csv.

Fills the cache for the table's cifar10 cells (``archrank zc --fill --table``: the benchmark
setting, synthetic inputs) and prints, per proxy, how many cells have both values and their
Spearman correlation. docs/benchmarks.md "Agreement with the published values".

    ARCHRANK_CACHE_DIR=/tmp/zc archrank zc --space nb201 --fill \\
        --table "../shared/data/nb201_zc.csv?dataset=cifar10" \\
        --proxies params,flops,synflow,nwot,jacov,snip,grad_norm
    ARCHRANK_CACHE_DIR=/tmp/zc python benchmarks/zc_agreement.py ../shared/data/nb201_zc.csv
"""

from __future__ import annotations

import csv
import sys

import numpy as np

from archrank.metrics import spearman
from archrank.signals import arch_matrix
from archrank.spaces import get_space

PROXIES = ("params", "flops", "synflow", "nwot", "jacov", "snip", "grad_norm")


def main(path: str) -> None:
    space = get_space("nb201")
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "cifar10"]
    cells = [space.parse(r["arch"]) for r in rows]
    ours = arch_matrix(space, cells, PROXIES)
    for k, name in enumerate(PROXIES):
        published = np.array([float(r[name]) if r[name] not in ("", "nan") else np.nan
                              for r in rows])
        both = np.isfinite(published) & np.isfinite(ours[:, k])
        rho = spearman(published[both], ours[both, k])
        print(f"{name:10s} cells {int(both.sum()):4d}  Spearman {rho:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
