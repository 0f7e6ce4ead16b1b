"""``archrank search``, ``bench search``, ``runs export|show`` and ``demo``."""

from __future__ import annotations

import contextlib
import inspect
import json
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from archrank.cli.app import (
    FILTER_HELP,
    PREDICTOR_NAMES,
    app,
    bench_app,
    check_least,
    check_network_size,
    check_seed_option,
    console,
    err,
    ignore_stop_signals,
    parse_sets,
)
from archrank.errors import ArchrankError, FailedWithPartial, Interrupted
from archrank.files import (
    check_output,
    check_plot_dir,
    hold_lock,
    open_output,
    write_json,
    write_output,
)
from archrank.tables import with_filters

runs_app = typer.Typer(
    help="Inspect and export search run directories (also while the search is running, or "
    "when the directory is read-only).\n\n"
    "Examples:\n\n  archrank runs show runs/demo\n\n"
    "  archrank runs export runs/demo --csv --out evals.csv",
    no_args_is_help=True)
app.add_typer(runs_app, name="runs")

DEFAULTS: dict[str, Any] = {"strategy": "gates", "budget": 100, "seed": 0, "workers": 1,
                            "space_from_bench": False}


# -- helpers ---------------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}".rstrip("0").rstrip(".")


def _default_run_dir(label: str, space: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{label}-{space}-seed{seed}-{stamp}"


def _create_default(directory: Path, config: dict[str, Any], inputs: Any) -> tuple[Any, Path]:
    """Create a run under its default name, or under NAME-2, NAME-3, ... when another search
    took that name in the same second (searches started together)."""
    from archrank.runs.store import RunExists, RunStore

    for k in range(1, 100):
        candidate = directory if k == 1 else directory.with_name(f"{directory.name}-{k}")
        try:
            return RunStore.create(candidate, config, inputs), candidate
        except RunExists:
            continue
    raise ArchrankError(f"{directory}: a hundred runs of that name; give --run-dir")


# -- archrank search -------------------------------------------------------------------------
# `archrank search` with no options: real NAS end to end on a dataset that needs no download.
# Its dataset is plain mnist1d, recorded by its full name (``_oracle_params``).
MAIN_JOB: dict[str, Any] = {
    "space": "nb201", "oracle": "train", "metric": "val_acc", "strategy": "gates",
    "budget": 40, "max_in_flight": 2,
}


_TRAINING_ONLY = ("--dataset, --epochs, --train-seed, --width and --depth only apply to "
                  "--oracle train")


def _oracle_params(oracle: str | None, dataset: str | None, epochs: int | None,
                   train_seed: int | None = None, supernet: Path | None = None,
                   width: int | None = None, depth: int | None = None
                   ) -> dict[str, Any] | None:
    """Options of ``--oracle train`` (the dataset as ``datasets.canonical_spec`` records it:
    a file as an absolute path, so a resume from another directory trains on the same data,
    plain ``mnist1d`` by its full name) or ``--oracle supernet`` (the checkpoint)."""
    from archrank.datasets import canonical_spec

    training = {"dataset": dataset, "epochs": epochs, "train_seed": train_seed, "width": width,
                "depth": depth}
    only = _TRAINING_ONLY
    if supernet is not None or oracle == "supernet":
        if oracle != "supernet":
            raise ArchrankError("--supernet only applies to --oracle supernet")
        if supernet is None:
            raise ArchrankError("--oracle supernet needs --supernet CKPT (a trained supernet)")
        if any(v is not None for v in training.values()):
            raise ArchrankError(only)
        return {"supernet": str(Path(supernet).expanduser().resolve())}
    if all(v is None for v in training.values()):
        return {"dataset": canonical_spec("mnist1d")} if oracle == "train" else None
    if oracle not in (None, "train"):
        raise ArchrankError(only)
    check_least(epochs=(epochs, 1), width=(width, 1), depth=(depth, 1))
    params: dict[str, Any] = {"dataset": canonical_spec(dataset or "mnist1d")}
    params.update({k: v for k, v in (("width", width), ("depth", depth)) if v is not None})
    if epochs is not None:
        params["epochs"] = epochs
    if train_seed is not None:
        if not 0 <= train_seed < 2**63:  # before the run directory exists
            raise ArchrankError(f"--train-seed must lie in 0..2^63-1, got {train_seed}")
        params["train_seed"] = train_seed
    return params


def resolve_run(
    options: dict[str, Any], run_dir: Path | None, resume: Path | None
) -> tuple[Any, Path, bool]:
    """The configuration and run directory of a search command.

    ``options`` holds the options the user gave explicitly (others are ``None``). Returns
    ``(config, run_dir, existing)``.
    """
    from archrank.runs.config import SearchConfig, as_recorded, cap_budget
    from archrank.runs.store import RunStore

    given = {k: v for k, v in options.items() if v is not None}
    if run_dir is not None and str(run_dir) in ("", ".") and not RunStore.exists(run_dir):
        # Path("") is the working folder: a new run would be written among the user's files
        raise ArchrankError("--run-dir: give a folder for the run (an empty path is the "
                            "working folder)")
    if resume is not None and run_dir is not None and Path(run_dir) != Path(resume):
        raise ArchrankError("give either --resume RUN_DIR or --run-dir, not both")
    target = resume or run_dir
    if resume is not None or (target is not None and RunStore.exists(target)
                              and not RunStore.half_created(target)):
        assert target is not None
        with RunStore.open(target) as store:
            store_inputs = store.inputs
            raw = SearchConfig.from_dict(store.config)
        recorded = as_recorded(raw, store_inputs)
        if resume is not None or not {"space", "metric"} <= set(given):
            # explicit options only, read as the record is
            wanted = as_recorded(replace(raw, **given), store_inputs, raw)
        else:
            wanted = SearchConfig(**{**_config_defaults(), **given})
            # not options: whether the run takes its predictor's guided defaults, and the
            # predictor defaults of which session, are the record's
            wanted = as_recorded(replace(wanted, predictor_defaults=recorded.predictor_defaults,
                                         defaults_session=recorded.defaults_session),
                                 store_inputs, raw)
        if wanted.budget > recorded.budget and cap_budget(wanted)[0].budget == recorded.budget:
            wanted = replace(wanted, budget=recorded.budget)  # the same command, capped alike
        diff = recorded.differences(wanted)
        if diff:
            mine = wanted.differences(recorded)
            raise ArchrankError(
                f"run directory {target} was created with {', '.join(diff)}; "
                f"got {', '.join(mine)} (use another --run-dir for a different search)"
            )
        return recorded, Path(target), True
    real = given.get("oracle") in ("train", "supernet")
    needed = ("space", "metric") if real else ("space", "bench", "metric")
    missing = [f"--{k}" for k in needed if k not in given]
    if missing:
        raise ArchrankError(
            f"missing {', '.join(missing)} (or --resume RUN_DIR to continue a run); "
            "e.g. archrank search --space nb201 --bench ../shared/data/nb201.csv "
            "--metric cifar10_test"
        )
    config = SearchConfig(**{**_config_defaults(), **given})
    return config, Path(run_dir) if run_dir else _default_run_dir(
        config.label, config.space, config.seed), False


def _config_defaults() -> dict[str, Any]:
    return {"strategy": DEFAULTS["strategy"], "budget": DEFAULTS["budget"],
            "seed": DEFAULTS["seed"], "max_in_flight": DEFAULTS["workers"],
            "space_from_bench": DEFAULTS["space_from_bench"]}


@app.command("search")
def search(
    space: str | None = typer.Option(None, "--space",
                                     help="Search space: nb101, nb201, nbgraph, darts."),
    bench: str | None = typer.Option(None, "--bench",
                                     help="Benchmark table answering queries (file or "
                                     "nbgraph:DATASET)."),
    metric: str | None = typer.Option(None, "--metric", help="Column to maximise."),
    filters: list[str] | None = typer.Option(None, "--filter", help=FILTER_HELP),
    strategy: str | None = typer.Option(
        None, "--strategy",
        help="random, rea, ls, gates (default) or guided / any predictor name."),
    predictor: str | None = typer.Option(None, "--predictor",
                                         help=f"Predictor of guided search (default gates): "
                                         f"{PREDICTOR_NAMES}."),
    budget: int | None = typer.Option(None, "--budget", help="Evaluations to spend (100)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (0)."),
    space_from_bench: bool | None = typer.Option(
        None, "--space-from-bench/--whole-space",
        help="Search only the architectures the table holds (for partial tables)."),
    workers: int | None = typer.Option(None, "--workers",
                                       help="Evaluations in parallel (process pool) (1)."),
    sets: list[str] | None = typer.Option(
        None, "--set", help="Strategy option, e.g. explore=0.2 or predictor.epochs=50."),
    run_dir: Path | None = typer.Option(None, "--run-dir",
                                        help="Run directory (default runs/NAME-...); "
                                        "given alone, continues the run recorded there."),
    resume: Path | None = typer.Option(None, "--resume",
                                       help="Continue the run in this directory."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the summary here."),
    oracle: str | None = typer.Option(
        None, "--oracle", help="table (a benchmark answers), train (real training) or "
        "supernet (shared weights of a trained supernet)."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="With --oracle train: mnist1d (default), digits or a .npz file "
        "with x_train/y_train/x_val/y_val (x_test/y_test optional)."),
    epochs: int | None = typer.Option(None, "--epochs",
                                      help="With --oracle train: epochs per network (default: "
                                      "the dataset's, 5 on MNIST-1D, 20 on digits, 10 else)."),
    train_seed: int | None = typer.Option(
        None, "--train-seed", help="With --oracle train: seed of the weights and batch order "
        "(default: --seed), recorded in the run."),
    width: int | None = typer.Option(
        None, "--width", help="With --oracle train: the network's width, stem channels on "
        "nb201 / nb101, C on darts (stem 3C) (default per space and dataset: nb201 on "
        "mnist1d 16)."),
    depth: int | None = typer.Option(
        None, "--depth", help="With --oracle train: cells per stage; darts: all cells, at "
        "least 3 (default per space)."),
    supernet: Path | None = typer.Option(
        None, "--supernet", help="With --oracle supernet: the checkpoint of archrank oneshot "
        "train."),
    executor_kind: str | None = typer.Option(
        None, "--executor", help="inline, process (default with --workers > 1) or dask."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:port) for --executor dask."),
) -> None:
    """Search a space for its best architecture, recording every evaluation in a run directory.

    With no options at all this is archrank's main job: a GATES-guided search over the
    NAS-Bench-201 cell space with real training on MNIST-1D at the committed truth's recipe
    (width 16, 3,200 / 12,800 training / validation signals; budget 40, 2 workers), under
    runs/ in the working folder; run again after a Ctrl-C, it continues the run it stopped.

    The run directory (SQLite) records each evaluation as it completes; after a crash or
    Ctrl-C, --resume continues without re-evaluating anything recorded (the evaluations
    that were running are run again) and ends as the uninterrupted run would have.

    Example:
      archrank search --space nb201 --bench ../shared/data/nb201.csv --metric cifar10_test \\
        --strategy gates --budget 150 --seed 0 --run-dir runs/demo
      archrank search --resume runs/demo
    """
    from archrank.executors import close_now
    from archrank.runs.config import build_oracle, build_strategy, cap_budget
    from archrank.runs.loop import TooManyFailures, executor_for, run_search
    from archrank.runs.store import RunStore

    if json_out is not None:
        check_output(json_out, "--json", [bench, run_dir, resume])
    check_seed_option(seed)  # what every generator takes, unfolded
    if filters and bench is None:
        raise ArchrankError("--filter applies to the --bench table; give --bench too")
    if oracle is None and resume is None and any(
            v is not None for v in (dataset, epochs, train_seed, width, depth)):
        raise ArchrankError(f"{_TRAINING_ONLY}; add --oracle train")
    if oracle in ("train", "supernet") and bench is not None and not space_from_bench:
        raise ArchrankError(f"--bench with --oracle {oracle} only gives the candidate cells: "
                            "add --space-from-bench (the oracle scores the cells, not the "
                            "table)")
    options = {"space": space, "bench": bench and with_filters(bench, filters),
               "metric": metric, "strategy": strategy,
               "predictor": predictor, "budget": budget, "seed": seed,
               "space_from_bench": space_from_bench, "max_in_flight": workers,
               "strategy_params": parse_sets(sets, own=strategy) if sets else None,
               "oracle": oracle,
               "oracle_params": _oracle_params(oracle, dataset, epochs, train_seed, supernet,
                                               width, depth)}
    if options["oracle_params"] and (space is not None or bench is None):
        # the network, naming the flags (no --space and no table: the main job's space)
        check_network_size(space or MAIN_JOB["space"], dataset, width, depth)
    if (all(v is None for v in options.values()) and resume is None and run_dir is not None
            and RunStore.exists(run_dir)):
        resume, run_dir = run_dir, None  # only a run's directory: continue that run
    if all(v is None for v in options.values()) and resume is None and run_dir is None:
        resume = _unfinished_main_job(Path("runs"))  # the main job a Ctrl-C stopped
        if resume is not None:
            err.print(f"continuing the main job stopped in {resume} (remove that folder to "
                      "start afresh)")
    if all(v is None for v in options.values()) and resume is None:
        options.update(MAIN_JOB, oracle_params=_oracle_params("train", None, None))
    elif options["oracle"] in ("train", "supernet"):
        if options["space"] is None and supernet is not None and resume is None:
            from archrank.oneshot.checkpoint import load_checkpoint

            options["space"] = load_checkpoint(supernet).setting.space  # the supernet's
        options["space"] = options["space"] or "nb201"
        options["metric"] = options["metric"] or "val_acc"
    if resume is not None and options["oracle_params"] is not None:
        # on --resume the training options given are checked one by one against the record
        # (a fresh dict would add the default dataset and drop every recorded option)
        with RunStore.open(resume, readonly=True) as store:
            recorded_config = store.config
        recorded_params = dict(recorded_config.get("oracle_params") or {})
        given_params = dict(options["oracle_params"])
        if dataset is None:
            given_params.pop("dataset", None)
        if given_params.get("train_seed") is not None and "train_seed" not in recorded_params \
                and given_params["train_seed"] == (seed if seed is not None
                                                   else recorded_config.get("seed")):
            given_params.pop("train_seed")  # the search seed, which trained the cells
        options["oracle_params"] = {**recorded_params, **given_params}
    config, directory, existing = resolve_run(options, run_dir, resume)
    the_oracle = build_oracle(config)
    if not existing:  # (a run keeps the budget it was created with)
        config, note = cap_budget(config)
        if note is not None:
            warnings.warn(note, stacklevel=1)
    strat = build_strategy(config)
    inputs = the_oracle.describe()
    # The executor before the run directory: a bad --scheduler leaves nothing behind.
    executor = executor_for(config.max_in_flight, executor_kind, scheduler)
    try:
        if existing:
            store = RunStore.open(directory)
            try:
                store.check_inputs(inputs)
            except ArchrankError:
                store.close()
                raise
        elif run_dir is None and resume is None:  # a default name: another search started
            store, directory = _create_default(directory, config.to_dict(), inputs)
        else:
            store = RunStore.create(directory, config.to_dict(), inputs)
    except BaseException:
        close_now(executor)
        raise
    counts = store.counts()
    done0 = counts["ok"] + counts["failed"]
    best0 = max((r.objective for r in store.records()
                 if r.status == "ok" and r.objective is not None), default=None)
    verb = "resuming" if existing else "starting"
    err.print(f"{verb} {config.label} search on {config.space} ({config.metric}), "
              f"budget {config.budget}, seed {config.seed}: {directory}"
              + (f" ({done0} evaluations recorded)" if existing else ""))
    progress = Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"), TimeElapsedColumn(),
        console=err, transient=False,
    )
    task = progress.add_task(config.label, total=config.budget, completed=done0, best=_fmt(best0))

    def on_result(rec: Any, n_done: int, best: Any) -> None:
        progress.update(task, completed=n_done,
                        best=_fmt(best.objective) if best is not None else "-")

    stopped: TooManyFailures | None = None
    try:
        with progress:
            result = run_search(strat, the_oracle, store, budget=config.budget, executor=executor,
                                max_in_flight=config.max_in_flight, ordered=config.ordered,
                                on_result=on_result)
    except TooManyFailures as exc:  # summarised like an interruption, then the error
        stopped, result = exc, exc.result()
    finally:
        with _shielded():
            close_now(executor)
            store.close()
    summary = search_summary(config, result, directory, strat.describe())
    summary["resumed"] = bool(existing)  # its seconds are this session's
    _print_summary(summary)
    if config.oracle == "train":
        _print_training_summary(summary)
    if json_out is not None:
        write_json(json_out, summary)
    if stopped is not None:
        raise ArchrankError(f"{stopped}; the run is kept in {directory}: once the cause is "
                            f"fixed, archrank search --resume {directory} continues it")
    if result.interrupted:
        raise Interrupted(f"interrupted; resume with: archrank search --resume {directory}")
    failed = [r for r in result.finished if r.status == "failed"]
    if result.best is None and failed:  # nothing to report: not a successful search
        raise ArchrankError(f"every one of the {len(failed)} evaluations failed (first error: "
                            f"{failed[0].error}); the run is kept in {directory}")


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Cleanup that a second Ctrl-C must not cut short: the summary and the resume line come
    after it (GNU timeout and a terminal's process group can deliver two SIGINTs at once)."""
    before = ignore_stop_signals()
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def search_summary(config: Any, result: Any, directory: Path | None,
                   settings: dict[str, Any]) -> dict[str, Any]:
    """The final summary of a search, JSON-able (``settings``: the strategy's ``describe()``,
    its options as searched)."""
    best = result.best
    found_at = None
    if best is not None:
        found_at = 1 + [r.seq for r in result.finished].index(best.seq)
    return {
        "kind": "search-summary",  # no report of its own: the report reads its run_dir
        "schema": 1,
        "run_dir": None if directory is None else str(directory),
        "strategy": config.label,
        "space": config.space,
        "bench": config.bench,
        "metric": config.metric,
        "budget": config.budget,
        "seed": config.seed,
        "queries": result.n_evaluated,
        "failed": result.n_failed,
        "best": None if best is None else {
            "arch": best.arch, "hash": best.hash, "value": best.objective,
            "metrics": best.metrics, "found_at_query": found_at},
        "best_random": _best_random(config, result, settings),
        "interrupted": result.interrupted,
        "exhausted": result.exhausted,
        "seconds": round(result.seconds, 2),
    }


def _best_random(config: Any, result: Any, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The best of the cells a guided search starts from (its first ``n_init``): random, or
    a zero-cost warm start (``start``: "random" or "arch")."""
    if config.strategy != "guided":
        return None
    start = [r for r in sorted(result.finished, key=lambda r: r.seq)[:int(settings["n_init"])]
             if r.status == "ok" and r.objective is not None]
    if not start:
        return None
    best = max(start, key=lambda r: r.objective)
    return {"arch": best.arch, "hash": best.hash, "value": best.objective,
            "metrics": best.metrics, "start": settings["init"]}


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"{summary['strategy']} search · {summary['space']} · "
                        f"{summary['metric']}", show_header=False)
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("", overflow="fold")
    best = summary["best"]
    table.add_row("best cell", best["arch"] if best else "-")
    table.add_row(summary["metric"], _fmt(best["value"]) if best else "-")
    table.add_row("found at query", str(best["found_at_query"]) if best else "-")
    table.add_row("queries used", f"{summary['queries']} of {summary['budget']}"
                  + (f" ({summary['failed']} failed)" if summary["failed"] else "")
                  + ("; every candidate cell evaluated" if summary.get("exhausted")
                     and summary["queries"] < summary["budget"] else ""))
    if summary["run_dir"]:
        table.add_row("run directory", summary["run_dir"])
    table.add_row("time", f"{summary['seconds']:.1f} s"
                  + (" (this session)" if summary.get("resumed") else ""))
    console.print(table)


def _print_training_summary(summary: dict[str, Any]) -> None:
    """Validation and test accuracy of the best cell and of the best random-start cell."""
    table = Table(title="real training: best cells")
    for col in ("", "val_acc", "test_acc", "params", "train s"):
        table.add_column(col, justify="left" if not col else "right")
    start = summary.get("best_random")
    start_label = ("best warm-start cell" if start and start.get("start") == "arch"
                   else "best random cell")
    rows = [(label, rec) for label, rec in (("best found", summary["best"]),
                                            (start_label, start))
            if rec]
    if not rows:  # nothing finished (an interrupt before the first result): no empty table
        return
    for label, rec in rows:
        m = rec["metrics"]
        table.add_row(label, _fmt(m.get("val_acc")), _fmt(m.get("test_acc")),
                      f"{int(m.get('params', 0)):,}", _fmt(m.get("train_seconds")))
    console.print(table)
    for label, rec in rows:
        console.print(f"{label}: {rec['arch']}", soft_wrap=True)


# -- archrank bench search -------------------------------------------------------------------
@bench_app.command("search")
def bench_search_cmd(
    space: str = typer.Option(..., "--space", help="Search space: nb101, nb201, nbgraph."),
    bench: str = typer.Option(..., "--bench", help="Benchmark table (file or nbgraph:DATASET)."),
    metric: str = typer.Option(..., "--metric", help="Column to maximise."),
    filters: list[str] | None = typer.Option(None, "--filter", help=FILTER_HELP),
    strategies: str = typer.Option("random,rea,ls,gates", "--strategies",
                                   help="Comma-separated strategy names."),
    budget: int = typer.Option(150, "--budget", help="Evaluations per search."),
    seeds: int = typer.Option(20, "--seeds", help="Seeds per strategy (FIRST..FIRST+N-1, "
                              "FIRST from --first-seed, 0 by default)."),
    first_seed: int = typer.Option(0, "--first-seed",
                                   help="First seed (seeds FIRST..FIRST+N-1), to check a "
                                   "setting on fresh seeds."),
    space_from_bench: bool = typer.Option(False, "--space-from-bench",
                                          help="Search only the table's architectures."),
    jobs: int = typer.Option(1, "--workers", "--jobs", help="Searches run in parallel "
                             "processes (--workers as in every other command; --jobs, its "
                             "first name, still works)."),
    stop_at_optimum: bool = typer.Option(
        True, "--stop-at-optimum/--full-budget",
        help="End a search once it found the table's best (same figures, less time)."),
    sets: list[str] | None = typer.Option(None, "--set",
                                          help="Strategy option, e.g. gates.explore=0.2, "
                                          "rea.population=50, gates.predictor.epochs=50."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here; each "
                                         "finished unit is journaled beside it "
                                         "(JSON.journal.jsonl) until then, so the same command "
                                         "resumes after a kill."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write the figures (SVG and "
                                     "PNG) to this directory."),
) -> None:
    """Compare search strategies on a benchmark table over many seeds.

    Reports per strategy the queries needed to find the table's best cell (median over the
    seeds that found it, and how many did) and the mean best value after 50, 100 and 150
    queries; the JSON also has the mean best-so-far curve and every seed's curve, and
    --plot DIR writes the curves and the queries-to-optimum distribution as SVG and PNG.

    Example:
      archrank bench search --space nb201 --bench ../shared/data/nb201.csv \\
        --metric cifar10_test --strategies random,rea,ls,gates --budget 150 --seeds 20 \\
        --workers 2 --json out.json
    """
    from archrank.bench.journal import discard, journal_for
    from archrank.bench.search import bench_search
    from archrank.runs.config import SearchConfig

    if json_out is not None:
        check_output(json_out, "--json", [bench])
    check_plot_dir(plot)
    # held till the JSON is written and the journal gone (as in bench predictor)
    lock = json_out and hold_lock(json_out, "this bench's --json")  # noqa: F841
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    bench = with_filters(bench, filters)
    base = SearchConfig(space=space, bench=bench, metric=metric, strategy="random",
                        predictor=None, budget=budget, seed=0,
                        space_from_bench=space_from_bench)

    def progress(run: dict[str, Any], i: int, n: int) -> None:
        q = run["queries_to_optimum"]
        err.print(f"[{i}/{n}] {run['label']} seed {run['seed']}: best "
                  f"{_fmt(run['best'])}, optimum at {q if q else '-'}, "
                  f"{run['seconds']:.1f} s", style="dim")

    try:
        report = bench_search(base, names, seeds, jobs=jobs, stop_at_optimum=stop_at_optimum,
                              strategy_params=parse_sets(sets, prefixed="STRATEGY.KEY"),
                              progress=progress, first_seed=first_seed,
                              journal=journal_for(json_out))
    except (Interrupted, FailedWithPartial) as exc:  # Ctrl-C, or one search failed (exit 2)
        report = exc.partial
        if report and report["strategies"]:
            _print_bench_search(report, bench, metric, budget, seeds, jobs)
        if isinstance(exc, Interrupted):
            raise Interrupted(exc.message + keep_partial(json_out, report)
                              + resume_hint(json_out)) from None
        raise ArchrankError(str(exc) + keep_partial(json_out, report)
                            + resume_hint(json_out)) from None
    _print_bench_search(report, bench, metric, budget, seeds, jobs)
    save_report(report, json_out, plot)
    discard(journal_for(json_out))


def save_report(report: dict[str, Any], json_out: Path | None, plot: Path | None) -> None:
    """A finished bench's ``--json`` and ``--plot DIR`` (its figures as SVG and PNG)."""
    if json_out is not None:
        write_json(json_out, report)
        console.print(f"wrote {json_out}")
    if plot is not None:
        from archrank.report import write_plots

        console.print(f"wrote {len(write_plots(report, plot, json_out or '-'))} plot files "
                      f"to {plot}")


def keep_partial(json_out: Path | None, report: dict[str, Any] | None) -> str:
    """Write an interrupted benchmark's finished part to ``--json``; what to tell the user."""
    if report is None:
        return ""
    finished = next((bool(report[k]) for k in ("runs", "strategies", "per_seed", "methods")
                     if k in report), True)
    if not finished:  # an empty report would replace an earlier, whole one
        return "" if json_out is None else f"; {json_out} is left as it was"
    if json_out is None:
        return "; give --json FILE to keep the finished ones"
    write_json(json_out, report)
    return f"; the finished ones are in {json_out} (\"interrupted\": true)"


def resume_hint(json_out: Path | None) -> str:
    """What to tell the user of an interrupted bench whose finished work is journaled."""
    if json_out is None or str(json_out) == "-":
        return ""
    return "; the same command resumes from its journal"


def _print_bench_search(report: dict[str, Any], bench: str, metric: str, budget: int,
                        seeds: int, jobs: int) -> None:
    listed = report.get("seeds") or list(range(seeds))
    which = (f"{len(listed)} seeds" if listed[0] == 0 else
             f"seeds {listed[0]}-{listed[-1]}" if len(listed) > 1 else f"seed {listed[0]}")
    table = Table(title=f"{bench} · {metric} · budget {report.get('budget', budget)} · {which} "
                        f"· optimum {_fmt(report['optimum'])}")
    table.add_column("strategy")
    table.add_column("reached", justify="right")
    table.add_column("median queries", justify="right")
    points = list(next(iter(report["strategies"].values()))["best_at"])
    for p in points:
        table.add_column(f"best@{p}", justify="right")
    table.add_column("s / seed", justify="right")
    for label, entry in report["strategies"].items():
        q = entry["queries_to_optimum"]
        table.add_row(label, f"{q['reached']}/{q['seeds']}", _fmt(q["median"]),
                      *[_fmt(entry["best_at"][p]) for p in points],
                      f"{entry['seconds']['median_per_seed']:.1f}")
    console.print(table)
    console.print(f"total {report['seconds']:.0f} s with {jobs} job(s)")


# -- archrank runs ---------------------------------------------------------------------------
@runs_app.command("export")
def runs_export(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per evaluation "
                               "(the default)."),
    csv: bool = typer.Option(False, "--csv", help="A CSV table, one row per evaluation and a "
                             "column per metric (readable by bench check / --bench); the "
                             "default for an --out ending in .csv."),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of stdout."),
) -> None:
    """Dump a run's evaluations as JSON Lines or CSV, in the order they were proposed.

    Reads a consistent snapshot without taking the run's lock, so it works on a search that
    is still running and on a read-only run directory.

    Examples:
      archrank runs export runs/demo --jsonl --out evals.jsonl
      archrank runs export runs/demo --csv --out evals.csv
    """
    from archrank.runs.store import RunStore
    from archrank.tables.table import write_csv

    if jsonl and csv:
        raise ArchrankError("give --jsonl or --csv, not both")
    if not jsonl and out is not None and out.suffix.lower() == ".csv":
        csv = True  # --out runs.csv means a CSV table, not JSON Lines under that name
    if out is not None:
        check_output(out, "--out", [run_dir])
    with RunStore.open(run_dir, readonly=True) as store:
        if csv:
            rows = store.flat_rows()
        else:
            lines = list(store.iter_jsonl())
    if csv:
        n = write_csv("-" if out is None else out, rows,
                      ("seq", "hash", "arch", "status", "objective"),
                      flag="" if out is None else "--out")
    else:
        n = len(lines)
        if out is None:  # line by line, as the CSV is: a reader that quits is seen (141)
            with open_output("-", "w", "") as fh:
                for line in lines:
                    fh.write(line + "\n")
            return
        write_output(out, "".join(line + "\n" for line in lines), "--out")
    if out is not None:
        err.print(f"{n} evaluations written to {out}")


@runs_app.command("show")
def runs_show(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the same as JSON here "
                                         "('-': standard output, instead of the table)."),
) -> None:
    """Show a run's configuration, progress and best cell.

    Example: archrank runs show runs/demo --json -
    """
    from archrank.runs.store import RunStore

    if json_out is not None:
        check_output(json_out, "--json", [run_dir])
    with RunStore.open(run_dir, readonly=True) as store:
        config, counts, records = store.config, store.counts(), store.records()
        run_dir = store.run_dir or run_dir  # RUN/run.sqlite names its directory
    running = RunStore.is_running(run_dir)
    pending = f"{counts['pending']} pending"
    if counts["pending"] and running is False:  # no process has it
        pending = (f"{counts['pending']} unfinished (the run is not running: they are "
                   f"evaluated again by archrank search --resume {run_dir})")
    done, budget = counts["ok"] + counts["failed"], config.get("budget")
    if running:
        state, status = "running", "running"
    elif isinstance(budget, int) and done < budget:  # stopped between evaluations
        state, status = "stopped", (f"stopped at {done} of {budget} evaluations (archrank "
                                    f"search --resume {run_dir} continues it)")
    elif running is False:
        state = status = "finished"
    else:
        state, status = "unknown", "not known (the run's lock is unreadable)"
    ok = [r for r in records if r.status == "ok" and r.objective is not None]
    best = max(ok, key=lambda r: r.objective) if ok else None  # type: ignore[arg-type,return-value]
    if json_out is not None:
        write_json(json_out, {
            "kind": "run-show", "schema": 1, "run_dir": str(Path(run_dir).resolve()),
            "config": config, "evaluations": {k: counts[k] for k in ("ok", "failed", "pending")},
            "status": state, "status_text": status,
            "best": None if best is None else {"arch": best.arch, "hash": best.hash,
                                               "value": best.objective, "metrics": best.metrics}})
        if str(json_out) == "-":
            return
    table = Table(title=str(run_dir), show_header=False)
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("", overflow="fold")
    for key, value in config.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    table.add_row("evaluations", f"{counts['ok']} ok, {counts['failed']} failed, {pending}")
    table.add_row("status", status)
    if best is not None:
        table.add_row("best", f"{_fmt(best.objective)}  {best.arch}")
    console.print(table)


