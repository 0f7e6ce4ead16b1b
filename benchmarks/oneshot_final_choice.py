"""Alternative final choices of finished proxy-validation searches, trained stand-alone.

The final cell does not change the search (it is chosen after it), so the checkpoints of a
finished `bench oneshot-search` work dir answer "which cell would another final rule pick?"
exactly. For each proxy-ea / proxy-darts checkpoint (seeds 0-2) it picks the landscape's
minimum over the whole space (the default), over the memory's cells (`final=memory`), the
memory's best observed loss, the memory's best supernet val_loss and the supernet's best of
the landscape's top 20; trains each pick with the truth's recipe and seeds; prints its truth
percentile. Usage (docs/benchmarks.md, "Where the final cell is taken"):

    python benchmarks/oneshot_final_choice.py WORK_DIR/ OUT.json
"""
import json
import sys
from pathlib import Path

import numpy as np

from archrank.bench.common import percentile
from archrank.nn import torch_threads
from archrank.oneshot.scoring import ScoreOptions, SubnetScorer
from archrank.oneshot.search import _runner
from archrank.oracles.training import TrainingOracle, TrainRecipe
from archrank.truth import read_truth

T = "benchmarks/truth/nb201_mnist1d_w16.csv"
WORK, OUT = Path(sys.argv[1]), Path(sys.argv[2])
table = read_truth(T, "nb201")
s = table.setting
oracle = TrainingOracle("nb201", "mnist1d:num_samples=20000,val_fraction=0.8",
                        recipe=TrainRecipe(**s["recipe"]), width=int(s["width"]),
                        depth=int(s["depth"]))
truth_vals = table.val_acc
out = []
cache = {}
def stand_alone(sp, codes):
    arch = sp.from_codes(np.asarray([codes]))[0]
    key = sp.format(arch)
    if key not in cache:
        vals = []
        for seed in table.seeds:
            o = TrainingOracle("nb201", oracle.dataset, recipe=TrainRecipe(**s["recipe"]),
                               width=int(s["width"]), depth=int(s["depth"]), seed=seed)
            vals.append(o.evaluate(arch).metrics["val_acc"])
        cache[key] = float(np.mean(vals))
    return key, cache[key], percentile(truth_vals, cache[key])

with torch_threads(1):
    for method in ("proxy-ea", "proxy-darts"):
        for seed in (0, 1, 2):
            ck = WORK / f"{method}-seed{seed}.pt"
            r = _runner(method, space="nb201", dataset=None, epochs=None, seed=seed, recipe=None,
                        checkpoint=ck, resume=True, proxy=None, threads=1, device="cpu",
                        final="space")  # the whole-space rule, whatever the checkpoint's
            sm, sp = r.sampler, r.supernet.space
            scorer = SubnetScorer.from_checkpoint(r.checkpoint(), r.dataset, threads=1,
                                                  options=ScoreOptions(val_samples=2000))
            seen, losses = sm.memory.arrays()
            uniq, inv = np.unique(seen, axis=0, return_inverse=True)
            mean_loss = np.array([losses[inv.ravel() == k].mean() for k in range(len(uniq))])
            live = np.array([bool(sp.live_ops(c)) for c in uniq])
            pred = sm.landscape.predict_codes(uniq)
            picks = {"final (space min)": sm.final_codes(),
                     "landscape min over memory": uniq[np.argmin(np.where(live, pred, np.inf))],
                     "memory best observed loss":
                         uniq[np.argmin(np.where(live, mean_loss, np.inf))]}
            sc = scorer.score_codes(uniq)
            picks["memory best supernet val_loss"] = uniq[
                np.argmin(np.where(live, sc["val_loss"], np.inf))]
            allc = sp.codes(sp.enumerate())
            allp = sm.landscape.predict_codes(allc)
            lv = np.array([bool(sp.live_ops(c)) for c in allc])
            top = allc[np.argsort(np.where(lv, allp, np.inf))[:20]]
            st = scorer.score_codes(top)
            picks["landscape top-20, supernet best"] = top[np.argmin(st["val_loss"])]
            row = {"method": method, "seed": seed, "memory_distinct": len(uniq)}
            for name, codes in picks.items():
                key, v, p = stand_alone(sp, [int(c) for c in codes])
                row[name] = {"cell": key, "val_acc": v, "pct": p}
            print(json.dumps(row), flush=True)
            out.append(row)
OUT.write_text(json.dumps(out, indent=1))
