"""``bench oneshot`` JSON in the report: the truth scatter (the truth's mean val_acc against
the supernet's shared-weight scores and against their fit, every seed), the results table
next to the truth's ceiling, and the fitted table's best cell drawn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archrank.bench.common import format_stat
from archrank.bench.oneshot import CONSTRAINTS, KIND, SCHEMA
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

_STATS = ("supernet_kendall_tau", "fitted_kendall_tau", "supernet_precision_at_5pct",
          "fitted_precision_at_5pct", "supernet_fraction_of_ceiling",
          "fitted_fraction_of_ceiling")


@dataclass
class OneshotBenchData:
    path: Path
    data: dict[str, Any]


def _is_stat(value: Any) -> bool:
    return isinstance(value, dict) and "mean" in value and "std" in value


def read_oneshot_bench(path: Path, data: dict[str, Any]) -> OneshotBenchData:
    settings = need(path, data, "settings", dict, "an object")
    if data.get("truth_ceiling_kendall_tau") is not None:  # null: too few cells for one
        need(path, data, "truth_ceiling_kendall_tau", (int, float), "a number")
    for key in _STATS:
        if not _is_stat(data.get(key)):
            raise ArchrankError(f"{path}: field {key!r} is missing or not {{mean, std}}")
    for key in ("top1_truth_percentile", "supernet_top1_truth_percentile"):
        entry = data.get(key)
        if not isinstance(entry, dict) or not all(_is_stat(entry.get(c)) for c in CONSTRAINTS):
            raise ArchrankError(f"{path}: field {key!r} is missing or not {{mean, std}} per "
                                f"constraint ({', '.join(CONSTRAINTS)})")
    cells = need(path, data, "cells", dict, "an object")
    per_seed = need(path, data, "per_seed", list, "a list")
    n = len(cells.get("truth_val_acc") or [])
    for k, run in enumerate(per_seed):
        got = run.get("cells") if isinstance(run, dict) else None
        if not isinstance(got, dict) or any(len(got.get(c) or []) != n for c in
                                            ("supernet_val_acc", "supernet_val_loss", "fitted")):
            raise ArchrankError(f"{path}: per_seed[{k}].cells does not hold a score per truth "
                                f"cell ({n})")
    if not isinstance(settings.get("space"), str):
        raise ArchrankError(f"{path}: settings.space is missing")
    return OneshotBenchData(path, data)


def render_oneshot_bench(benches: Sequence[OneshotBenchData], options: ReportOptions
                         ) -> list[Section]:
    sections = []
    for n, bench in enumerate(benches):
        d, st = bench.data, bench.data["settings"]
        score = st.get("score", "val_acc")
        sec = Section(
            f"Weight-sharing benchmark: {st['space']}, truth {Path(st.get('truth', '?')).name}",
            intro=f"{bench.path.name} · {st.get('truth_cells')} truth cells × training seeds "
                  f"{st.get('train_seeds')} · {st.get('epochs')} supernet epochs "
                  f"({st.get('sampler', 'uniform')} sampling) · score "
                  f"{score}{'' if st.get('bn_recalibrate', True) else ' without BN recal'} · "
                  f"{st.get('predictor')} fitted to {st.get('samples')} sampled cells · "
                  f"seeds {d.get('seeds')}")
        sign = -1.0 if score == "val_loss" else 1.0
        panels = {
            "supernet": [[sign * v for v in r["cells"][f"supernet_{score}"]]
                         for r in d["per_seed"]],
            "fitted": [r["cells"]["fitted"] for r in d["per_seed"]],
        }
        sec.blocks.append(Figure(
            f"oneshot_bench{n}_truth_scatter",
            figures.truth_panels_figure(
                d["cells"]["truth_val_acc"], panels,
                xlabel="truth val_acc (mean over training seeds)",
                title="shared-weight scores and their fit against the truth",
                seeds=[r.get("seed", k) for k, r in enumerate(d["per_seed"])]),
            "Each dot is a truth cell: its stand-alone validation accuracy (mean over the "
            f"truth's training seeds) against the supernet's {'negated ' if sign < 0 else ''}"
            f"{score} with shared weights (left) and the graph network's fitted score "
            "(right); a colour per supernet seed. The truth's ceiling, what an error-free "
            "predictor reaches against it: Kendall tau "
            f"{format_stat(d.get('truth_ceiling_kendall_tau'))}."))
        rows = []
        for name, key in (("supernet (raw)", "supernet"), ("fitted", "fitted")):
            pct = d["top1_truth_percentile" if key == "fitted" else
                    "supernet_top1_truth_percentile"]
            rows.append([name, format_stat(d[f"{key}_kendall_tau"]),
                         format_stat(d[f"{key}_fraction_of_ceiling"]),
                         format_stat(d[f"{key}_precision_at_5pct"]),
                         format_stat(pct["none"], 1), format_stat(pct["flops_p25"], 1)])
        sec.blocks.append(Table(
            ["method", "Kendall tau", "of ceiling", "precision@5%", "top-1 percentile",
             "top-1 percentile, FLOPs cap"], rows,
            "Mean ± standard deviation over the supernet seeds, against the truth's mean "
            "val_acc. Top-1: the best-scored truth cell's percentile among the truth cells it "
            "was picked from (all, or those within the FLOPs cap: the space's 25th "
            f"percentile, {st.get('flops_cap', float('nan')):,.0f})."))
        picks = [r["space_pick"] for r in d["per_seed"] if isinstance(r.get("space_pick"), dict)]
        if picks:
            p = picks[0]
            if "truth_percentile" not in p:
                extra = ""
            elif p.get("truth_percentile") is None:  # every training of it failed
                extra = ", trained stand-alone: every training failed"
            else:
                extra = (f", trained stand-alone: val_acc {format_stat(p.get('val_acc'), 2)}, "
                         f"truth percentile {format_stat(p['truth_percentile'], 1)}")
            sec.blocks.append(Drawing(draw_text(st["space"], p["cell"], bench.path),
                                      f"The fitted table's best cell of the whole space "
                                      f"(seed {d['per_seed'][0].get('seed')}){extra}."))
        sections.append(sec)
    return sections


register(Kind(KIND, SCHEMA, "bench oneshot JSON", read_oneshot_bench, render_oneshot_bench))
