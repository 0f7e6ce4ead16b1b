"""``bench search`` JSON in the report: best-so-far curves per strategy (median and quartile
band over seeds; the mean curve for files from before per-seed curves were kept), the
distribution of queries to the optimum, and the best cell each strategy found."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archrank.bench.search import KIND, SCHEMA
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
    numbers,
    register,
)


@dataclass
class SearchBench:
    path: Path
    data: dict[str, Any]

    @property
    def strategies(self) -> dict[str, dict[str, Any]]:
        return self.data["strategies"]


def read_search(path: Path, data: dict[str, Any]) -> SearchBench:
    need(path, data, "space", str, "a space name")
    need(path, data, "metric", str, "a metric name")
    if need(path, data, "budget", int, "an integer") < 1:
        raise ArchrankError(f"{path}: field 'budget' must be at least 1, got {data['budget']}")
    strategies = need(path, data, "strategies", dict, "an object (strategy -> results)")
    if not strategies:
        raise ArchrankError(f"{path}: no search finished (strategies is empty"
                            f"{': the bench was interrupted' if data.get('interrupted') else ''})")
    for label, entry in strategies.items():
        q = entry.get("queries_to_optimum") if isinstance(entry, dict) else None
        if not isinstance(q, dict) or not isinstance(q.get("per_seed"), list):
            raise ArchrankError(f"{path}: strategies.{label}.queries_to_optimum.per_seed is "
                                "missing")
        med = q.get("median")
        if med is not None and (isinstance(med, bool) or not isinstance(med, int | float)):
            raise ArchrankError(f"{path}: strategies.{label}.queries_to_optimum.median is not "
                                f"a number ({med!r})")
        best_at = entry.get("best_at")
        if best_at is not None:
            if not isinstance(best_at, dict):
                raise ArchrankError(f"{path}: strategies.{label}.best_at is not an object "
                                    "(queries -> mean best value)")
            numbers(path, f"strategies.{label}.best_at", list(best_at.values()))
        runs = entry.get("runs")
        if runs is not None and not (isinstance(runs, list) and all(
                isinstance(r, dict) and isinstance(r.get("curve"), list) for r in runs)):
            raise ArchrankError(f"{path}: strategies.{label}.runs is not a list of per-seed "
                                "runs with a 'curve'")
        if runs is None and not isinstance(entry.get("curve"), list):
            raise ArchrankError(f"{path}: strategies.{label} has neither 'runs' nor 'curve'")
        numbers(path, f"strategies.{label}.queries_to_optimum.per_seed", q["per_seed"])
        for k, r in enumerate(runs or []):
            numbers(path, f"strategies.{label}.runs[{k}].curve", r["curve"])
        if runs is None:
            numbers(path, f"strategies.{label}.curve", entry["curve"])
    if isinstance(data.get("seeds"), list):  # schema 2: the seeds themselves
        data = {**data, "seeds": len(data["seeds"])}
    return SearchBench(path, data)


def search_figures(bench: SearchBench, n: int = 0) -> list[Figure]:
    d = bench.data
    budget, metric = d["budget"], d["metric"]
    per_seed = all(isinstance(e.get("runs"), list) for e in bench.strategies.values())
    series = {label: figures.pad_curves(
        [r["curve"] for r in e["runs"]] if per_seed else [e["curve"]], budget)
        for label, e in bench.strategies.items()}
    how = ("Line: median over the seeds; band: 25th-75th percentile" if per_seed else
           "Mean over the seeds (this file predates per-seed curves)")
    stop = (" A seed that found the optimum early stopped there; its curve stays at the "
            "optimum." if d.get("stop_at_optimum") else "")
    optimum = d.get("optimum")
    opt_text = f" (the table's best is {optimum:.4g})" if isinstance(optimum, int | float) else ""
    return [
        Figure(f"search{n}_best_so_far",
               figures.curves_figure(series, ylabel=f"best {metric} so far",
                                     title=f"{d['space']} · {metric}",
                                     seeds=None if per_seed else {
                                         label: int(e["queries_to_optimum"].get(
                                             "seeds", len(e["queries_to_optimum"]["per_seed"])))
                                         for label, e in bench.strategies.items()}),
               f"Best {metric} found so far against the number of queries to the table, per "
               f"strategy{opt_text}. {how}.{stop}"),
        Figure(f"search{n}_queries_to_optimum",
               figures.queries_figure({label: e["queries_to_optimum"]["per_seed"]
                                       for label, e in bench.strategies.items()}, budget,
                                      title=f"queries to the optimum ({d['space']})"),
               f"How many queries each seed needed to find the table's best {metric}: box over "
               "the seeds that found it (median, quartiles, whiskers to 1.5 IQR), each seed a "
               f"dot; crosses are seeds that did not find it within the budget of {budget}."),
    ]


def render_searches(benches: Sequence[SearchBench], options: ReportOptions) -> list[Section]:
    sections = []
    for n, bench in enumerate(benches):
        d = bench.data
        sec = Section(f"Search benchmark: {d['space']}, {d['metric']}",
                      intro=f"{bench.path.name} · table {Path(str(d.get('bench'))).name} · "
                            f"budget {d['budget']} · seeds finished: " + ", ".join(
                                f"{label} {e['queries_to_optimum'].get('seeds', '?')}"
                                for label, e in bench.strategies.items())
                            + (" (interrupted)" if d.get("interrupted") else ""))
        sec.blocks += search_figures(bench, n)
        rows = []
        for label, e in bench.strategies.items():
            q = e["queries_to_optimum"]
            med = q.get("median")
            rows.append([label, f"{q.get('reached')}/{q.get('seeds')}",
                         "-" if med is None else f"{med:g}",
                         *[_fmt(v) for v in (e.get("best_at") or {}).values()]])
        points = list(next(iter(bench.strategies.values())).get("best_at") or {})
        sec.blocks.append(Table(
            ["strategy", "found optimum", "median queries", *[f"mean best@{p}" for p in points]],
            rows, "Seeds that found the table's best cell within the budget, the median "
            "queries they needed, and the mean best value after that many queries."))
        for label, e in bench.strategies.items():
            best = max((r for r in e.get("runs") or [] if r.get("best_arch")
                        and isinstance(r.get("best"), int | float)),
                       key=lambda r: r["best"], default=None)
            if best is not None:
                sec.blocks.append(Drawing(
                    draw_text(d["space"], best["best_arch"], bench.path),
                    f"Best cell of {label} over its seeds: {d['metric']} {_fmt(best['best'])} "
                    f"(seed {best.get('seed')}). {best['best_arch']}"))
        sections.append(sec)
    return sections


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, int | float) and math.isfinite(v) else "-"


register(Kind(KIND, SCHEMA, "bench search JSON", read_search, render_searches))