# -- archrank demo ---------------------------------------------------------------------------
def run_demo(bench: str = "nbgraph:cora", metric: str = "valid_perf", budget: int = 100,
             seed: int = 0) -> list[dict[str, Any]]:
    """GATES-guided search next to random search on an embedded benchmark (no files needed).

    Returns one summary per strategy, with the best cell's rank in the whole table. Kept
    small on purpose: the real-training demo replaces it (issue 5).
    """
    import numpy as np

    from archrank.bench.search import run_one
    from archrank.runs.config import SearchConfig, build_oracle

    base = SearchConfig(space="nbgraph", bench=bench, metric=metric, budget=budget, seed=seed)
    oracle = build_oracle(base)
    column = oracle.bench.values(metric)  # type: ignore[attr-defined]
    cells = oracle.bench.n_unique  # type: ignore[attr-defined]
    if budget > cells:  # a search ends by then (the table's every cell evaluated)
        raise ArchrankError(f"--budget {budget:,} is more than the {cells:,} distinct cells of "
                            f"{bench}")
    out = []
    for name in ("gates", "random"):
        progress = Progress(  # a large --budget takes minutes
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True)
        task = progress.add_task(name, total=budget)

        def tick(rec: Any, n_done: int, best: Any, task: Any = task,
                 progress: Progress = progress) -> None:
            progress.update(task, completed=n_done)

        with progress:
            run = run_one(replace(base, strategy=name, predictor=None), on_result=tick)
        run["optimum"] = float(np.nanmax(column))
        if run["best"] is not None:
            run["top_percent"] = 100.0 * float(np.mean(column > run["best"] + 1e-12))
            best = oracle.evaluate(oracle.space.parse(run["best_arch"]))
            run["metrics"] = best.metrics
        out.append(run)
    return out


