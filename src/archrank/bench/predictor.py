"""``bench predictor`` / ``bench speed``: ranking quality of the predictors on a table, and
their speed.

``bench_predictors`` is what ``archrank bench predictor`` runs: for every seed and training
size it samples a training set uniformly from the table (the same set for every predictor),
fits each predictor and scores every remaining architecture of the table. The table's
architectures are converted to one ``GraphBatch`` up front and indexed, so per-run work is
only fitting and scoring. ``bench_speed`` times GATES on the figures issue 3 sets targets for.
"""

from __future__ import annotations

import math
import os
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archrank.bench.common import (
    check_seeds,
    envelope,
    interrupted,
    machine_info,
    parse_list,
    stat,
)
from archrank.bench.journal import BenchJournal
from archrank.errors import ArchrankError, FailedWithPartial, first_line
from archrank.metrics import ranking_report
from archrank.predictors.base import ConstantTargets, make_predictor, predictor_class
from archrank.spaces import get_space
from archrank.spaces.base import GraphBatch, SearchSpace
from archrank.tables import load_benchmark

METRICS = ("kendall_tau", "spearman", "precision_at_5pct", "n_at_10")
# What ``bench predictor --json`` writes (``archrank report`` reads by kind; bump the schema when
# a field changes meaning). Schema 1 added ``samples``: predicted and true values of up to
# SAMPLE_SIZE test cells per (predictor, train size), first seed only, for scatter plots.
KIND = "bench-predictor"
SCHEMA = 1
SAMPLE_SIZE = 500

Progress = Callable[[str], None]


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for item in parse_list(text, "train-sizes"):
        try:
            value = int(item)
        except ValueError:
            raise ArchrankError(f"--train-sizes: {item!r} is not an integer") from None
        if value < 2:
            raise ArchrankError(f"--train-sizes: {value} is too small (need at least 2 cells)")
        if value in sizes:  # its fits would count as seeds twice
            raise ArchrankError(f"--train-sizes: {value} is given twice")
        sizes.append(value)
    return sizes


def check_predictors(names: Sequence[str], space: SearchSpace | None = None,
                     params: dict[str, dict[str, Any]] | None = None) -> None:
    """Fail early, with the list of valid names, before any work is done; with ``space``,
    also build each predictor with its ``params`` (names, types and values checked)."""
    for name in names:
        predictor_class(name)
        if names.count(name) > 1:  # its fits would count as seeds twice
            raise ArchrankError(f"--predictors: {name!r} is given twice")
    params = params or {}
    unused = sorted(set(params) - set(names))
    if unused:
        raise ArchrankError(f"--set {unused[0]}.*: {unused[0]!r} is not among the predictors "
                            f"benchmarked ({', '.join(names)})")
    if space is not None:
        for name in names:
            try:
                make_predictor(name, space, seed=0, **params.get(name, {}))
            except ArchrankError:
                raise  # names the predictor itself
            except (ValueError, TypeError) as exc:
                raise ArchrankError(f"predictor {name!r}: {exc}") from None


