"""``archrank bench search``: strategies side by side on a benchmark table, over many seeds.

Every (strategy, seed) pair is one ordinary search (same loop, an in-memory run store) on the
table's oracle; the summary per strategy is what the search literature reports: how many
queries it took to find the table's best cell (median over the seeds that found it, and how
many did), the mean best value after 50/100/150 queries, and the mean best-so-far curve.
Seeds can run in parallel processes (``jobs``).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from archrank.bench.common import check_seeds, envelope, interrupted
from archrank.bench.journal import BenchJournal
from archrank.errors import ArchrankError, FailedWithPartial, Interrupted, first_line
from archrank.executors import process_pool, stop_pool
from archrank.runs.config import SearchConfig, build_oracle, build_strategy, cap_budget
from archrank.runs.loop import run_search
from archrank.runs.store import RunStore

CHECKPOINTS = (50, 100, 150)
# What ``bench search --json`` writes (``archrank report`` reads by kind; bump the schema when a
# field changes meaning). Schema 1 added per-strategy ``runs``: each seed's best-so-far curve
# (as long as the search ran), queries to the optimum and best cell. Schema 2: the shared
# envelope of ``bench.common`` (``seeds`` is the list of seeds, no longer their number;
# ``command`` and ``machine`` added).
KIND = "bench-search"
SCHEMA = 3  # 3: per-strategy "settings"


def _threads_param(config: SearchConfig, threads: int) -> SearchConfig:
    """Give a torch predictor ``threads`` predict workers (unless the user chose)."""
    if config.strategy != "guided" or config.predictor is None:
        return config
    from archrank.predictors.base import predictor_class
    from archrank.predictors.neural import NeuralPredictor

    if not issubclass(predictor_class(config.predictor), NeuralPredictor):
        return config
    params = dict(config.strategy_params)
    pred = dict(params.get("predictor_params") or {})
    pred.setdefault("threads", threads)
    params["predictor_params"] = pred
    return replace(config, strategy_params=params)


def run_one(config: SearchConfig, threads: int | None = None,
            stop_at_optimum: bool = False,
            on_result: Callable[[Any, int, Any], None] | None = None) -> dict[str, Any]:
    """One seed of one strategy: its best-so-far curve and statistics.

    ``stop_at_optimum`` ends the search once it found the table's best value; the best-so-far
    curve is then that value up to the budget, as if the search had gone on. ``on_result``:
    ``run_search``'s progress callback.
    """
    if threads:
        config = _threads_param(config, threads)
    t0 = time.perf_counter()
    oracle = build_oracle(config)
    optimum = oracle.optimum()  # type: ignore[attr-defined]
    strategy = build_strategy(config)
    with RunStore.memory(config.to_dict()) as store:
        result = run_search(strategy, oracle, store, budget=config.budget,
                            max_consecutive_failures=None,
                            target=optimum if stop_at_optimum else None,
                            on_result=on_result)
    if result.interrupted:  # a cut-short seed is no result: never count it
        raise KeyboardInterrupt
    best = result.best
    out = {
        "label": config.label,
        "seed": config.seed,
        "curve": [float(v) for v in result.best_curve()],
        "queries_to_optimum": result.queries_to(optimum),
        "best": None if best is None else best.objective,
        "best_arch": None if best is None else best.arch,
        "failed": result.n_failed,
        "seconds": time.perf_counter() - t0,
    }
    if hasattr(strategy, "fit_seconds"):
        out["fit_seconds"] = strategy.fit_seconds
        out["fits"] = strategy.n_fits
    return out


def _mean_curve(curves: Sequence[Sequence[float]], budget: int) -> list[float | None]:
    """Mean best-so-far per query count (a short run carries its last value forward); None
    where some seed has found nothing yet (its first evaluations failed): a mean over the
    seeds that had would be biased upwards."""
    if not curves:
        return []
    mat = np.full((len(curves), budget), np.nan)
    for i, c in enumerate(curves):
        c = np.asarray(c, dtype=np.float64)
        if len(c):
            mat[i, : len(c)] = c
            mat[i, len(c):] = c[-1]
    mat[~np.isfinite(mat)] = np.nan
    mean = mat.mean(axis=0)  # NaN wherever a seed has no value yet
    return [None if not math.isfinite(v) else round(float(v), 6) for v in mean]


def summarise(runs: Sequence[dict[str, Any]], budget: int) -> dict[str, Any]:
    """The per-strategy entry of the JSON report."""
    qs = [r["queries_to_optimum"] for r in runs]
    reached = [q for q in qs if q is not None]
    curve = _mean_curve([r["curve"] for r in runs], budget)
    points = [c for c in CHECKPOINTS if c <= budget]
    if budget not in points:
        points.append(budget)
    best_at = {str(p): curve[p - 1] for p in points}
    out: dict[str, Any] = {
        "queries_to_optimum": {
            "median": float(np.median(reached)) if reached else None,
            "reached": len(reached),
            "seeds": len(runs),
            "per_seed": qs,
        },
        "best_at": best_at,
        "final_best": {"mean": _mean([r["best"] for r in runs]),
                       "min": _min([r["best"] for r in runs])},
        "failed": int(sum(r["failed"] for r in runs)),
        "seconds": {"total": round(sum(r["seconds"] for r in runs), 2),
                    "median_per_seed": round(float(np.median([r["seconds"] for r in runs])), 2)},
        "curve": curve,
        "runs": [{"seed": r.get("seed"), "curve": [round(v, 6) if math.isfinite(v) else None
                                                 for v in r["curve"]],
                  "queries_to_optimum": r["queries_to_optimum"], "best": r["best"],
                  "best_arch": r.get("best_arch")} for r in runs],
    }
    if any("fit_seconds" in r for r in runs):
        out["fit_seconds_per_seed"] = round(float(np.median(
            [r.get("fit_seconds", 0.0) for r in runs])), 2)
    return out


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(np.mean(vals)) if vals else None


def _min(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(np.min(vals)) if vals else None


def bench_search(
    base: SearchConfig,
    strategies: Sequence[str],
    seeds: int,
    *,
    jobs: int = 1,
    stop_at_optimum: bool = True,
    strategy_params: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
    first_seed: int = 0,
    journal: Path | None = None,
) -> dict[str, Any]:
    """Run every strategy for seeds ``first_seed..first_seed+seeds-1`` with ``base``'s
    settings; a JSON report (a later run can check on fresh seeds a setting chosen on the
    first ones).

    ``stop_at_optimum`` (default) ends each search when it finds the table's best value: the
    figures are the same (best-so-far stays at the optimum) and it saves time, which makes
    large budgets (queries to the optimum without a cap) affordable.

    ``journal`` (``bench.journal``): every finished search is recorded there, and the
    searches it already holds (same table, budget and resolved strategy settings) are not
    run again.
    """
    check_seeds(seeds, first_seed)
    if jobs < 1:
        raise ArchrankError(f"--jobs must be at least 1, not {jobs}")
    if not strategies:
        raise ArchrankError("--strategies is empty")
    strategy_params = strategy_params or {}
    unused = sorted(set(strategy_params) - set(strategies))
    if unused:
        raise ArchrankError(f"--set {unused[0]}.*: {unused[0]!r} is not among --strategies "
                            f"({', '.join(strategies)})")
    configs: list[SearchConfig] = []
    labels: list[str] = []
    for name in strategies:
        params = dict(strategy_params.get(name, {}))
        if "predictor" in params:  # bench search has no --predictor: the name says it
            raise ArchrankError(f"--set {name}.predictor: name the predictor as a strategy "
                                f"instead (--strategies {params['predictor']}: guided search "
                                "with that predictor)")
        cfg = replace(base, strategy=name, predictor=None, strategy_params=params)
        if cfg.label in labels:
            raise ArchrankError(f"strategy {name!r} is listed twice")
        labels.append(cfg.label)
        configs.extend(replace(cfg, seed=s) for s in range(first_seed, first_seed + seeds))
    # Fail fast (missing table, bad metric, uncovered space, a bad --set option) before any
    # process starts.
    oracle = build_oracle(base)
    optimum = oracle.optimum()  # type: ignore[attr-defined]
    settings: dict[str, dict[str, Any]] = {}  # each strategy's settings, defaults resolved
    for cfg in configs[::seeds]:
        described = build_strategy(cfg).describe()
        described.pop("seed", None)
        settings[cfg.label] = described

    capped, note = cap_budget(base)
    if note is not None:  # a search ends by then; its curve would be padded to the budget
        warnings.warn(note, stacklevel=2)
        base = capped
        configs = [replace(cfg, budget=capped.budget) for cfg in configs]
    described_base = base.to_dict()
    described_base.pop("seed", None)
    log = BenchJournal(journal, "bench search", {
        "search": described_base, "optimum": optimum, "stop_at_optimum": stop_at_optimum,
        "table": oracle.bench.fingerprint()})  # type: ignore[attr-defined]  # edited: new
    # each search's key holds its strategy's resolved settings
    tags = {label: BenchJournal.digest(described) for label, described in settings.items()}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    threads = max(1, cores // jobs)
    t0 = time.perf_counter()
    def key(label: str, seed: int) -> tuple[str, str, int]:
        return label, tags[label], seed

    # the searches journaled by an earlier, interrupted run of this command are not redone
    journaled = {(cfg.label, cfg.seed): log.get(key(cfg.label, cfg.seed)) for cfg in configs}
    results: list[dict[str, Any]] = [r for r in journaled.values() if r is not None]
    todo = [cfg for cfg in configs if journaled[cfg.label, cfg.seed] is None]
    order = {(cfg.label, cfg.seed): i for i, cfg in enumerate(configs)}

    def finish(run: dict[str, Any]) -> None:
        log.add(key(run["label"], run["seed"]), run)
        results.append(run)
        if progress:
            progress(run, len(results), len(configs))

    def report() -> dict[str, Any]:
        results.sort(key=lambda r: order[(r["label"], r["seed"])])  # as if never interrupted
        finished = sorted({int(r["seed"]) for r in results})
        out = _report(base, range(first_seed, first_seed + seeds), labels, results, optimum,
                      jobs, stop_at_optimum, time.perf_counter() - t0)
        if len(results) < len(configs):  # the seeds run, not those asked for
            out["seeds"] = finished
        out["first_seed"] = first_seed
        for label, entry in out["strategies"].items():
            entry["settings"] = settings.get(label, {})
        return out

    try:
        _run_all(todo, jobs, threads, stop_at_optimum, finish, report, len(configs))
    finally:
        log.close()
    return report()


def _run_all(todo: list[SearchConfig], jobs: int, threads: int, stop_at_optimum: bool,
             finish: Callable[[dict[str, Any]], None], report: Callable[[], dict[str, Any]],
             total: int) -> None:
    """Run the searches ``todo`` (in ``jobs`` processes), each handed to ``finish``; on
    Ctrl-C or a failure, the report of what finished travels with the exception."""
    if jobs == 1:
        try:
            for cfg in todo:
                finish(run_one(cfg, threads, stop_at_optimum))
        except KeyboardInterrupt:
            raise _interrupted(report(), total) from None
        except Exception as exc:  # the finished seeds are kept, as on Ctrl-C
            raise _failed(report(), total, exc) from exc
    else:
        pool = process_pool(jobs, threads, option="--jobs")
        futures = [pool.submit(run_one, cfg, threads, stop_at_optimum) for cfg in todo]
        taken = 0
        try:
            for fut in futures:
                run = fut.result()
                taken += 1  # before finish: a Ctrl-C inside it must not finish it twice
                finish(run)
        except (KeyboardInterrupt, Exception) as exc:
            # Ctrl-C, or one search failing (a worker killed for memory...): the seeds that
            # finished are kept, for the CLI to write to --json, rather than thrown away
            stop_pool(pool)
            for f in futures[taken:]:
                if f.done() and not f.cancelled() and f.exception() is None:
                    finish(f.result())
            if isinstance(exc, KeyboardInterrupt):
                raise _interrupted(report(), total) from None
            raise _failed(report(), total, exc) from exc
        finally:
            stop_pool(pool)


def _interrupted(report: dict[str, Any], total: int) -> Interrupted:
    """Ctrl-C / SIGTERM during ``bench_search``: the report of the seeds that finished."""
    return interrupted(report, f"interrupted: {_finished(report)} of {total} searches "
                       "finished (a search cut short is never counted)")


def _failed(report: dict[str, Any], total: int, cause: BaseException) -> FailedWithPartial:
    """A search that failed during ``bench_search``: a one-line error with the report of the
    seeds that finished (``"interrupted": true`` in it, as they are not all)."""
    report["interrupted"] = True
    if isinstance(cause, ArchrankError):  # whole: its last words say how to fix it
        why = str(cause)
    else:
        why = f"a search failed ({type(cause).__name__}: {first_line(cause)})"
    return FailedWithPartial(f"{why}; {_finished(report)} of {total} searches finished",
                             partial=report)


def _finished(report: dict[str, Any]) -> int:
    """The searches a partial report holds."""
    return sum(e["queries_to_optimum"]["seeds"] for e in report["strategies"].values())


def _report(base: SearchConfig, seeds: range, labels: list[str], results: list[dict[str, Any]],
            optimum: float, jobs: int, stop_at_optimum: bool,
            seconds: float) -> dict[str, Any]:
    """The JSON report of the finished searches (per strategy, in the order given)."""
    by_label: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for r in results:
        by_label[r["label"]].append(r)
    return envelope(
        KIND, SCHEMA, "bench search", seeds,
        space=base.space, bench=base.bench, metric=base.metric,
        space_from_bench=base.space_from_bench, budget=base.budget, optimum=optimum,
        jobs=jobs, stop_at_optimum=stop_at_optimum, seconds=round(seconds, 2),
        strategies={label: summarise(rs, base.budget) for label, rs in by_label.items()
                    if rs})
