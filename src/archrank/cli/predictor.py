"""``archrank bench predictor`` and ``archrank bench speed``: how well and how fast the
predictors rank."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from archrank.cli.app import (
    FILTER_HELP,
    PREDICTOR_NAMES,
    bench_app,
    console,
    err,
    parse_sets,
)
from archrank.cli.search import keep_partial, resume_hint, save_report
from archrank.errors import ArchrankError, FailedWithPartial, Interrupted
from archrank.files import check_output, check_plot_dir, hold_lock, write_json
from archrank.tables import with_filters


@bench_app.command("predictor")
def bench_predictor(
    space: str = typer.Option(..., "--space", help="Search space: nb101, nb201, nbgraph."),
    bench: str = typer.Option(..., "--bench", help="Benchmark table (file or nbgraph:DATASET)."),
    metric: str = typer.Option(..., "--metric", help="Column to predict (higher = better)."),
    filters: list[str] | None = typer.Option(None, "--filter", help=FILTER_HELP),
    predictors: str = typer.Option("gates,gcn,mlp,xgb", "--predictors",
                                   help=f"Comma-separated predictor names: {PREDICTOR_NAMES}."),
    train_sizes: str = typer.Option("100,1000", "--train-sizes",
                                    help="Comma-separated training-set sizes."),
    seeds: int = typer.Option(5, "--seeds", help="Random training sets per size."),
    first_seed: int = typer.Option(0, "--first-seed",
                                   help="Seed of the first training set (then +1, +2...)."),
    params: list[str] | None = typer.Option(None, "--set",
                                            help="Predictor parameter, e.g. gates.ensemble=3"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here; each "
                                         "finished unit is journaled beside it "
                                         "(JSON.journal.jsonl) until then, so the same command "
                                         "resumes after a kill."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write the figures (SVG and "
                                     "PNG) to this directory."),
    arch_inputs: str | None = typer.Option(
        None, "--arch-inputs",
        help="Arch-level inputs of the predictors that take them: zero-cost proxies "
        "(params,flops exact; others from `archrank zc --fill`), structural signals of the "
        "cell's graph (depth, shortest, wdepth, fanout, fanin, n_OP; 'structure' names them "
        "all) or table columns.",
    ),
    aux_targets: str | None = typer.Option(
        None, "--aux-targets",
        help="Auxiliary targets (table columns, e.g. val_acc_4,val_acc_12) of the predictors "
        "that take them; empty values are masked.",
    ),
    drop_twins: bool = typer.Option(
        False, "--drop-twins/--keep-twins",
        help="Leave out of each test set the rows that hash like a training row (nb201.csv: "
        "15,625 rows, 8,765 distinct cells; a twin is a second training of a training "
        "cell). Kept by default (every figure of docs/benchmarks.md keeps them).",
    ),
) -> None:
    """Rank a benchmark table with each predictor from random training sets.

    For each seed and size, a training set is sampled uniformly from the table (the same for
    every predictor), each predictor is fitted on it and scores every other row; the table
    shows Kendall tau, Spearman rho, precision@5% and N@10 (mean ± std over seeds) and the
    median fit / predict seconds.

    Example:
      archrank bench predictor --space nb201 --bench ../shared/data/nb201.csv \\
        --metric cifar10_test --predictors gates,gcn,mlp,xgb --train-sizes 100,1000 \\
        --seeds 5 --json out.json
    """
    from archrank.bench.common import format_stat, parse_list
    from archrank.bench.journal import discard, journal_for
    from archrank.bench.predictor import bench_predictors, parse_sizes

    if json_out is not None:
        check_output(json_out, "--json", [bench])
    check_plot_dir(plot)
    # held till the JSON is written and the journal gone: a second bench on the same --json
    # is refused at once, not let in between the last fit and the writing
    lock = json_out and hold_lock(json_out, "this bench's --json")  # noqa: F841
    bench = with_filters(bench, filters)
    names = parse_list(predictors, "predictors")
    sizes = parse_sizes(train_sizes)
    try:
        result = bench_predictors(
            space, bench, metric, names, sizes, seeds,
            params=parse_sets(params, prefixed="PREDICTOR.PARAM"),
            progress=lambda msg: err.print(msg, style="dim"), first_seed=first_seed,
            arch_inputs=arch_inputs, aux_targets=aux_targets, drop_twins=drop_twins,
            journal=journal_for(json_out),
        )
    except Interrupted as exc:
        raise Interrupted(exc.message + keep_partial(json_out, exc.partial)
                          + resume_hint(json_out)) from None
    except FailedWithPartial as exc:  # one fit failed: the finished seeds are kept
        raise ArchrankError(str(exc) + keep_partial(json_out, exc.partial)) from None
    data = result.to_json()
    seed_text = f"seeds {first_seed}-{first_seed + seeds - 1}" if first_seed else f"{seeds} seeds"
    table = Table(title=f"{bench} · {metric} · {seed_text} · {result.rows} rows")
    for col in ("predictor", "n train", "Kendall tau", "Spearman", "P@5%", "N@10",
                "fit s", "predict s"):
        table.add_column(col, justify="left" if col == "predictor" else "right")
    for entry in data["results"]:
        def pm(key: str, digits: int = 3, e: dict[str, Any] = entry) -> str:
            return format_stat(e[key], digits, e.get("seeds"))  # one seed: the mean alone

        table.add_row(entry["predictor"], str(entry["train_size"]), pm("kendall_tau"),
                      pm("spearman"), pm("precision_at_5pct"), pm("n_at_10", 1),
                      f"{entry['fit_seconds']:.2f}", f"{entry['predict_seconds']:.3f}")
    console.print(table)
    for entry in data["results"]:  # "-" figures, or means over fewer seeds: say why
        if entry.get("seeds_without_tau"):
            n, alike = entry["seeds_without_tau"], entry.get("seeds_with_targets_alike", 0)
            why = ", ".join(w for w in (
                f"{alike} with training targets all alike" if alike else "",
                f"{n - alike} predicting one score for every cell" if n > alike else "") if w)
            rest = ("no figures" if not entry["seeds"] else
                    f"the figures are over the other {entry['seeds']}")
            console.print(f"{entry['predictor']} n={entry['train_size']}: {n} of "
                          f"{n + entry['seeds']} fits have no Kendall tau ({why}); {rest}")
    save_report(data, json_out, plot)
    discard(journal_for(json_out))


@bench_app.command("speed")
def bench_speed_cmd(
    bench: str | None = typer.Option(None, "--bench",
                                     help="nb201 table for the fit's targets (optional)."),
    metric: str = typer.Option("cifar10_test", "--metric", help="Column of --bench to fit."),
    filters: list[str] | None = typer.Option(None, "--filter", help=FILTER_HELP),
    predictor: str = typer.Option("gates", "--predictor", help="Predictor to time."),
    train_size: int = typer.Option(1000, "--train-size", help="Cells to fit on."),
    repeats: int = typer.Option(3, "--repeats", help="Timings per figure (median shown)."),
    nb201: bool = typer.Option(True, "--nb201/--no-nb201",
                               help="Fit on nb201 and score all 15,625 nb201 cells."),
    nb101: bool = typer.Option(True, "--nb101/--no-nb101",
                               help="Also score all 423,624 nb101 cells."),
    darts: bool = typer.Option(True, "--darts/--no-darts",
                               help="Also sample, hash and score 100,000 darts genotypes."),
    params: list[str] | None = typer.Option(None, "--set",
                                            help="Predictor parameter, e.g. gates.ensemble=3"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the timings here."),
) -> None:
    """Time a predictor's fit and its scoring of whole spaces.
    It fits on 1,000 nb201 cells, scores all 15,625 nb201 cells and all 423,624 nb101 cells
    (the nb101 enumeration is cached on disk after its first run), and samples, hashes,
    converts and scores 100,000 darts genotypes.

    Example:
      archrank bench speed --bench ../shared/data/nb201.csv --json speed.json
      archrank bench speed --no-nb201 --no-nb101 --repeats 5   # the darts pool alone
    """
    from archrank.bench.predictor import bench_speed, check_predictors
    from archrank.spaces import get_space

    if json_out is not None:
        check_output(json_out, "--json", [bench])
    check_predictors([predictor])
    if not (nb201 or nb101 or darts):
        raise ArchrankError("--no-nb201 --no-nb101 --no-darts leave nothing to time")
    if not nb201:  # only the nb201 fit reads the table
        for flag, given in (("--bench", bench is not None), ("--filter", bool(filters)),
                            ("--metric", metric != "cifar10_test")):
            if given:
                raise ArchrankError(f"{flag} is for the nb201 fit, which --no-nb201 leaves out")
    if filters and bench is None:
        raise ArchrankError("--filter applies to the --bench table; give --bench too")
    bench = bench and with_filters(bench, filters)
    if repeats < 1:
        raise ArchrankError(f"--repeats must be at least 1, got {repeats}")
    if not 2 <= train_size <= 15625:
        raise ArchrankError(f"--train-size must lie in 2..15625 (the nb201 cells), "
                            f"got {train_size}")
    parsed = parse_sets(params, prefixed="PREDICTOR.PARAM")
    check_predictors([predictor], get_space("nb201"), parsed)
    data = bench_speed(bench_spec=bench, metric=metric, predictor=predictor,
                       train_size=train_size, repeats=repeats, nb201=nb201, nb101=nb101,
                       darts=darts,
                       params=parsed.get(predictor),
                       progress=lambda msg: err.print(msg, style="dim"))
    load = data["machine"].get("load_average")
    table = Table(title=f"{predictor} speed · median of {repeats} · "
                        f"{data['machine']['available_cores']} cores"
                        + (f" · load {load[0]:.1f}" if load else ""))
    for col in ("task", "cells", "wall s", "cpu s"):
        table.add_column(col, justify="left" if col == "task" else "right")
    rows = [("fit (nb201)", "fit_nb201", ".2f"), ("score all nb201", "score_nb201", ".3f"),
            ("score all nb101", "score_nb101", ".2f"),
            ("sample + hash + graphs (darts)", "pool_darts", ".2f"),
            ("score pool (darts)", "score_darts", ".2f")]
    for label, key, fmt in rows:
        if key in data:
            entry = data[key]
            cpu = statistics.median(entry["cpu_seconds"])
            table.add_row(label, f"{entry['cells']:,}", f"{entry['median_seconds']:{fmt}}",
                          f"{cpu:{fmt}}")
    console.print(table)
    if json_out is not None:
        write_json(json_out, data)
        console.print(f"wrote {json_out}")