def _unfinished_main_job(runs: Path) -> Path | None:
    """The newest main-job run under ``runs`` when it stopped before its budget (a Ctrl-C):
    ``archrank search`` with no options (and ``archrank demo``) continues it rather than
    starting another beside it."""
    from archrank.datasets import canonical_spec
    from archrank.runs.store import RunStore

    main = {**{k: MAIN_JOB[k] for k in ("space", "metric", "oracle", "budget")},
            "predictor": MAIN_JOB["strategy"], "seed": 0, "bench": None, "strategy_params": {},
            "oracle_params": {"dataset": canonical_spec("mnist1d")}}  # (strategy gates: guided)
    for run in sorted(runs.glob("gates-nb201-seed0-*"), reverse=True):
        try:
            if not RunStore.exists(run) or RunStore.is_running(run):
                continue
            with RunStore.open(run, readonly=True) as store:
                config, counts = store.config, store.counts()
        except (ArchrankError, OSError):
            continue
        if any(config.get(k) != v for k, v in main.items()):
            continue
        return run if counts["ok"] + counts["failed"] < main["budget"] else None
    return None


@app.command("demo")
def demo(
    quick: bool = typer.Option(False, "--quick",
                               help="Only the tabular demo on NAS-Bench-Graph (seconds)."),
    budget: int = typer.Option(100, "--budget", help="Evaluations per search (--quick)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (--quick)."),
    bench: str = typer.Option("nbgraph:cora", "--bench",
                              help="NAS-Bench-Graph dataset (--quick)."),
    metric: str = typer.Option("valid_perf", "--metric", help="Column to maximise (--quick)."),
) -> None:
    """The main job: GATES-guided search over NAS-Bench-201 cells with real training on
    MNIST-1D (what `archrank search` with no options runs; about 2.5 minutes on 2 cores).
    Its run is written under runs/ in the working folder; run after a Ctrl-C, the demo
    continues the run it stopped.

    With --quick: GATES-guided search next to random search on the embedded NAS-Bench-Graph
    table instead (no training), with the same budget and seed; the table shows the best
    cell each found, its validation and test score, and the share of the benchmark's cells
    that beat it.

    Examples:

      archrank demo

      archrank demo --quick --budget 100
    """
    check_seed_option(seed)
    if not quick:
        given = [flag for flag, value, default in (
            ("--budget", budget, 100), ("--seed", seed, 0), ("--bench", bench, "nbgraph:cora"),
            ("--metric", metric, "valid_perf")) if value != default]
        if given:  # the main job is fixed: `archrank search` takes options
            raise ArchrankError(f"{', '.join(given)} only with --quick (the main job is "
                                f"fixed; give options to `archrank search` instead)")
        # `archrank search` with no options: it continues a main job a Ctrl-C stopped
        search(**dict.fromkeys(inspect.signature(search).parameters))
        return
    t0 = time.perf_counter()
    runs = run_demo(bench, metric, budget, seed)
    other = "perf" if metric != "perf" else "valid_perf"
    table = Table(title=f"{bench} · {metric} · budget {budget} · seed {seed} · "
                        f"table optimum {_fmt(runs[0]['optimum'])}")
    table.add_column("strategy")
    table.add_column(f"best {metric}", justify="right")
    table.add_column(other, justify="right")
    table.add_column("cells better", justify="right")
    table.add_column("found at query", justify="right")
    table.add_column("best architecture", overflow="fold")
    for run in runs:
        metrics = run.get("metrics", {})
        found = None
        if run["best"] is not None:
            found = 1 + next(i for i, v in enumerate(run["curve"]) if v >= run["best"])
        table.add_row(run["label"], _fmt(run["best"]), _fmt(metrics.get(other)),
                      f"{run['top_percent']:.2f}%" if "top_percent" in run else "-",
                      str(found or "-"), run["best_arch"] or "-")
    console.print(table)
    console.print(f"done in {time.perf_counter() - t0:.1f} s")
