"""Weight-sharing score tables (``archrank oneshot fit --out scores.csv``) in the report: the
fitted score against the supernet's own score on the sampled cells, accuracy against FLOPs
(and latency, where measured) with the Pareto front and the best predicted cells marked, the
top cells as a table and the best one drawn.

Score tables are CSV, not JSON: the report recognises them by their ``.csv`` suffix and
``oneshot.fit.COLUMNS`` header, and finds the space by parsing their cells.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    register,
)

KIND = "oneshot-scores"
SCHEMA = 1
_MARKED = 5  # best predicted cells starred on the Pareto figures


@dataclass
class Scores:
    path: Path
    space: str
    archs: list[str]
    columns: dict[str, np.ndarray]


def read_scores(path: Path, _data: dict) -> Scores:
    from archrank.oneshot.fit import COLUMNS, ScoreTable, space_of_cell

    with open(path, newline="") as fh:
        header = fh.readline().strip().split(",")
        first = fh.readline()
    if header[:3] != list(COLUMNS[:3]):
        raise ArchrankError(f"{path}: not a score table of archrank oneshot fit (its header "
                            f"starts {','.join(header[:3])!r}, expected "
                            f"{','.join(COLUMNS[:3])!r})")
    if not first.strip():
        raise ArchrankError(f"{path}: the score table has no rows")
    arch = next(csv.reader([first]))[0]
    space = space_of_cell(path, arch)
    table = ScoreTable.read_csv(path, space=space)
    return Scores(path, space, table.archs, table.columns)


def _fmt(value: float, spec: str = ".4g") -> str:
    return "-" if not np.isfinite(value) else format(value, spec)


def render_scores(tables: Sequence[Scores], options: ReportOptions) -> list[Section]:
    sections = []
    for n, t in enumerate(tables):
        cols = t.columns
        pred = cols["predicted"]
        sec = Section(f"Weight-sharing score table: {t.space}, {t.path.name}",
                      intro=f"{len(t.archs):,} cells · predicted by the graph model fitted to "
                            "the supernet's scores of the sampled cells (archrank oneshot fit)")
        supernet = cols.get("supernet_val_acc")
        if supernet is not None and np.isfinite(supernet).sum() > 1:
            fig = figures.scatter_figure(
                supernet, pred, xlabel="supernet val_acc (shared weights)",
                ylabel="fitted score", title="fitted vs supernet score")
            sec.blocks.append(Figure(
                f"oneshot-{n}-fit", fig,
                "On the cells scored with shared weights: the fitted score against the "
                "supernet's own score (how far the fit smooths the noisy scores). Against "
                "stand-alone training it is measured by a multi-seed truth table."))
        order = np.argsort(-pred, kind="stable")  # best fitted score first
        best = order[:_MARKED]
        for key, label, log_x in (("flops", "FLOPs (multiply-accumulates)", True),
                                  ("latency_ms", "latency (ms, lookup table)", False)):
            cost = cols.get(key)
            if cost is None or not np.isfinite(cost).any():
                continue
            fig = figures.pareto_figure(cost, pred, xlabel=label, ylabel="fitted score",
                                        title=f"fitted score vs {key.split('_')[0]}",
                                        selected=best, log_x=log_x)
            sec.blocks.append(Figure(
                f"oneshot-{n}-{key}", fig,
                f"Every cell's fitted score against its {label}: grey dots, the Pareto front "
                f"(no cell is cheaper and better) as a line, and the {len(best)} best "
                "predicted cells starred (archrank oneshot select picks under limits)."))
        rows = []
        for rank, i in enumerate(order[:options.top], start=1):
            rows.append([str(rank), _fmt(pred[i]),
                         _fmt(supernet[i]) if supernet is not None else "-",
                         *(_fmt(cols[c][i]) if c in cols else "-"
                           for c in ("params", "flops", "latency_ms")), t.archs[i]])
        sec.blocks.append(Table(
            ["rank", "fitted", "supernet", "params", "FLOPs", "latency ms", "cell"], rows,
            "The best cells by fitted score; supernet: its shared-weight score where it was "
            "sampled.", cells=True))
        top = int(best[0])
        sec.blocks.append(Drawing(draw_text(t.space, t.archs[top], t.path),
                                  f"Best predicted cell ({_fmt(pred[top])})."))
        sections.append(sec)
    return sections


register(Kind(KIND, SCHEMA, "score table CSV of archrank oneshot fit", read_scores,
              render_scores, suffixes=(".csv",)))
