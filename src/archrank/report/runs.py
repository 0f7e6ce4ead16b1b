"""Run directories in the report: best-so-far curves per strategy (median and quartile band
over seeds), against evaluations and against recorded cost, the best cells drawn, a table of
the top cells.

Runs are grouped into studies by what they measured (space, benchmark, metric, oracle and the
oracle's settings: a training oracle's dataset and recipe, a supernet's checkpoint); within a
study, by strategy label and the options set for it (seeds are the spread).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import ArchrankError
from archrank.report import figures
from archrank.report.cells import draw_text
from archrank.report.kinds import (
    RUN_KIND,
    Drawing,
    Figure,
    Kind,
    ReportOptions,
    Section,
    Table,
    register,
)
from archrank.runs.store import RunStore


@dataclass
class Run:
    """What the report needs of one run, read from a snapshot of its database."""

    path: Path
    config: dict[str, Any]
    archs: list[str]
    values: np.ndarray  # objective per finished evaluation, proposal order (NaN: failed)
    costs: np.ndarray  # recorded cost per finished evaluation (0 when none)
    pending: int
    seqs: np.ndarray | None = None  # proposal number (0-based) of each finished evaluation
    fingerprint: str = ""  # the content fingerprint of the run's table or dataset
    running: bool | None = None  # a process holds the run now (None: cannot tell)

    @property
    def label(self) -> str:
        """The strategy (the predictor for guided search), with the options set for it: runs
        of one strategy with other options are other curves, not more seeds."""
        c = self.config
        name = str(c.get("predictor") if c.get("strategy") == "guided" and c.get("predictor")
                   else c.get("strategy", "?"))
        options = _compact({**(c.get("strategy_params") or {}), **_recorded_defaults(c)})
        return f"{name} ({options})" if options else name

    @property
    def study(self) -> tuple[str, str, str, str, str, str]:
        """What the runs measured: space, table, metric, oracle, the oracle's settings (a
        training oracle's dataset and recipe, a supernet's checkpoint) and the content
        fingerprint of the table or dataset (two tables of one name are two studies)."""
        c = self.config
        bench = Path(str(c.get("bench"))).name if c.get("bench") else "-"
        return (str(c.get("space")), bench, str(c.get("metric")), str(c.get("oracle", "table")),
                _compact(c.get("oracle_params") or {}), self.fingerprint)

    def found_at(self, i: int) -> int:
        """The proposal number (1-based: ``runs export``'s ``seq`` + 1) of finished
        evaluation ``i``, also while an earlier proposal is still running or was lost."""
        return int(self.seqs[i]) + 1 if self.seqs is not None else i + 1

    def best_curve(self) -> np.ndarray:
        v = np.where(np.isfinite(self.values), self.values, -np.inf)
        curve = np.maximum.accumulate(v) if len(v) else v
        return np.where(np.isfinite(curve), curve, np.nan)


def _recorded_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """What a guided run recorded by an earlier version searches with that today's does not
    (its predictor's defaults of then, no guided defaults): such runs are other curves, not
    more seeds of today's."""
    from archrank.predictors.base import predictor_class
    from archrank.runs.config import SearchConfig

    try:
        cfg = SearchConfig.from_dict(config)
        klass = predictor_class(cfg.predictor) if cfg.predictor else None
    except ArchrankError:  # a damaged record or a predictor this version lacks: as written
        return {}
    if cfg.strategy != "guided" or klass is None:
        return {}
    out = {f"predictor.{k}": v
           for k, v in klass.params_recorded_by(cfg.defaults_session, cfg.space).items()}
    if not cfg.predictor_defaults and klass.guided_defaults.get(cfg.space):
        out["guided_defaults"] = "off"
    return out


def read_run(path: Path, _data: dict[str, Any]) -> Run:
    run_dir = path.parent if path.name == "run.sqlite" else path
    with RunStore.snapshot(run_dir) as store:
        config, records, inputs = store.config, store.records(), store.inputs
    done = [r for r in records if r.done]
    values = np.array([r.objective if r.status == "ok" and r.objective is not None else np.nan
                       for r in done], dtype=np.float64)
    costs = np.array([r.cost or 0.0 for r in done], dtype=np.float64)
    fingerprint = ""
    if isinstance(inputs, dict):  # a table's own; a training oracle's dataset's
        data = inputs.get("dataset")
        fingerprint = str(inputs.get("fingerprint")
                          or (data.get("fingerprint") if isinstance(data, dict) else "") or "")
    return Run(run_dir, config, [r.arch for r in done], values, costs,
               len(records) - len(done), np.array([r.seq for r in done], dtype=np.int64),
               fingerprint, RunStore.is_running(run_dir))


def _compact(options: dict[str, Any]) -> str:
    """``key=value, ...`` in key order (nested dicts flattened as ``key.sub=value``)."""
    items: list[str] = []
    for key in sorted(options):
        value = options[key]
        if isinstance(value, dict):
            items += [f"{key}.{k}={v}" for k, v in sorted(value.items())]
        else:
            items.append(f"{key}={value}")
    return ", ".join(items)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "-"


def render_runs(runs: Sequence[Run], options: ReportOptions) -> list[Section]:
    studies: dict[tuple[str, str, str, str, str, str], list[Run]] = {}
    for run in runs:
        studies.setdefault(run.study, []).append(run)
    # studies that a space and metric alone do not tell apart are named by table and oracle
    same = Counter((k[0], k[2]) for k in studies)
    sections = []
    for n, ((space_name, bench, metric, oracle, settings, fingerprint), members) in enumerate(
            studies.items()):
        labels = sorted({r.label for r in members})
        by_label = {lab: [r for r in members if r.label == lab] for lab in labels}
        # unfinished evaluations: a run a process holds is still running; one nobody holds
        # was stopped (its unfinished evaluations are lost until it is resumed)
        live = sum(r.pending > 0 and r.running is not False for r in members)
        stopped = [r for r in members if r.pending > 0 and r.running is False]
        failed = sum(int(np.isnan(r.values).sum()) for r in members)
        intro = (f"{len(members)} run directories · space {space_name} · {oracle} oracle "
                 f"({bench}{'; ' + settings if settings else ''}"
                 f"{'; content ' + fingerprint[:12] if fingerprint else ''}) · objective {metric}"
                 + (f" · {failed:,} failed evaluations (they count on the x axes)"
                    if failed else "")
                 + (f" · {live} still running (read from a consistent snapshot)" if live else "")
                 + (f" · {len(stopped)} stopped before finishing "
                    f"({sum(r.pending for r in stopped)} unfinished evaluations; "
                    f"archrank search --resume DIR continues each)" if stopped else ""))
        name = f"{space_name}, {metric}"
        if same[(space_name, metric)] > 1:
            name += (f" ({oracle}, {bench}{'; ' + settings if settings else ''}"
                     f"{', ' + fingerprint[:8] if fingerprint else ''})")
        sec = Section(f"Search runs: {name}", intro=intro)
        # a run without a finished evaluation has no curve and is no seed of it
        curves = {lab: [r.best_curve().tolist() for r in rs if len(r.values)]
                  for lab, rs in by_label.items()}
        series = {lab: figures.pad_curves(c) for lab, c in curves.items() if c}
        seeds = ", ".join(f"{lab}: {len(curves[lab])}" for lab in by_label)
        twice = sorted({f"{lab} seed {s}" for lab, rs in by_label.items()
                        for s, k in Counter(r.config.get("seed") for r in rs).items() if k > 1})
        if not series:  # no run has a finished evaluation yet: no curve, no cells to list
            sec.intro += " · nothing evaluated yet"
            sections.append(sec)
            continue
        sec.blocks.append(Figure(
            f"runs{n}_best_so_far",
            figures.curves_figure(series, ylabel=f"best {metric} so far",
                                  title=name.replace(", ", " · ", 1)),
            f"Best {metric} found so far against the number of finished evaluations, runs "
            f"grouped by strategy (runs with a finished evaluation per strategy: {seeds}). "
            f"Line: median over the runs; band: 25th-75th percentile. A run shorter than the "
            f"others carries its last value forward."
            + (f" Run directories repeating a seed (copies?): {', '.join(twice)}."
               if twice else "")))
        if any(r.costs.sum() > 0 for r in members):
            sec.blocks.append(_cost_figure(n, by_label, metric))
        sec.blocks += _best_cells(space_name, by_label, metric)
        sec.blocks.append(_top_table(members, metric, options.top))
        sections.append(sec)
    return sections


def _cost_figure(n: int, by_label: dict[str, list[Run]], metric: str) -> Figure:
    """Best-so-far against cumulative recorded cost, on a common grid per strategy."""
    series, xs = {}, {}
    for lab, rs in by_label.items():
        rs = [r for r in rs if len(r.values)]  # a run with nothing finished has no curve
        if not rs:
            continue
        total = max(float(r.costs.sum()) for r in rs)
        grid = np.linspace(0, total, 200)[1:]
        rows = []
        for r in rs:
            spent, curve = np.cumsum(r.costs), r.best_curve()
            idx = np.searchsorted(spent, grid, side="right") - 1
            rows.append(np.where(idx >= 0, curve[np.clip(idx, 0, None)], np.nan))
        series[lab], xs[lab] = np.array(rows), grid
    return Figure(
        f"runs{n}_best_vs_cost",
        figures.curves_figure(series, ylabel=f"best {metric} so far",
                              xlabel="cumulative recorded cost (training seconds)",
                              title="against cost", x=xs),
        f"Best {metric} so far against the cumulative cost each run recorded for its "
        "evaluations (the table's training time, or measured training seconds). Median and "
        "quartile band over the runs of each strategy.")


def _best_cells(space: str, by_label: dict[str, list[Run]], metric: str) -> list[Drawing]:
    out = []
    for lab, rs in by_label.items():
        best = max(((r, i) for r in rs for i in range(len(r.values))
                    if math.isfinite(r.values[i])), key=lambda ri: ri[0].values[ri[1]],
                   default=None)
        if best is None:
            continue
        run, i = best
        out.append(Drawing(draw_text(space, run.archs[i], run.path),
                           f"Best cell of {lab}: {metric} {_fmt(run.values[i])}, found at "
                           f"proposal {run.found_at(i)} of {run.path.name} (seed "
                           f"{run.config.get('seed')}). {run.archs[i]}"))
    return out


def _top_table(runs: Sequence[Run], metric: str, top: int) -> Table:
    seen: dict[str, tuple[float, str, Run, int]] = {}
    for r in runs:
        for i, (arch, v) in enumerate(zip(r.archs, r.values, strict=True)):
            if math.isfinite(v) and (arch not in seen or v > seen[arch][0]):
                seen[arch] = (float(v), arch, r, i)
    best = sorted(seen.values(), key=lambda t: -t[0])[:top]
    rows = [[str(k + 1), _fmt(v), r.label, str(r.config.get("seed")), str(r.found_at(i)), arch]
            for k, (v, arch, r, i) in enumerate(best)]
    return Table(["rank", metric, "strategy", "seed", "found at", "cell"], rows,
                 f"The {len(rows)} best distinct cells evaluated by these runs (by {metric}), "
                 "with the run that first reached that value and at which of its proposals "
                 "(runs export's seq + 1).",
                 cells=True)


register(Kind(RUN_KIND, 1, "run directory", read_run, render_runs))
