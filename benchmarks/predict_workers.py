"""Wall and CPU seconds of one GATES `predict` over many cells with one or two worker threads
(the predictor's `threads`). Usage (docs/benchmarks.md, "Two searches side by side"):

    OMP_NUM_THREADS=1 python benchmarks/predict_workers.py
"""
import time

import numpy as np

from archrank.predictors.base import make_predictor
from archrank.spaces import get_space

for name, n in (("nb101", 100_000), ("nb201", 15_625)):
    space = get_space(name)
    graphs = space.to_graphs(space.sample(n, np.random.default_rng(0)))
    for workers in (1, 2):
        model = make_predictor("gates", space, seed=0, epochs=3, ensemble=1, threads=workers)
        model.fit(graphs[np.arange(100)], np.arange(100.0))
        model.predict(graphs)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(3):
            model.predict(graphs)
        print(f"{name} {n:,} cells, {workers} worker(s): "
              f"{(time.perf_counter() - t0) / 3:.3f} s wall, "
              f"{(time.process_time() - c0) / 3:.3f} s CPU a predict")
