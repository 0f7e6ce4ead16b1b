"""The `final=memory` pick of finished proxy-validation searches, trained stand-alone.

Re-asks each checkpoint `WORK_DIR/METHOD-seedS.pt` of a `bench oneshot-search` work dir for
the landscape's minimum over its memory (nothing is retrained but the picks) and places the
pick in the committed truth's distribution. Usage (docs/benchmarks.md, "Fresh search seeds"):

    python benchmarks/oneshot_final_memory.py WORK_DIR proxy-darts 3,4,5 OUT.json
"""
import json
import sys
from pathlib import Path

import numpy as np

from archrank.bench.common import percentile
from archrank.nn import torch_threads
from archrank.oneshot.search import _runner
from archrank.oracles.training import TrainingOracle, TrainRecipe
from archrank.truth import read_truth

WORK, METHOD, SEEDS, OUT = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
table = read_truth("benchmarks/truth/nb201_mnist1d_w16.csv", "nb201")
s = table.setting
out = []
with torch_threads(1):
    for seed in (int(x) for x in SEEDS.split(",")):
        r = _runner(METHOD, space="nb201", dataset=None, epochs=None, seed=seed, recipe=None,
                    checkpoint=WORK / f"{METHOD}-seed{seed}.pt", resume=True,
                    proxy={"final": "memory"}, threads=1, device="cpu")
        sp = r.supernet.space
        arch = sp.from_codes(np.asarray([r.sampler.final_codes()]))[0]
        vals = [TrainingOracle("nb201", "mnist1d:num_samples=20000,val_fraction=0.8",
                               recipe=TrainRecipe(**s["recipe"]), width=int(s["width"]),
                               depth=int(s["depth"]), seed=t).evaluate(arch).metrics["val_acc"]
                for t in table.seeds]
        row = {"method": METHOD, "seed": seed, "cell": sp.format(arch),
               "val_acc": float(np.mean(vals)), "pct": percentile(table.val_acc, np.mean(vals))}
        print(json.dumps(row), flush=True)
        out.append(row)
OUT.write_text(json.dumps(out, indent=1))
