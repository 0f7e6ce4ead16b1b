"""``bench oneshot-search`` JSON in the report: where each method's picks land in the
stand-alone truth (percentile per search seed), their retrained accuracy, degenerate picks and
search time, and each method's best pick drawn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archrank.bench.common import format_stat
from archrank.bench.oneshot_search import KIND, SCHEMA
from archrank.errors import ArchrankError
from archrank.report import figures
from archrank.report.cells import draw_text
from archrank.report.kinds import (
    Drawing,
    Figure,
    Kind,
    ReportOptions,
    Section,
    Table,
    need,
    register,
)

_STATS = ("val_acc", "test_acc", "truth_percentile", "search_seconds")


@dataclass
class OneshotSearchBench:
    path: Path
    data: dict[str, Any]


def read_oneshot_search(path: Path, data: dict[str, Any]) -> OneshotSearchBench:
    need(path, data, "space", str, "a space name")
    need(path, data, "truth", str, "the truth table's path")
    methods = need(path, data, "methods", dict, "an object of methods")
    for name, entry in methods.items():
        ok = isinstance(entry, dict) and all(
            isinstance(entry.get(k), dict) and "mean" in entry[k] and "std" in entry[k]
            for k in _STATS) and isinstance(entry.get("per_seed"), list) and all(
            isinstance(p, dict) and isinstance(p.get("cell"), str)
            and (p.get("truth_percentile") is None  # a pick whose trainings all failed
                 or isinstance(p.get("truth_percentile"), int | float))
            for p in entry["per_seed"]
        ) and len(entry["per_seed"]) > 0
        if not ok:
            raise ArchrankError(f"{path}: methods.{name} is not a bench oneshot-search result "
                                "(val_acc/test_acc/truth_percentile/search_seconds mean and "
                                "std, per_seed cells and percentiles)")
    return OneshotSearchBench(path, data)


def render_oneshot_search(benches: Sequence[OneshotSearchBench], options: ReportOptions
                          ) -> list[Section]:
    sections = []
    for n, bench in enumerate(benches):
        d, methods = bench.data, bench.data["methods"]
        sec = Section(f"One-shot search benchmark: {d['space']}, truth {Path(d['truth']).name}",
                      intro=f"{bench.path.name} · {d.get('epochs')} supernet epochs · search "
                            f"seeds {d.get('seeds')} · picks trained stand-alone with the "
                            f"truth's seeds {d.get('train_seeds')}")
        per = {m: [np.nan if p["truth_percentile"] is None else p["truth_percentile"]
                   for p in e["per_seed"]] for m, e in methods.items()}
        sec.blocks.append(Figure(
            f"oneshot_search{n}_percentile",
            figures.strip_figure(per, xlabel="truth percentile of the pick (stand-alone "
                                 "val_acc, mean over training seeds)",
                                 title="where each search's pick lands", xlim=(0, 100),
                                 mark=90),
            "Each dot is the cell one search seed chose, placed by its retrained validation "
            "accuracy's percentile in the truth table (100 = better than every cell there); "
            "bar: the method's mean; dashed line: the 90th percentile."))
        rows = [[m, format_stat(e["truth_percentile"], 1), format_stat(e["val_acc"], 2),
                 format_stat(e["test_acc"], 2), f"{e.get('degenerate_rate', 0.0):.2f}",
                 format_stat(e["search_seconds"], 0)]
                for m, e in methods.items()]
        sec.blocks.append(Table(
            ["method", "truth percentile", "val_acc", "test_acc", "degenerate", "search s"],
            rows, "Mean ± standard deviation over the search seeds; degenerate: the share of "
            "picks with no convolution on any live input-to-output path."))
        for m, e in methods.items():
            scored = [p for p in e["per_seed"] if p["truth_percentile"] is not None]
            if not scored:
                continue
            best = max(scored, key=lambda p: p["truth_percentile"])
            sec.blocks.append(Drawing(
                draw_text(d["space"], best["cell"], bench.path),
                f"Best pick of {m} (seed {best.get('seed')}): truth percentile "
                f"{best['truth_percentile']:.1f}."))
        sections.append(sec)
    return sections


register(Kind(KIND, SCHEMA, "bench oneshot-search JSON", read_oneshot_search,
              render_oneshot_search))
