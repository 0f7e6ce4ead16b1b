"""Retrain the best cells of finished darts searches with several training seeds.

Each summary JSON written by ``archrank search --json`` names its best genotype; this script
trains that genotype stand-alone with the same oracle settings (darts defaults on ``--dataset``)
and each of ``--train-seeds``, and prints and writes per-search and per-strategy means, so
that search strategies are compared on retrained accuracy rather than on the single noisy
training that the search saw. Usage (see darts_search.sh)::

    python benchmarks/darts_retrain.py runs/darts/*.json --train-seeds 0,1,2 --out retrain.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from archrank.oracles.training import TrainingOracle
from archrank.spaces import get_space


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--train-seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", default="mnist1d:num_samples=5000,val_fraction=0.2",
                        help="the searches' data (default: the small MNIST-1D of the "
                             "documented figures)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.train_seeds.split(",")]
    space = get_space("darts")
    done = json.loads(args.out.read_text()) if args.out.exists() else {"searches": {}}
    for path in args.summaries:
        summary = json.loads(path.read_text())
        key = path.stem
        entry = done["searches"].setdefault(key, {"strategy": summary["strategy"],
                                                  "genotype": summary["best"]["arch"],
                                                  "search_val_acc": summary["best"]["value"],
                                                  "val_acc": {}, "test_acc": {}})
        arch = space.parse(entry["genotype"])
        for seed in seeds:
            if str(seed) in entry["val_acc"]:
                continue  # resumable: finished trainings are kept
            result = TrainingOracle(space, args.dataset, seed=seed).evaluate(arch)
            if result.status != "ok":
                print(f"{key} seed {seed}: training failed: {result.error}", file=sys.stderr)
                return 1
            entry["val_acc"][str(seed)] = result.metrics["val_acc"]
            entry["test_acc"][str(seed)] = result.metrics["test_acc"]
            args.out.write_text(json.dumps(done, indent=1))
            print(f"{key} seed {seed}: val {result.metrics['val_acc']:.3f} "
                  f"test {result.metrics['test_acc']:.3f}", flush=True)
    by_strategy: dict[str, list[float]] = {}
    for key, entry in sorted(done["searches"].items()):
        vals = list(entry["val_acc"].values())
        tests = list(entry["test_acc"].values())
        entry["mean_val_acc"] = statistics.mean(vals)
        entry["mean_test_acc"] = statistics.mean(tests)
        by_strategy.setdefault(entry["strategy"], []).append(entry["mean_test_acc"])
        print(f"{key:<24} search val {entry['search_val_acc']:.3f}  retrained val "
              f"{entry['mean_val_acc']:.3f}  test {entry['mean_test_acc']:.3f}")
    done["by_strategy"] = {s: {"mean_test_acc": statistics.mean(v), "per_search": v}
                           for s, v in by_strategy.items()}
    for s, v in done["by_strategy"].items():
        print(f"{s}: retrained test accuracy {v['mean_test_acc']:.3f} over {len(v['per_search'])} "
              "searches")
    args.out.write_text(json.dumps(done, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
