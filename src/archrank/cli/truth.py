"""``archrank bench table``: a multi-seed stand-alone truth table, durable and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from archrank.cli.app import bench_app, check_least, check_seed_option, console, err
from archrank.cli.oneshot import eta_progress
from archrank.errors import ArchrankError, Interrupted
from archrank.executors import close_now
from archrank.files import check_output, write_json


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ArchrankError(f"--train-seeds {text!r}: expected integers like 0,1,2") from None
    if not seeds:
        raise ArchrankError("--train-seeds: give at least one seed")
    if min(seeds) < 0 or max(seeds) >= 2**32 or len(set(seeds)) < len(seeds):
        raise ArchrankError(f"--train-seeds {text!r}: seeds must be distinct and lie in "
                            f"0..{2**32 - 1}")
    return sorted(seeds)  # the table's columns (and read_truth) go in increasing order


def read_cells(path: Path, space: Any) -> list[str]:
    """The distinct cells of a ``--cells`` file, in file order (a cell named twice, also in
    another spelling of the same cell: one hash, is trained once, as first written);
    one-line errors naming the line. A byte-order mark and CRLF line ends are read."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchrankError(f"--cells {path}: cannot read ({exc})") from None
    cells: dict[str, str] = {}  # hash -> the cell as first written
    for i, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            arch = space.parse(text)
        except (ArchrankError, ValueError) as exc:
            raise ArchrankError(f"{path}: line {i}: not a {space.name} cell ({exc})") from None
        cells.setdefault(space.hash(arch), space.format(arch))
    if not cells:
        raise ArchrankError(f"--cells {path}: no cell in the file")
    return list(cells.values())


