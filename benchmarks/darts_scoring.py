"""Time darts pool building and GATES scoring, and check that scores do not change.

    python benchmarks/darts_scoring.py save DIR    # fit GATES, store model + scores (old code)
    python benchmarks/darts_scoring.py check DIR   # same pool, time it, compare with DIR

The pool is the one of ``archrank bench speed`` (100,000 genotypes, seed 2; GATES fitted on 200
of them with the same synthetic target, 3 ensemble members). ``check`` loads the stored model,
so a change of the code is timed on the very same network and its scores compared with the
stored ones. Prints wall and process CPU seconds and the load average.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from archrank.predictors.base import Predictor, make_predictor
from archrank.spaces import get_space


def main(mode: str, folder: Path, n: int = 100_000) -> None:
    space = get_space("darts")
    rng = np.random.default_rng(2)
    c0, t0 = time.process_time(), time.perf_counter()
    pool = space.sample(n, rng)
    t1 = time.perf_counter()
    hashes = space.hash_many(pool)
    t2 = time.perf_counter()
    graphs = space.to_graphs(pool)
    t3 = time.perf_counter()
    print(f"pool of {n:,}: sample {t1 - t0:.2f}s hash {t2 - t1:.2f}s graphs {t3 - t2:.2f}s "
          f"wall {t3 - t0:.2f}s cpu {time.process_time() - c0:.2f}s")
    if mode == "save":
        folder.mkdir(parents=True, exist_ok=True)
        sep = [space.node_op_names.index(o) for o in ("sep_conv_3x3", "sep_conv_5x5")]
        y = np.isin(graphs.ops[:200, 2:10].numpy(), sep).sum(1) + rng.normal(0, 0.3, 200)
        model = make_predictor("gates", space, seed=0).fit(graphs[:200], y)
        model.save(folder / "model.pt")
        torch.save({"ops": graphs.ops, "adj": graphs.adj, "hashes": hashes},
                   folder / "graphs.pt")
    else:
        ref = torch.load(folder / "graphs.pt")
        same = (torch.equal(ref["ops"], graphs.ops) and torch.equal(ref["adj"], graphs.adj)
                and ref["hashes"] == hashes)
        print("hashes and graph tensors identical to the stored ones:", same)
        model = Predictor.load(folder / "model.pt")
    model.predict(graphs[:1024])  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    scores = model.predict(graphs)
    print(f"score {n:,} ({len(model.models_)} members, {model.hp['threads'] or 'all'} "
          f"threads): wall {time.perf_counter() - t0:.2f}s cpu {time.process_time() - c0:.2f}s"
          f" load {os.getloadavg()[0]:.1f}")
    if mode == "save":
        np.save(folder / "scores.npy", scores)
    else:
        old = np.load(folder / "scores.npy")
        top = (np.argsort(-scores, kind="stable")[:1000]
               == np.argsort(-old, kind="stable")[:1000]).mean()
        print(f"max abs score change {np.abs(scores - old).max():.3g}, "
              f"top-1000 order kept {top:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("save", "check"):
        sys.exit("usage: darts_scoring.py save|check DIR")
    main(sys.argv[1], Path(sys.argv[2]))
