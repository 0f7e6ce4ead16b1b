"""``archrank zc``: zero-cost proxies of sampled cells, written as CSV."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from archrank.cli.app import app, check_network_size, check_seed_option, console, err
from archrank.errors import ArchrankError, Interrupted
from archrank.files import check_output, hold_lock, open_output
from archrank.spaces.base import SearchSpace


def sample_unique(space: SearchSpace, n: int, rng: np.random.Generator) -> list[Any]:
    """``n`` cells with distinct canonical hashes (fewer only if the space has fewer).

    Drawn by rejection (the cells of a given seed stay those of earlier versions); when that
    stalls near the number of distinct cells, an enumerable space gives the rest from a
    shuffle of its other cells."""
    seen: set[str] = set()
    cells: list[Any] = []
    for _ in range(100):
        for arch in space.sample(max(n - len(cells), 1) * 2, rng):
            h = space.hash(arch)
            if h not in seen:
                seen.add(h)
                cells.append(arch)
                if len(cells) == n:
                    return cells
    if space.enumerable:
        every = space.enumerate()
        for i in rng.permutation(len(every)):
            h = space.hash(every[i])
            if h not in seen:
                seen.add(h)
                cells.append(every[i])
                if len(cells) == n:
                    break
    if len(cells) < n:
        import warnings

        warnings.warn(f"{space.name} has {len(cells):,} distinct cells, fewer than the "
                      f"{n:,} asked: taking every one", stacklevel=2)
    return cells


@app.command("zc")
def zero_cost(
    space_name: str = typer.Option("nb201", "--space", help="Search space: nb201, nb101 or "
                                   "darts (--fill: an enumerable one, or --table)."),
    dataset: str = typer.Option(
        "mnist1d", "--dataset", help="mnist1d, digits or a .npz file (x_train, y_train, ...)."
    ),
    n: int = typer.Option(200, "--n", help="Number of distinct cells to sample."),
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV file to write."),
    fill: bool = typer.Option(
        False, "--fill",
        help="Fill the per-space cache (user cache dir) at the benchmark setting instead: "
        "every cell of the space, or of --table.",
    ),
    table: str | None = typer.Option(None, "--table", help="With --fill: only this table's cells."),
    workers: int = typer.Option(1, "--workers", help="With --fill: worker processes."),
    setting: str = typer.Option(
        "benchmark", "--setting",
        help="With --fill: benchmark (the benchmark networks) or small (one cell a stage, "
        "narrow, 3x16x16 inputs; its own cache file, read as arch inputs PROXY@small).",
    ),
    proxies: str | None = typer.Option(
        None, "--proxies",
        help="Comma-separated subset of params,flops,synflow,snip,grad_norm,jacov,nwot "
        "(default: all; with --fill: nb201 all, nb101 and darts none at the benchmark setting "
        "(params and flops are counted when needed, never cached: name the proxies), every "
        "one with --setting small).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample, the weights and the batch."),
    batch_size: int = typer.Option(64, "--batch-size", help="Examples in the proxy batch."),
    width: int | None = typer.Option(None, "--width", help="Network width (default: by dataset)."),
    depth: int | None = typer.Option(None, "--depth", help="Cells per stage (nb201), per stack "
                                     "(nb101), in all (darts, 3 at least) (default: by data)."),
) -> None:
    """Compute zero-cost proxies of N sampled cells on their untrained networks.

    Each cell's network (the benchmark skeleton at the training oracle's size for the dataset)
    is scored at initialisation on one batch of training data. Columns: arch, hash, then one
    per proxy. Every 50 cells scored are journaled beside --out (OUT.journal.jsonl): the same
    command continues a killed or interrupted run.

    With --fill, the proxies of every cell of the space (or of a --table) are computed at
    the benchmark setting (nb201: C=16, N=5; nb101: 128 channels, 3 cells per stack; 3x32x32
    synthetic inputs, batch 16, 10 classes) into the per-space cache that predictors read
    their arch-level inputs from (``--arch-inputs``); an interrupted fill resumes. With
    --setting small, on small networks (nb101: 16 channels, one cell a stack; nb201: C=8,
    N=1; 3x16x16 inputs) into a cache file of their own (arch inputs ``nwot@small``...).

    Examples:
      archrank zc --space nb201 --dataset mnist1d --n 200 --out zc.csv
      archrank zc --space nb201 --fill --workers 2
    """
    from archrank.nn import NETWORK_SPACES
    from archrank.spaces import get_space
    from archrank.zc import check_proxies, score_architectures

    if fill:
        for flag, given in (("--dataset", dataset != "mnist1d"), ("--n", n != 200),
                            ("--out", out is not None), ("--seed", seed != 0),
                            ("--batch-size", batch_size != 64), ("--width", width is not None),
                            ("--depth", depth is not None)):
            if given:  # the cache's setting is fixed (--setting): these would be ignored
                raise ArchrankError(f"{flag} does not apply to --fill (its networks, inputs "
                                    f"and seed are those of --setting)")
        _fill_cache(space_name, table, proxies, workers, setting)
        return
    for flag, given in (("--table", table is not None), ("--workers", workers != 1),
                        ("--setting", setting != "benchmark")):
        if given:  # fill options would otherwise be ignored in silence
            raise ArchrankError(f"{flag} only applies to --fill")
    check_seed_option(seed)
    if out is None:
        raise ArchrankError("give --out FILE (a CSV of sampled cells) or --fill (the cache)")
    check_output(out, "--out", [table, dataset])
    for flag, value in (("--n", n), ("--batch-size", batch_size), ("--width", width),
                        ("--depth", depth)):
        if value is not None and not 1 <= value <= 1_000_000:
            raise ArchrankError(f"{flag} must lie in 1..1,000,000, got {value}")
    if space_name not in NETWORK_SPACES:
        raise ArchrankError(
            f"zero-cost proxies need real networks; choose --space from "
            f"{', '.join(NETWORK_SPACES)}, not {space_name!r}"
        )
    # before the journal and the data: darts needs 3 cells at least, and networks too large
    # for this machine are refused
    network = check_network_size(space_name, str(dataset), width, depth)
    if network is not None:
        _say_when_long(space_name, *network, n)
    from archrank.bench.journal import BenchJournal, discard, journal_for
    from archrank.datasets import load_dataset

    names = tuple(dict.fromkeys(check_proxies(proxies)))  # a column once, however named
    space = get_space(space_name)
    cells = sample_unique(space, n, np.random.default_rng(seed))
    start = time.perf_counter()
    parts: list[dict[str, np.ndarray]] = []  # finished chunks, written even after Ctrl-C
    chunk = 50
    # every finished chunk is journaled beside --out: the same command continues after a kill;
    # --out is held till it is written and the journal gone (a second zc on it is refused)
    lock = hold_lock(out, "this score table (--out)")  # noqa: F841
    journal = journal_for(out)
    log = BenchJournal(journal, "zc", {
        "space": space_name, "dataset": load_dataset(dataset).fingerprint(), "n": n,
        "seed": seed, "batch_size": batch_size, "width": width, "depth": depth,
        "proxies": list(names), "chunk": chunk})
    resumed = bool(log.done)  # the same command was interrupted before (OUT.partial)
    try:
        with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                      transient=True) as progress:
            task = progress.add_task(f"{space_name} on {dataset}", total=len(cells))
            for first in range(0, len(cells), chunk):
                kept = log.get((first,))
                if kept is not None:
                    parts.append({k: np.asarray(v, dtype=np.float64) for k, v in kept.items()})
                    progress.update(task, completed=first + len(parts[-1][names[0]]))
                    continue
                parts.append(score_architectures(
                    space, cells[first:first + chunk], dataset, names, batch_size=batch_size,
                    seed=seed, width=width, depth=depth,
                    on_done=lambda done, first=first: progress.update(
                        task, completed=first + done)))
                log.add((first,), {k: [float(x) for x in v] for k, v in parts[-1].items()})
    except KeyboardInterrupt:
        log.close()
        again = f"; the same command continues from {journal}" if journal else ""
        if not parts:  # nothing finished: an existing --out stays as it was
            raise Interrupted(f"interrupted before the first {chunk} cells; {out} untouched"
                              ) from None
        # OUT only ever holds a complete result (an earlier one is not replaced by a partial
        # one, and a partial one is never taken for a complete one): what finished goes to
        # OUT.partial, replaced by each interruption and removed once the command completes
        partial = Path(f"{out}.partial")
        done = _write_scores(partial, space, cells, names, parts)
        raise Interrupted(f"interrupted: the {done} cells scored so far are in {partial}"
                          f"{again}") from None
    log.close()
    _write_scores(out, space, cells, names, parts)
    discard(journal)
    if resumed:  # the partial result its interruption wrote: a part of the one just written
        Path(f"{out}.partial").unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    console.print(f"wrote {len(cells)} cells x {len(names)} proxies to {out} "
                  f"in {seconds:.1f} s ({1000 * seconds / len(cells):.0f} ms per cell)")


def _say_when_long(space_name: str, width: int, depth: int, n: int) -> None:
    """A line before the work when the networks are over ten times the benchmark network's
    size: each cell then takes long before the progress bar (per cell) moves, and the bar
    is not drawn at all where standard error is no terminal."""
    from archrank.nn import BENCHMARK_SIZE, estimated_params

    size = BENCHMARK_SIZE[space_name]
    params = estimated_params(space_name, width, depth)
    if params > 10 * estimated_params(space_name, size["width"], size["depth"]):
        err.print(f"networks of about {params:.2g} parameters (width {width}, depth {depth}): "
                  f"each of the {n:,} cells takes a while; progress is shown per cell",
                  soft_wrap=True)


def _write_scores(out: Path, space: Any, cells: list[Any], names: tuple[str, ...],
                  parts: list[dict[str, np.ndarray]]) -> int:
    """Write the cells of the finished ``parts`` (chunks in order) to ``out``; how many."""
    scores = {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
              for name in names}
    done = len(scores[names[0]]) if names else 0
    with open_output(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arch", "hash", *names])
        for i, arch in enumerate(cells[:done]):
            writer.writerow([space.format(arch), space.hash(arch),
                             *(repr(float(scores[name][i])) for name in names)])
    return done


def _fill_cache(space_name: str, table: str | None, proxies: str | None, workers: int,
                setting_name: str = "benchmark") -> None:
    """``archrank zc --fill``: the per-space cache at the benchmark (or a named) setting."""
    from archrank.spaces import get_space
    from archrank.zc import check_proxies
    from archrank.zccache import DEFAULT_PROXIES, EXACT, PROXIES, ZCCache, ZCSetting

    if workers < 1:
        raise ArchrankError(f"--workers must be at least 1, got {workers}")
    setting = ZCSetting.named(space_name, setting_name)  # a space with networks, or an error
    space = get_space(space_name)
    if table is not None:
        from archrank.tables import load_benchmark

        cells = list(load_benchmark(table, space, mixed_ok=True).archs)
    elif not space.enumerable:
        raise ArchrankError(f"--fill: space {space_name!r} cannot be enumerated; fill the "
                            "cells of a table with --table, or score a sample with --n")
    asked = check_proxies(proxies if proxies is not None else (
        PROXIES if setting.tag() == "small" else DEFAULT_PROXIES.get(space_name, EXACT)))
    if all(name in EXACT for name in asked):  # predictors count them on the spot, exactly
        console.print(f"nothing to fill: {', '.join(asked)} are counted exactly whenever a "
                      "predictor needs them (no cache); name the proxies to cache with "
                      "--proxies (e.g. synflow,snip,grad_norm)")
        return
    if table is None:
        cells = list(space.enumerate())
    cache = ZCCache(space, setting)
    # one fill of a cache at a time: a second would compute the same cells beside it (each
    # save merges, so nothing is lost, but the work is done twice); searches that read or
    # top up the cache meanwhile are not held up (they merge under the cache's own lock)
    lock = hold_lock(cache.path, "a fill of this zero-cost cache")  # noqa: F841
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"{space_name} zero-cost cache", total=None)
        saved = [0, 0]

        def done(k: int, total: int) -> None:
            saved[:] = [k, total]
            progress.update(task, completed=k, total=total)

        try:
            computed = cache.fill(cells, proxies, workers=workers, on_done=done)
        except KeyboardInterrupt:
            if not saved[0]:
                raise Interrupted("interrupted before a cell was computed: nothing was "
                                  "saved") from None
            raise Interrupted(f"interrupted: {saved[0]:,} of {saved[1]:,} cells saved in "
                              f"{cache.path}; the same command continues with the rest"
                              ) from None
    seconds = time.perf_counter() - start
    console.print(f"{cache.path}: {len(cache.hashes):,} cells, proxies "
                  f"{', '.join(sorted(cache.values))}; computed {computed:,} cells in "
                  f"{seconds:.1f} s")