@bench_app.command("table")
def bench_table(
    space_name: str = typer.Option("nb201", "--space",
                                   help="Search space: nb201, nb101 or darts."),
    dataset: str = typer.Option("mnist1d", "--dataset",
                                help="mnist1d, digits or a .npz file (x_train, y_train, ...)."),
    n: int | None = typer.Option(None, "--n", help="Distinct cells, sampled uniformly."),
    cells_file: Path | None = typer.Option(
        None, "--cells", help="Train these cells instead of a sample: a file of one cell per "
        "line (# starts a comment), such as the picks of searches to judge."),
    sample_seed: int = typer.Option(0, "--sample-seed", help="Seed of the cell sample."),
    train_seeds: str = typer.Option("0,1,2", "--train-seeds", help="Training seeds, e.g. 0,1,2."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per training (default: "
                                      "the training oracle's for the dataset)."),
    width: int | None = typer.Option(None, "--width", help="Network width (default: by data)."),
    depth: int | None = typer.Option(None, "--depth", help="Cells per stage (nb201), per stack "
                                     "(nb101), in all (darts) (default: by data)."),
    workers: int = typer.Option(1, "--workers", help="Trainings in parallel."),
    executor_kind: str | None = typer.Option(None, "--executor",
                                             help="inline, process (default with --workers > 1) "
                                             "or dask."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address."),
    out: Path = typer.Option(..., "--out", "-o", help="Truth table (CSV) to write."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the noise ceiling here."),
    tables: list[Path] | None = typer.Option(
        None, "--from", metavar="<path>", help="A truth table (or its journal) of the same "
        "recipe, repeatable: the trainings it holds for these cells and seeds are taken, not "
        "trained again."),
) -> None:
    """Build a multi-seed benchmark table by training cells, with its noise ceiling.
    N sampled cells (or those of --cells FILE) are trained with each training seed; the
    table holds the means, per-seed values, stds, params, FLOPs and training seconds.

    Every result is journaled as it arrives (OUT.journal.jsonl); run the same command again
    after a kill and it continues where it stopped. With --from, a table of more seeds is
    built from tables of fewer: only the missing trainings run.

    Example:
      archrank bench table --space nb201 --dataset mnist1d --n 200 --sample-seed 0 \\
        --train-seeds 0,1,2 --workers 2 --out truth.csv
      archrank bench table ... --train-seeds 0,1,2,3,4 --from truth.csv --out truth5.csv
    """
    from dataclasses import replace

    from archrank.cli.zc import sample_unique
    from archrank.oracles.training import TrainingOracle
    from archrank.runs.loop import executor_for
    from archrank.spaces import get_space
    from archrank.truth import (
        TruthBuilder,
        check_sources,
        check_table_path,
        noise_ceiling,
        recipe_info,
    )

    if (n is None) == (cells_file is None):
        raise ArchrankError("give --n (a uniform sample of cells) or --cells FILE, one of them")
    if n is not None and n < 1:
        raise ArchrankError(f"--n must be at least 1, got {n}")
    check_seed_option(sample_seed, "--sample-seed")
    check_least(epochs=(epochs, 1), width=(width, 1), depth=(depth, 1))
    try:
        check_table_path(out)  # before the data and the sample
    except ArchrankError as exc:
        raise ArchrankError(f"--out {exc}") from None
    inputs = [dataset, *(tables or []), cells_file]  # what the command reads (None: nothing)
    check_output(out, "--out", inputs)
    if json_out is not None:
        check_output(json_out, "--json", [out, *inputs])
    seeds = parse_seeds(train_seeds)
    space = get_space(space_name)
    from archrank.cli.app import check_network_size
    from archrank.cli.oneshot import dataset_spec

    check_network_size(space.name, dataset, width, depth)  # naming the flags
    oracle = TrainingOracle(space, dataset_spec(dataset), width=width, depth=depth)
    if epochs is not None:
        oracle.recipe = replace(oracle.recipe, epochs=epochs)
    if cells_file is not None:
        cells = read_cells(cells_file, space)
        info = {"cells_file": str(cells_file), **recipe_info(oracle)}
    else:
        cells = [space.format(a) for a in sample_unique(space, n, np.random.default_rng(
            sample_seed))]
        info = {"n": n, "sample_seed": sample_seed, **recipe_info(oracle)}
    if workers < 1:  # before the journal is written
        raise ArchrankError(f"--workers must be at least 1, got {workers}")
    executor = executor_for(workers, executor_kind, scheduler)  # a bad one: before the journal
    if tables:  # before the journal exists: a refused source leaves nothing behind
        check_sources(oracle, tables)
    builder = TruthBuilder(oracle, cells, seeds, out, info)
    if tables:
        taken = builder.reuse_tables(tables)
        err.print(f"{taken} trainings taken from {', '.join(map(str, tables))}")
    done0 = builder.total - len(builder.pending)
    err.print(f"truth table of {len(cells)} {space.name} cells x {len(seeds)} training seeds on "
              f"{oracle.dataset.name} (width {oracle.width}, depth {oracle.depth}, "
              f"{oracle.recipe.epochs} epochs): {out}"
              + (f" ({done0} trainings journaled)" if done0 else ""))
    progress = eta_progress()
    task = progress.add_task("trainings", total=builder.total, completed=done0, info="")
    failed = sum(rec["status"] != "ok" for rec in builder.results.values())  # journaled

    def on_result(count: int, rec: dict) -> None:
        nonlocal failed
        failed += rec["status"] != "ok"
        progress.update(task, completed=count, info=f"{failed} failed" if failed else "")

    try:
        with progress:
            builder.run(executor, in_flight=workers, on_result=on_result)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {len(builder.results)} trainings are journaled in "
                          f"{builder.journal}; run the same command again to continue"
                          ) from None
    finally:
        close_now(executor)
    builder.write_csv()
    ceilings = {m: noise_ceiling(builder.values(m), higher_is_better=m.endswith("_acc"))
                for m in ("val_acc", "val_loss")}
    seconds = builder.values("train_seconds")
    report = {"out": str(out), "space": space.name, "cells": len(cells), "seeds": seeds,
              **info, **{f"noise_ceiling_{m}": c for m, c in ceilings.items()},
              "train_seconds_mean": float(np.nanmean(seconds)) if np.isfinite(seconds).any()
              else None}
    console.print(f"wrote {len(cells)} cells to {out}"
                  + (f" ({failed} of {builder.total} trainings failed or diverged: those "
                     f"cells' means are over the seeds that finished)" if failed else ""))
    for metric, ceiling in ceilings.items():
        for label in ("all", "better_half"):
            c = ceiling.get(label)
            if c:
                pair = c["seed_to_seed_kendall_tau"]
                console.print(
                    f"{metric} noise ceiling ({label}, {c['cells']} cells): seed-to-seed "
                    f"Kendall tau "
                    f"{'n/a (needs 3 seeds)' if pair is None else format(pair, '.3f')}, one "
                    f"seed vs the mean of the others {c['one_vs_rest_kendall_tau']:.3f}, mean "
                    f"seed std {c['seed_std_mean']:.3f}")
    if report["train_seconds_mean"] is not None:
        console.print(f"mean training time {report['train_seconds_mean']:.2f} s")
    if json_out is not None:
        write_json(json_out, report)