def train_split(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uniform training sample of ``size`` rows and the rest, fixed by (seed, size)."""
    rng = np.random.default_rng([seed, size])
    perm = rng.permutation(n)
    return np.sort(perm[:size]), np.sort(perm[size:])


@dataclass
class PredictorBench:
    """One ``bench predictor`` run: settings, raw per-seed results, and their summary."""

    space: str
    bench: str
    metric: str
    predictors: list[str]
    train_sizes: list[int]
    seeds: int
    rows: int = 0
    convert_seconds: float = 0.0
    first_seed: int = 0
    drop_twins: bool = False  # test rows that hash like a training row left out
    runs: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # per predictor: the arch-level inputs and aux targets it used (archrank.signals)
    signals: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def results(self) -> list[dict[str, Any]]:
        """One entry per (predictor, train_size): metric mean/std, median times."""
        out = []
        for name in self.predictors:
            for size in self.train_sizes:
                runs = [r for r in self.runs if r["predictor"] == name and r["train_size"] == size]
                if not runs:
                    continue
                # a fit whose scores gave no tau (NaN: constant predictions) is not a seed of
                # the means: say how many such there were, and take every figure over the rest
                scored = [r for r in runs if np.isfinite(r["kendall_tau"])]
                entry: dict[str, Any] = {"predictor": name, "train_size": size,
                                         "seeds": len(scored)}
                if len(scored) < len(runs):
                    entry["seeds_without_tau"] = len(runs) - len(scored)
                    alike = sum(bool(r.get("targets_alike")) for r in runs)
                    if alike:  # the rest: the model predicted one value for every cell
                        entry["seeds_with_targets_alike"] = alike
                for metric in METRICS:  # over the same fits as the tau (none: NaN)
                    entry[metric] = stat([r[metric] for r in scored])
                fitted = [r for r in runs if not r.get("targets_alike")] or runs  # real fits
                entry["fit_seconds"] = statistics.median(r["fit_seconds"] for r in fitted)
                entry["predict_seconds"] = statistics.median(r["predict_seconds"]
                                                             for r in fitted)
                sizes = sorted({int(r["test_size"]) for r in runs})  # --drop-twins: per seed
                entry["test_size"] = sizes[0] if len(sizes) == 1 else sizes
                out.append(entry)
        return out

    def to_json(self) -> dict[str, Any]:
        """The report (``bench.common.envelope``; ``runs`` are the per-seed records)."""
        return envelope(
            KIND, SCHEMA, "bench predictor",
            range(self.first_seed, self.first_seed + self.seeds),
            settings={"space": self.space, "bench": self.bench, "metric": self.metric,
                      "predictors": self.predictors, "train_sizes": self.train_sizes,
                      "seeds": self.seeds, "first_seed": self.first_seed,
                      "rows": self.rows, "drop_twins": self.drop_twins,
                      "signals": self.signals,
                      "convert_seconds": self.convert_seconds},
            results=self.results(), runs=self.runs, samples=self.samples)


def _sample(name: str, size: int, seed: int, truth: np.ndarray,
            scores: Any) -> dict[str, Any]:
    """Up to SAMPLE_SIZE (true, predicted) pairs of one fit, the same test cells for every
    predictor at this (seed, size): enough for a scatter plot, small enough for the JSON."""
    pick = np.sort(np.random.default_rng([seed, size, 1]).permutation(len(truth))[:SAMPLE_SIZE])
    pred = np.asarray(scores, dtype=np.float64).reshape(-1)[pick]
    return {"predictor": name, "train_size": size, "seed": seed,
            "true": [round(float(v), 6) for v in truth[pick]],
            "predicted": [round(float(v), 6) for v in pred]}


def table_graphs(space: SearchSpace, archs: Sequence[Any]) -> GraphBatch:
    return space.to_graphs(list(archs))


def bench_predictors(
    space_name: str,
    bench_spec: str,
    metric: str,
    predictors: Sequence[str],
    train_sizes: Sequence[int],
    seeds: int,
    *,
    params: dict[str, dict[str, Any]] | None = None,
    progress: Progress | None = None,
    first_seed: int = 0,
    arch_inputs: str | None = None,
    aux_targets: str | None = None,
    drop_twins: bool = False,
    journal: Path | None = None,
) -> PredictorBench:
    """Fit and score every predictor on ``seeds`` random training sets of each size (seeds
    ``first_seed`` to ``first_seed + seeds - 1``: a later run can add seeds to an earlier
    one, or check on fresh seeds a setting chosen on the first ones).

    ``arch_inputs`` / ``aux_targets`` (comma-separated signal names, ``archrank.signals``)
    become the parameters of the same name of every predictor that uses such signals (unless
    ``params`` sets them); the others ignore them, and ``signals`` of the result says which
    predictor used what.

    ``drop_twins``: leave out of each test set the rows that hash like a training row. A table
    such as nb201.csv holds cells that differ only by dead edges or a swap of nodes 1 and 2
    (15,625 rows, 8,765 distinct cells): such a row is a second training of a training cell,
    which GATES and the cached signals see as the same cell, so it inflates the absolute taus
    (the comparison between predictors, on the same splits, is fair either way).

    ``journal`` (``bench.journal``): every finished fit is recorded there, and the fits it
    already holds (same table, metric and resolved predictor parameters) are not redone."""
    params = _with_signals(predictors, params or {}, arch_inputs, aux_targets)
    check_predictors(predictors, get_space(space_name), params)
    check_seeds(seeds, first_seed)
    space = get_space(space_name)
    bench = load_benchmark(bench_spec, space, one_table=True)
    values = np.asarray(bench.scores(metric, ranking=True), dtype=np.float64)
    repeats = bench.text_repeats()
    if repeats:  # e.g. one row per training seed: a test set would hold training cells
        first, later = repeats[0]
        warnings.warn(
            f"{bench_spec}: {len(repeats)} row(s) repeat an earlier row's cell exactly (first "
            f"{bench.row_name(later)}, as {bench.row_name(first)}); test sets then hold copies "
            "of training cells, which inflates every figure: keep one row per cell (the mean "
            "over training seeds)", stacklevel=2)
    keep = np.flatnonzero(np.isfinite(values))
    if len(keep) < 3:
        raise ArchrankError(f"{bench_spec}: metric {metric!r} has only {len(keep)} values")
    y = values[keep]
    too_big = [s for s in train_sizes if s >= len(keep)]
    if too_big:
        raise ArchrankError(
            f"--train-sizes {too_big[0]} leaves nothing to score: {bench_spec} has "
            f"{len(keep)} rows with {metric!r}"
        )
    start = time.perf_counter()
    archs = bench.archs
    graphs = table_graphs(space, [archs[i] for i in keep])
    result = PredictorBench(space_name, str(bench_spec), metric, list(predictors),
                            list(train_sizes), seeds, rows=len(keep),
                            convert_seconds=time.perf_counter() - start,
                            first_seed=first_seed, drop_twins=drop_twins)
    cells = [archs[i] for i in keep]
    resolved: dict[tuple, dict[str, np.ndarray | None]] = {}

    def signals_of(model: Any) -> dict[str, np.ndarray | None]:
        """The model's signals for every row (computed once per set of names)."""
        from archrank.signals import fit_signals

        key = (model.arch_inputs, model.aux_targets)
        if key not in resolved:
            resolved[key] = fit_signals(model, cells, table=bench, rows=keep)
        return resolved[key]

    tags: dict[str, str] = {}  # each fit's journal key holds its predictor's resolved hp
    for name in predictors:  # bad names or missing signals fail before any fit
        model = make_predictor(name, space, seed=first_seed, **params[name])
        tags[name] = BenchJournal.digest(model.hp)  # (defaults included; the seed is not)
        for role, names in (("arch input", model.arch_inputs),
                            ("auxiliary target", model.aux_targets)):
            if metric in names:  # the label itself, given at prediction time / as a target
                raise ArchrankError(f"{name}: the metric {metric!r} cannot also be an "
                                    f"{role}")
        signals_of(model)
        result.signals[name] = {"arch_inputs": list(model.arch_inputs),
                                "aux_targets": list(model.aux_targets)}
    hashes = np.asarray(space.hash_many(cells)) if drop_twins else None
    _splits(result, len(y), hashes)  # a split without test rows: bad input, before any journal
    log = BenchJournal(journal, "bench predictor", {
        "space": space_name, "bench": str(bench_spec), "metric": metric,
        "table": bench.fingerprint(), "drop_twins": drop_twins})  # an edited table is new
    if log.done and progress:
        progress(f"resuming: {len(log.done)} fits journaled in {journal}")
    try:
        _fit_all(result, space, graphs, y, params, signals_of, progress, hashes, log, tags)
        log.close()
    except KeyboardInterrupt:  # keep every finished seed; the caller saves them
        log.close()
        report, kept = _whole_seeds(result)
        raise interrupted(report, f"interrupted: {kept}") from None
    except Exception as exc:  # a fit that failed: the finished seeds are kept as on Ctrl-C
        log.close()
        report, kept = _whole_seeds(result)
        report["interrupted"] = True
        why = str(exc) if isinstance(exc, ArchrankError) else (
            f"a fit failed ({type(exc).__name__}: {first_line(exc)})")
        raise FailedWithPartial(f"{why}; {kept}", partial=report) from exc
    return result


def _whole_seeds(result: PredictorBench) -> tuple[dict[str, Any], str]:
    """The report of the seeds whose every fit finished (the seed cut short is not counted:
    every predictor and size keeps the same seeds), and how many fits that is."""
    done = len(result.runs)
    total = result.seeds * len(result.train_sizes) * len(result.predictors)
    per_seed = len(result.train_sizes) * len(result.predictors)
    fits = Counter(r["seed"] for r in result.runs)
    finished = sorted(seed for seed, n in fits.items() if n == per_seed)
    result.runs = [r for r in result.runs if r["seed"] in finished]
    result.samples = [x for x in result.samples if x["seed"] in finished]
    report = result.to_json()
    report["seeds"] = finished  # the seeds run, not those asked for
    if not finished and done:  # fits finished, but no seed's every fit: nothing to write yet
        return report, (f"{done} of {total} fits finished, no whole seed yet (only "
                        "whole seeds are written)")
    seed_s = "seed" if len(finished) == 1 else "seeds"
    return report, f"{done} of {total} fits finished ({len(finished)} whole {seed_s} kept)"


def _with_signals(predictors: Sequence[str], given: dict[str, dict[str, Any]],
                  arch_inputs: str | None, aux_targets: str | None
                  ) -> dict[str, dict[str, Any]]:
    """Every predictor's parameters, with ``arch_inputs`` / ``aux_targets`` added for the
    predictors that take such signals (unless their own parameters set them). Parameters of
    predictors not benchmarked are kept, so that ``check_predictors`` names them."""
    params = {name: dict(p) for name, p in given.items()}
    for flag, value, attr in (("--arch-inputs", arch_inputs, "uses_arch_inputs"),
                              ("--aux-targets", aux_targets, "uses_aux_targets")):
        takers = [n for n in predictors if getattr(predictor_class(n), attr)]
        if value is not None and not takers:  # it would be ignored in silence
            raise ArchrankError(f"{flag}: none of the predictors benchmarked "
                                f"({', '.join(predictors)}) takes such signals (gates++ does)")
    for name in predictors:
        p = params.setdefault(name, {})
        klass = predictor_class(name)
        if arch_inputs is not None and klass.uses_arch_inputs:
            p.setdefault("arch_inputs", arch_inputs)
        if aux_targets is not None and klass.uses_aux_targets:
            p.setdefault("aux_targets", aux_targets)
    return params


def _rows(matrix: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if matrix is None else matrix[idx]


def _splits(result: PredictorBench, n: int, hashes: np.ndarray | None
            ) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """Every (seed, size) split of ``n`` rows into training and test rows, each checked
    (``hashes``: leave the training rows' twins out of the test set)."""
    splits = {}
    for seed in range(result.first_seed, result.first_seed + result.seeds):
        for size in result.train_sizes:
            train, test = train_split(n, size, seed)
            if hashes is not None:
                test = test[~np.isin(hashes[test], hashes[train])]
            if len(test) < 2:
                raise ArchrankError(
                    f"seed {seed}, {size} training rows: {len(test)} test rows are left"
                    + (" once the training rows' twins are dropped (--drop-twins)"
                       if hashes is not None else "") + "; use fewer --train-sizes rows")
            splits[seed, size] = train, test
    return splits


def _fit_all(result: PredictorBench, space: SearchSpace, graphs: GraphBatch, y: np.ndarray,
             params: dict[str, dict[str, Any]],
             signals_of: Callable[[Any], dict[str, np.ndarray | None]],
             progress: Progress | None, hashes: np.ndarray | None = None,
             log: BenchJournal | None = None, tags: dict[str, str] | None = None) -> None:
    """Every (seed, size, predictor) fit of ``result``'s settings, appended to its runs
    (``hashes``: each row's, to leave the training rows' twins out of the test set; ``log``:
    the fits journaled already are taken from it, each new one is added)."""
    log = log or BenchJournal(None, "bench predictor", {})
    first_seed, seeds, predictors = result.first_seed, result.seeds, result.predictors
    train_sizes = result.train_sizes
    splits = _splits(result, len(y), hashes)
    for seed in range(first_seed, first_seed + seeds):
        for size in train_sizes:
            train, test = splits[seed, size]
            g_train, g_test = graphs[train], graphs[test]
            for name in predictors:
                key = (name, (tags or {}).get(name, ""), size, seed)
                journaled = log.get(key)
                if journaled is not None:
                    result.runs.append(journaled["run"])
                    if seed == first_seed:
                        result.samples.append(journaled["sample"])
                    continue
                model = make_predictor(name, space, seed=seed, **params[name])
                sig = signals_of(model)
                t0 = time.perf_counter()
                alike = False
                try:
                    model.fit(g_train, y[train],
                              arch_features=_rows(sig["arch_features"], train),
                              aux=_rows(sig["aux"], train))
                    t1 = time.perf_counter()
                    scores = model.predict(g_test, _rows(sig["arch_features"], test))
                except ConstantTargets:  # a tie-heavy metric's small training set: no ranking
                    alike, t1 = True, time.perf_counter()  # to learn, so no tau (not a crash)
                    scores = np.zeros(len(test))
                t2 = time.perf_counter()
                report = ranking_report(y[test], scores)
                if alike:
                    report = dict.fromkeys(report, math.nan)
                run = {"predictor": name, "train_size": size, "seed": seed,
                       "test_size": len(test), **report,
                       "fit_seconds": t1 - t0, "predict_seconds": t2 - t1}
                if alike:
                    run["targets_alike"] = True
                sample = _sample(name, size, seed, y[test], scores)
                log.add(key, {"run": run, "sample": sample})
                result.runs.append(run)
                if seed == first_seed:
                    result.samples.append(sample)
                if progress:
                    progress(f"seed {seed} n={size} {name}: tau {report['kendall_tau']:.3f} "
                             f"fit {t1 - t0:.1f}s predict {t2 - t1:.2f}s")


# -- speed --------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], list[float]]:
    """Median wall seconds, every wall time, and the process CPU seconds of each call (the
    CPU time is less disturbed by other processes competing for the cores)."""
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), times, cpu


def bench_speed(
    *,
    bench_spec: str | None = None,
    metric: str = "cifar10_test",
    predictor: str = "gates",
    train_size: int = 1000,
    repeats: int = 3,
    nb201: bool = True,
    nb101: bool = True,
    darts: bool = True,
    params: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Median wall-clock seconds of GATES: fit on ``train_size`` nb201 cells, score all of
    nb201, score all of nb101 (its enumeration cached on disk after the first run), and on
    darts build and score a pool of 100,000 sampled genotypes.

    The training targets come from ``bench_spec`` (an nb201 table) when given; otherwise from
    a synthetic score (number of 3x3 convolutions, plus noise), which costs the same to fit.
    """
    say = progress or (lambda _msg: None)
    out: dict[str, Any] = {"command": "bench speed", "predictor": predictor,
                           "params": params or {}, "machine": machine_info(),
                           "repeats": repeats}
    if nb201:
        out.update(_speed_nb201(bench_spec, metric, predictor, train_size, repeats, params,
                                say))
    if nb101:
        space101 = get_space("nb101")
        t0 = time.perf_counter()
        graphs101 = space101.enumerate_graphs()  # type: ignore[attr-defined]
        load_101 = time.perf_counter() - t0
        rng101 = np.random.default_rng(1)
        idx = rng101.choice(len(graphs101), size=min(train_size, len(graphs101)), replace=False)
        sub = graphs101[idx]
        y101 = (sub.ops == space101.node_op_names.index("conv3x3-bn-relu")).sum(1).numpy()
        model101 = make_predictor(predictor, space101, seed=0, **(params or {}))
        model101.fit(sub, y101.astype(float) + rng101.normal(0, 0.3, size=len(y101)))
        model101.predict(graphs101[:1024])
        score_101, times_101, cpu_101 = _timed(lambda: model101.predict(graphs101), repeats)
        say(f"score all {len(graphs101)} nb101 cells: {score_101:.2f}s")
        out["score_nb101"] = {"cells": len(graphs101), "median_seconds": score_101,
                              "seconds": times_101, "cpu_seconds": cpu_101,
                              "enumeration_seconds": load_101}
    if darts:
        out.update(_speed_darts(predictor, params, repeats, say))
    return out


def _speed_nb201(bench_spec: str | None, metric: str, predictor: str, train_size: int,
                 repeats: int, params: dict[str, Any] | None,
                 say: Callable[[str], None]) -> dict[str, Any]:
    """Fit on ``train_size`` nb201 cells, then score all of nb201."""
    space = get_space("nb201")
    t0 = time.perf_counter()
    all_graphs = space.to_graphs(space.enumerate())
    convert_201 = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    train = rng.choice(len(all_graphs), size=train_size, replace=False)
    if bench_spec:
        bench = load_benchmark(bench_spec, space, one_table=True)
        values = np.asarray(bench.scores(metric, ranking=True), dtype=np.float64)
        ok = np.flatnonzero(np.isfinite(values))
        train = rng.choice(ok, size=min(train_size, len(ok)), replace=False)
        g_train = table_graphs(space, [bench.archs[i] for i in train])
        y_train = values[train]
        source = f"{bench_spec}:{metric}"
    else:
        g_train = all_graphs[train]
        conv = space.edge_op_names.index("nor_conv_3x3")
        edge_ops = g_train.edge_ops
        assert edge_ops is not None
        y_train = ((edge_ops == conv) & (g_train.adj > 0)).sum((1, 2)).numpy().astype(float)
        y_train = y_train + rng.normal(0, 0.3, size=len(y_train))
        source = "synthetic (number of nor_conv_3x3 + noise)"

    fits, fit_cpu = [], []
    model = None
    for k in range(repeats):
        model = make_predictor(predictor, space, seed=k, **(params or {}))
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(g_train, y_train)
        fits.append(time.perf_counter() - t0)
        fit_cpu.append(time.process_time() - c0)
        say(f"fit on {len(y_train)} nb201 cells: {fits[-1]:.2f}s (cpu {fit_cpu[-1]:.2f}s)")
    assert model is not None
    model.predict(all_graphs[:1024])  # warm-up (thread pool, allocator)
    score_201, times_201, cpu_201 = _timed(lambda: model.predict(all_graphs), repeats)
    say(f"score all {len(all_graphs)} nb201 cells: {score_201:.3f}s")
    return {
        "fit_nb201": {"cells": len(y_train), "targets": source,
                      "median_seconds": statistics.median(fits), "seconds": fits,
                      "cpu_seconds": fit_cpu},
        "score_nb201": {"cells": len(all_graphs), "median_seconds": score_201,
                        "seconds": times_201, "cpu_seconds": cpu_201,
                        "to_graphs_seconds": convert_201},
    }


def _speed_darts(predictor: str, params: dict[str, Any] | None, repeats: int,
                 say: Callable[[str], None], n: int = 100_000) -> dict[str, Any]:
    """The DARTS space, which is sampled rather than enumerated: time drawing ``n``
    genotypes, hashing them and building their graph tensors (the candidate pool of a guided
    search), then scoring them with a predictor fitted on 200 of them (synthetic targets:
    separable convolutions in the normal cell, plus noise)."""
    space = get_space("darts")
    rng = np.random.default_rng(2)
    stages: dict[str, list[float]] = {"sample": [], "hash": [], "graphs": []}
    cpu = []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        pool = space.sample(n, rng)
        t1 = time.perf_counter()
        space.hash_many(pool)
        t2 = time.perf_counter()
        graphs = space.to_graphs(pool)
        t3 = time.perf_counter()
        cpu.append(time.process_time() - c0)
        for key, took in zip(stages, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            stages[key].append(took)
    total = [sum(parts) for parts in zip(*stages.values(), strict=True)]
    say(f"sample + hash + graphs of {n:,} darts genotypes: {statistics.median(total):.2f}s")
    sep = [space.node_op_names.index(o) for o in ("sep_conv_3x3", "sep_conv_5x5")]
    train = graphs[:200]
    y = np.isin(train.ops[:, 2:10].numpy(), sep).sum(1) + rng.normal(0, 0.3, size=200)
    model = make_predictor(predictor, space, seed=0, **(params or {})).fit(train, y)
    model.predict(graphs[:1024])
    score, times, score_cpu = _timed(lambda: model.predict(graphs), repeats)
    say(f"score {n:,} darts genotypes: {score:.2f}s")
    return {
        "pool_darts": {"cells": n, "median_seconds": statistics.median(total),
                       "seconds": total, "cpu_seconds": cpu,
                       **{f"{k}_seconds": v for k, v in stages.items()}},
        "score_darts": {"cells": n, "median_seconds": score, "seconds": times,
                        "cpu_seconds": score_cpu, "members": len(getattr(model, "models_", [])),
                        "load_average_after": (list(os.getloadavg())
                                               if hasattr(os, "getloadavg") else None)},
    }
