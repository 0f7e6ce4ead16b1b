"""Judge the committed one-shot search picks again, against another truth table.

The picks of ``bench oneshot-search`` (and of the session-7 final-choice study) are cells; how
good they are is a matter of the truth they are placed in. This script lists them, and, once
they are trained with the truth's recipe and seeds (``archrank bench table --cells``), places
each pick's mean val_acc in the truth's distribution, as the harness does (``percentile``).

    python benchmarks/rejudge_picks.py cells picks.txt          # the cells to train
    archrank bench table --space nb201 --dataset mnist1d:num_samples=20000,val_fraction=0.8 \\
        --width 16 --depth 1 --epochs 5 --train-seeds 0,1,2,3,4,5,6,7,8,9 --cells picks.txt \\
        --from benchmarks/truth/nb201_mnist1d_w16_s10.csv --out picks10.csv
    python benchmarks/rejudge_picks.py judge TRUTH.csv picks10.csv out.json

The groups are the methods' default forms as docs/benchmarks.md reports them ("Fresh search
seeds 3-5", "A 150-epoch supernet", "Where the final cell is taken").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from archrank.bench.common import percentile, stat
from archrank.spaces import get_space
from archrank.truth import read_truth, setting_differences

RESULTS = Path(__file__).resolve().parent / "results"
FINAL = RESULTS / "dev-2026-11-30-final-choice"
S8 = RESULTS / "dev-2026-11-30-s8"


def _final(file: str, method: str, rule: str) -> list[tuple[int, str]]:
    return [(e["seed"], e[rule]["cell"]) for e in json.loads((FINAL / file).read_text())
            if e["method"] == method]


def _bench(path: Path, method: str) -> list[tuple[int, str]]:
    data = json.loads(path.read_text())
    return [(p["seed"], p["cell"]) for p in data["methods"][method]["per_seed"]]


def groups() -> dict[str, list[tuple[int, str]]]:
    """Label -> [(search seed, picked cell)]."""
    return {
        "proxy-ea, 50 epochs, final=memory (default)":
            _final("final50.json", "proxy-ea", "landscape min over memory")
            + _bench(S8 / "os_fresh.json", "proxy-ea"),
        "spos-ea, 50 epochs": _bench(S8 / "os_fresh.json", "spos-ea"),
        "proxy-darts, 50 epochs, final=space (default)":
            _final("final50.json", "proxy-darts", "final (space min)")
            + _bench(S8 / "os_fresh_pd.json", "proxy-darts"),
        "proxy-ea, 150 epochs, final=memory":
            _final("final150.json", "proxy-ea", "landscape min over memory"),
        "spos-ea, 150 epochs": _bench(FINAL / "search150_spos.json", "spos-ea"),
        "proxy-darts, 150 epochs, final=space": _bench(FINAL / "search150_proxy.json",
                                                       "proxy-darts"),
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["cells"] and len(argv) == 2:
        lines = [f"{cell}  # {label}, seed {seed}"
                 for label, picks in groups().items() for seed, cell in picks]
        Path(argv[1]).write_text("\n".join(lines) + "\n")
        return
    if argv[:1] != ["judge"] or len(argv) != 4:
        sys.exit(__doc__)
    truth = read_truth(argv[1], "nb201")
    picks = read_truth(argv[2], "nb201", recipe=None)
    differ = setting_differences(picks.setting, truth.setting)
    if differ:  # judged by a truth of another recipe: meaningless
        sys.exit(f"{argv[2]} was trained with another {', '.join(differ)} than {argv[1]}")
    missing = sorted(set(truth.seeds) - set(picks.seeds))
    if missing:
        sys.exit(f"{argv[2]} lacks the truth's training seeds {missing}")
    # judged by the truth's own seeds (a picks table of more seeds judges a truth of fewer)
    cols = [picks.seeds.index(s) for s in truth.seeds]
    space = get_space("nb201")
    val = {space.format(space.parse(a)): float(np.nanmean(v[cols]))
           for a, v in zip(picks.archs, picks.per_seed, strict=True)}
    rank = np.argsort(-truth.val_acc)
    report = {"truth": argv[1], "truth_seeds": truth.seeds, "picks": argv[2],
              "truth_top10pct_val_acc": float(truth.val_acc[rank[len(rank) // 10 - 1]]),
              "groups": {}}
    for label, chosen in groups().items():
        rows = [{"seed": s, "cell": c, "val_acc": float(val[c]),
                 "truth_percentile": percentile(truth.val_acc, val[c])} for s, c in chosen]
        report["groups"][label] = {"truth_percentile": stat([r["truth_percentile"]
                                                             for r in rows]),
                                   "val_acc": stat([r["val_acc"] for r in rows]),
                                   "per_seed": rows}
        pct = " ".join(f"{r['truth_percentile']:.1f}" for r in rows)
        print(f"{label}: {report['groups'][label]['truth_percentile']['mean']:.1f} ({pct})")
    Path(argv[3]).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
