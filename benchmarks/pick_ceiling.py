"""What truth percentile can a pick reach at all? (a measurement script, not a feature)

The one-shot targets judge a method's chosen cell by training it stand-alone with the truth's
recipe and placing the mean of its trainings in the truth's distribution of mean ``val_acc``
(``truth_percentile``). Training noise moves that figure even for a perfect method. This
script measures how far: it takes the truth's K best cells by their mean over the truth's
training seeds (what a method that knew the truth would pick), and K cells drawn at random
from the rest as a control, trains each again with fresh training seeds (default 3,4,5: the
same recipe, data and number of seeds as the truth's own), and reports where the fresh means
land in the truth's distribution, next to where the truth's own seeds put them.

Fresh training seeds may shift every cell's accuracy alike (a seed fixes the data order and
the initialisation of all cells), and so may another machine (a training is reproducible
only with the same floating point: another CPU draws other noise even with the truth's own
seeds), which would move the fresh percentiles of every cell, not only of the best; the
control cells measure that shift (``seed_shift``: the median over them of fresh minus truth
``val_acc``) and the ``*_shift_corrected`` figures take it out. SEEDS may be the truth's own
(``0,1,2``): that is how ``bench oneshot-search`` judges a pick, and ``reproduced`` then says
which share of the trainings gave the truth's value again (1.0 on the truth's machine).
``rotation`` and ``split_half`` are bounds that need no training (``bounds`` computes them
alone, for a truth of any number of seeds), ``truth_seed_means`` the
truth's mean ``val_acc`` per training seed.

    python benchmarks/pick_ceiling.py TRUTH.csv DATASET K WORK_DIR OUT.json [SEEDS [CONTROL]]
    python benchmarks/pick_ceiling.py bounds TRUTH.csv [K]    # no training: rotation, split_half
    # e.g. benchmarks/truth/nb201_mnist1d_w16.csv mnist1d:num_samples=20000,val_fraction=0.8
    #      20 pick-ceiling pick_ceiling.json 3,4,5 60

The trainings are journaled under WORK_DIR (``truth.TruthBuilder``): a killed run continues.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from archrank.bench.common import percentile
from archrank.executors import InlineExecutor
from archrank.oracles.training import TrainingOracle, TrainRecipe
from archrank.truth import TruthBuilder, read_truth


def rotation(per_seed: np.ndarray, k: int) -> dict[str, float]:
    """A bound without training: choose the best cells by the mean of all seeds but one and
    judge them by the left-out seed's percentile among single-seed values, over every
    left-out seed (one seed judges, so this reads lower than a 3-seed judgement)."""
    out: dict[str, float] = {}
    for top in (1, 5, k):
        pct = []
        for j in range(per_seed.shape[1]):
            rest = np.delete(per_seed, j, axis=1)
            for i in np.argsort(-np.nanmean(rest, axis=1), kind="stable")[:top]:
                pct.append(percentile(per_seed[:, j], per_seed[i, j]))
        out[f"top{top}_percentile_mean"] = float(np.mean(pct))
        out[f"top{top}_in_top10pct"] = float(np.mean(np.array(pct) >= 90))
    return out


def split_half(per_seed: np.ndarray, k: int) -> dict[str, float]:
    """A bound without training for a truth of an even number of seeds 2h: choose the best
    cells by the mean of h seeds and judge them by the mean of the other h (their percentile
    among the other half's means), over every split of the seeds into halves and both
    directions. This is a pick as good as an h-seed truth's own order, judged as
    ``bench oneshot-search`` judges against an h-seed truth: by independent trainings."""
    import itertools

    n = per_seed.shape[1]
    if n < 2 or n % 2:
        return {}
    out: dict[str, float] = {"splits": 0}
    pct: dict[int, list[float]] = {1: [], 5: [], k: []}
    for half in itertools.combinations(range(n), n // 2):
        if 0 not in half:  # each split once; both directions below
            continue
        other = [j for j in range(n) if j not in half]
        a, b = per_seed[:, list(half)].mean(axis=1), per_seed[:, other].mean(axis=1)
        for choose, judge in ((a, b), (b, a)):
            order = np.argsort(-choose, kind="stable")
            for top in pct:
                pct[top] += [percentile(judge, judge[i]) for i in order[:top]]
            out["splits"] += 1
    for top, values in pct.items():
        out[f"top{top}_percentile_mean"] = float(np.mean(values))
        out[f"top{top}_in_top10pct"] = float(np.mean(np.array(values) >= 90))
    return out


def bounds(truth_path: str, k: int = 20) -> dict[str, object]:
    """The bounds that need no training, for a truth of any number of seeds."""
    truth = read_truth(truth_path, "nb201")
    ok = ~np.isnan(truth.per_seed).any(axis=1)
    return {"truth": truth_path, "truth_seeds": truth.seeds, "cells": int(ok.sum()),
            "rotation": rotation(truth.per_seed[ok], k),
            "split_half": split_half(truth.per_seed[ok], k), "ceiling": truth.ceiling()}


def main(truth_path: str, dataset: str, k: int, work_dir: str, out: str,
         seeds: str = "3,4,5", control_n: str | None = None) -> None:
    truth = read_truth(truth_path, "nb201")
    setting = truth.setting
    fresh_seeds = [int(s) for s in seeds.split(",")]
    if set(fresh_seeds) & set(truth.seeds) and fresh_seeds != list(truth.seeds):
        sys.exit(f"seeds {fresh_seeds}: give fresh seeds or exactly the truth's {truth.seeds}")
    oracle = TrainingOracle("nb201", dataset, recipe=TrainRecipe(**setting["recipe"]),
                            width=int(setting["width"]), depth=int(setting["depth"]))
    if oracle.dataset.fingerprint() != setting["dataset"].get("fingerprint"):
        sys.exit(f"{truth_path} was not trained on {dataset}")
    vals = truth.val_acc
    order = np.argsort(-vals, kind="stable")
    top = [int(i) for i in order[:k]]
    rest = order[k:]
    control = [int(i) for i in np.random.default_rng(0).choice(rest, size=k, replace=False)]
    extra = int(control_n or k) - k  # more control cells: the first k stay the same
    if extra > 0:
        left = np.setdiff1d(rest, control)
        control += [int(i) for i in np.random.default_rng(1).permutation(left)[:extra]]
    cells = [truth.archs[i] for i in top + control]
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    builder = TruthBuilder(oracle, cells, fresh_seeds,
                           work / f"retrained-{k}-{len(control)}.csv", {"truth": str(truth_path)})
    builder.reuse(sorted(work.glob("retrained*.csv.journal.jsonl")))  # a smaller run's cells
    t0 = time.time()
    builder.run(InlineExecutor(), in_flight=1,
                on_result=lambda n, rec: print(f"{n}/{builder.total} trained", flush=True))
    builder.write_csv()
    fresh_per_seed = builder.values("val_acc")
    fresh = np.nanmean(fresh_per_seed, axis=1)
    reproduced = None
    if fresh_seeds == list(truth.seeds):  # the truth's values are written to 6 decimals
        same = np.isclose(np.round(fresh_per_seed, 6), truth.per_seed[top + control], atol=1e-6)
        reproduced = float(same.mean())

    def rows(idx: list[int], offset: int) -> list[dict]:
        return [{"cell": truth.archs[i], "truth_rank": int(np.flatnonzero(order == i)[0]) + 1,
                 "truth_val_acc": float(vals[i]),
                 "truth_percentile": percentile(vals, vals[i]),
                 "fresh_val_acc": float(fresh[offset + j]),
                 "fresh_percentile": percentile(vals, fresh[offset + j])}
                for j, i in enumerate(idx)]

    top_rows, control_rows = rows(top, 0), rows(control, k)
    shift = float(np.median([r["fresh_val_acc"] - r["truth_val_acc"] for r in control_rows]))
    for r in top_rows:
        r["fresh_percentile_shift_corrected"] = percentile(vals, r["fresh_val_acc"] - shift)

    def mean(rs: list[dict], key: str) -> float:
        return float(np.mean([r[key] for r in rs]))

    report = {
        "truth": str(truth_path), "truth_seeds": truth.seeds, "fresh_seeds": fresh_seeds,
        "k": k, "seconds": time.time() - t0, "reproduced": reproduced,
        "truth_seed_means": [float(v) for v in np.nanmean(truth.per_seed, axis=0)],
        "rotation": rotation(truth.per_seed, k),
        "top1_fresh_percentile": top_rows[0]["fresh_percentile"],
        "top5_fresh_percentile_mean": mean(top_rows[:5], "fresh_percentile"),
        "topk_fresh_percentile_mean": mean(top_rows, "fresh_percentile"),
        "topk_fresh_in_top10pct": float(np.mean([r["fresh_percentile"] >= 90
                                                 for r in top_rows])),
        "seed_shift": shift,
        "top1_fresh_percentile_shift_corrected":
            top_rows[0]["fresh_percentile_shift_corrected"],
        "top5_fresh_percentile_shift_corrected_mean":
            mean(top_rows[:5], "fresh_percentile_shift_corrected"),
        "topk_fresh_percentile_shift_corrected_mean":
            mean(top_rows, "fresh_percentile_shift_corrected"),
        "topk_fresh_shift_corrected_in_top10pct": float(np.mean(
            [r["fresh_percentile_shift_corrected"] >= 90 for r in top_rows])),
        "control_cells": len(control_rows),
        "control_truth_percentile_mean": mean(control_rows, "truth_percentile"),
        "control_fresh_percentile_mean": mean(control_rows, "fresh_percentile"),
        "top": top_rows, "control": control_rows,
    }
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
    for key, value in report.items():
        if not isinstance(value, list) or key == "truth_seed_means":
            print(f"{key}: {value}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["bounds"] and len(sys.argv) in (3, 4):
        print(json.dumps(bounds(sys.argv[2], *map(int, sys.argv[3:])), indent=1))
        sys.exit()
    if len(sys.argv) not in (6, 7, 8):
        sys.exit(__doc__)
    try:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5],
             *sys.argv[6:])
    except KeyboardInterrupt:  # every finished training is journaled under WORK_DIR
        sys.exit("interrupted; the same command continues from the journal in WORK_DIR")
