"""Tabular benchmarks: tables of evaluated cells read from files users bring (CSV, JSON Lines,
official formats), named apart from the `archrank.bench` experiment harnesses.

``load_benchmark(spec, space)`` picks the reader from the spec:

- ``*.csv`` (optionally ``.gz``): a table with a header row;
- ``*.jsonl`` / ``*.ndjson`` / ``*.json``: JSON Lines, or a JSON list of objects;
- ``*.tfrecord``: the official NAS-Bench-101 file (read without TensorFlow);
- ``*.pth``: the official NAS-Bench-201 file;
- ``*.pickle.pbz2`` or a directory: NATS-Bench topology files;
- ``nbgraph:DATASET``: one of NAS-Bench-Graph's nine tables, shipped with its package.

Any spec may end in ``?COLUMN=VALUE[&COLUMN=VALUE...]`` to keep only the rows with those
values (what ``--filter COLUMN=VALUE`` adds), e.g. ``nb201_zc.csv?dataset=cifar10``. A table
that mixes datasets (a ``dataset`` column with several values) is refused where one table is
needed (``one_table=True``, as every command asks) unless such a filter picks one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from archrank.errors import ArchrankError
from archrank.spaces import get_space
from archrank.spaces.base import SearchSpace
from archrank.tables.table import TableScan, TabularBenchmark, scan_table

FORMATS = ("FILE.csv", "FILE.jsonl", "FILE.json", "FILE.tfrecord (NAS-Bench-101)",
           "FILE.pth (NAS-Bench-201)", "FILE.pickle.pbz2 or DIR (NATS-Bench)", "nbgraph:DATASET")


def _space(space: SearchSpace | str) -> SearchSpace:
    return get_space(space) if isinstance(space, str) else space


def _kind(spec: str) -> str:
    """Which reader a spec needs: csv, json, tfrecord, pth, nats, nbgraph."""
    if spec.startswith("nbgraph:"):
        return "nbgraph"
    path = Path(spec)
    name = path.name.lower()
    if not path.exists():
        raise ArchrankError(f"{spec}: no such file or directory")
    if path.is_dir():
        return "nats"
    if name.endswith((".pbz2", ".pickle.bz2")):
        return "nats"
    base = name.removesuffix(".gz")
    if base.endswith(".csv"):
        return "csv"
    if base.endswith((".jsonl", ".ndjson", ".json")):
        return "json"
    if name.endswith(".tfrecord"):
        return "tfrecord"
    if name.endswith((".pth", ".pt")):
        return "pth"
    raise ArchrankError(
        f"{spec}: unknown benchmark format; expected one of: {', '.join(FORMATS)}"
    )


def _check_space(bench: TabularBenchmark, space: SearchSpace, spec: str) -> TabularBenchmark:
    if bench.space.name != space.name:
        raise ArchrankError(
            f"{spec} is a benchmark of space {bench.space.name}, not {space.name}; "
            f"use --space {bench.space.name}"
        )
    return bench


# Text columns that say which dataset (task) a row was measured on.
MIX_COLUMNS = ("dataset", "task")


def split_spec(spec: str | Path) -> tuple[str, dict[str, str]]:
    """``FILE?col=value&col2=value`` -> ``(FILE, {col: value, ...})`` (a path that exists
    as given is never split)."""
    text = str(spec)
    if "?" not in text or Path(text).exists():
        return text, {}
    path, _, query = text.rpartition("?")
    filters: dict[str, str] = {}
    for part in query.split("&"):
        col, eq, value = part.partition("=")
        if not eq or not col.strip():
            raise ArchrankError(f"{text}: filter {part!r} is not COLUMN=VALUE")
        filters[col.strip()] = value.strip()
    return path, filters


def with_filters(spec: str, filters: list[str] | None) -> str:
    """``spec`` with the ``--filter COLUMN=VALUE`` options appended (``?a=1&b=2``)."""
    if not filters:
        return spec
    for item in filters:
        col, eq, _ = item.partition("=")
        if not eq or not col.strip():
            raise ArchrankError(f"--filter {item[:60]!r}: expected COLUMN=VALUE")
    return spec + ("&" if split_spec(spec)[1] else "?") + "&".join(filters)


def select_rows(bench: TabularBenchmark, filters: dict[str, str], spec: str) -> TabularBenchmark:
    """The rows of ``bench`` whose columns hold the given values; one-line errors for an
    unknown column, a non-numeric value of a numeric column, or no row left."""
    return bench.subset(_selected(bench, filters, spec))


def _selected(bench: TabularBenchmark, filters: dict[str, str], spec: str) -> np.ndarray:
    """Indices of the rows ``select_rows`` keeps."""
    for col, value in filters.items():
        if col in bench.text_columns:
            continue
        if col not in bench.metrics:
            raise ArchrankError(
                f"{spec}: no column {col!r} to filter on; columns: "
                f"{', '.join([*bench.text_columns, *bench.metrics]) or '(none)'}")
        try:
            float(value)
        except ValueError:
            raise ArchrankError(f"{spec}: column {col!r} is numeric; {value!r} is not a "
                                "number") from None
    kept = bench.where_index(**filters)
    if len(kept) == 0:
        hints = [f"{col} has {', '.join(sorted(set(bench.text(col)))[:10])}"
                 for col in filters if col in bench.text_columns]
        raise ArchrankError(f"{spec}: no row matches the filter"
                            + (f" ({'; '.join(hints)})" if hints else ""))
    return kept


def mixed_datasets(bench: TabularBenchmark, spec: str) -> str | None:
    """What is wrong with a table whose rows come from several datasets (a ``dataset`` or
    ``task`` column with more than one value), or ``None``."""
    for col in MIX_COLUMNS:
        if col in bench.text_columns or col in bench.metrics:
            values = (sorted(set(bench.text(col))) if col in bench.text_columns else
                      [f"{v:g}" for v in np.unique(bench.values(col))])
            if len(values) > 1:
                shown = ", ".join(values[:6]) + (", ..." if len(values) > 6 else "")
                return (f"{spec} mixes {len(values)} datasets in column {col!r} ({shown}); "
                        f"choose one with --filter {col}={values[0]} (in Python, a "
                        f"'?{col}={values[0]}' suffix on the path)")
    return None


def check_one_table(bench: TabularBenchmark, spec: str) -> None:
    """One-line error for a table mixing datasets (``mixed_datasets``)."""
    problem = mixed_datasets(bench, spec)
    if problem is not None:
        raise ArchrankError(problem)


def load_benchmark(spec: str | Path, space: SearchSpace | str, *,
                   one_table: bool = False, mixed_ok: bool = False) -> TabularBenchmark:
    """Read the benchmark ``spec`` (a file, a directory or ``nbgraph:DATASET``) of ``space``,
    keeping the rows a ``?COLUMN=VALUE`` filter selects; with ``one_table``, a table mixing
    datasets without such a filter is an error, else a warning (``mixed_ok``: not even
    that, for a caller that only wants the cells).

    Example: ``load_benchmark("../shared/data/nb201.csv", "nb201").query(arch, "cifar10_test")``
    """
    path, filters = split_spec(spec)
    bench = _load(path, _space(space))
    if filters:  # a filter on another column (seed=...) may still leave datasets mixed
        bench = select_rows(bench, filters, str(spec))
    if one_table:
        check_one_table(bench, str(spec))
    elif not mixed_ok:  # the library keeps every row, but says when a cell means two
        problem = mixed_datasets(bench, str(spec))
        if problem is not None:
            warnings.warn(f"{problem}; every row is kept", stacklevel=2)
    return bench


def _load(spec: str, space: SearchSpace) -> TabularBenchmark:
    kind = _kind(spec)
    if kind in ("csv", "json"):
        return scan_table(spec, space).bench
    if kind == "tfrecord":
        from archrank.tables.nb101_tfrecord import read_nb101_tfrecord

        _require(space, "nb101", spec, "a .tfrecord file is read as NAS-Bench-101")
        return read_nb101_tfrecord(spec)
    if kind == "pth":
        from archrank.tables.nb201_pth import read_nb201_pth

        _require(space, "nb201", spec, "a .pth / .pt file is read as NAS-Bench-201")
        return _check_space(read_nb201_pth(spec), space, spec)
    if kind == "nats":
        from archrank.tables.nats import read_nats

        _require(space, "nb201", spec,
                 "a directory or .pbz2 file is read as NATS-Bench topology (NAS-Bench-201)")
        return _check_space(read_nats(spec), space, spec)
    from archrank.tables.nbgraph import read_nbgraph

    _require(space, "nbgraph", spec, "nbgraph:DATASET is NAS-Bench-Graph")
    return _check_space(read_nbgraph(spec.split(":", 1)[1]), space, spec)


def _require(space: SearchSpace, name: str, spec: str, how: str) -> None:
    """Formats read by their name belong to one space; says so before the file is opened."""
    if space.name != name:
        raise ArchrankError(f"{spec}: {how}, a benchmark of space {name}, not {space.name}")


def scan_benchmark(spec: str | Path, space: SearchSpace | str) -> TableScan:
    """Like ``load_benchmark`` but keeps going past bad rows and reports them (bench check).

    CSV / JSON tables and NB101 tfrecords are scanned row by row; other formats are loaded
    whole (a problem there is fatal), and hashes their reader supplied become the "recorded"
    hashes that the recomputed ones are compared with. A ``?COLUMN=VALUE`` filter keeps the
    valid rows it selects; the problems of the whole file are listed (a bad row's columns
    cannot be trusted to say whether the filter would have kept it).
    """
    whole = str(spec)
    spec, filters = split_spec(whole)
    space = _space(space)
    scan = _scan(spec, space)
    if filters:
        scan = scan.subset(_selected(scan.bench, filters, whole))
    return scan


def _scan(spec: str, space: SearchSpace) -> TableScan:
    kind = _kind(spec)
    if kind in ("csv", "json"):
        return scan_table(spec, space, lenient=True)
    if kind == "tfrecord":
        from archrank.tables.nb101_tfrecord import scan_nb101_tfrecord

        _require(space, "nb101", spec, "a .tfrecord file is read as NAS-Bench-101")
        return scan_nb101_tfrecord(spec, lenient=True)
    bench = _load(spec, space)
    # Hashes a reader supplied (e.g. a file's own keys) are checked against recomputed ones.
    recorded: list[str | None] | None = list(bench.hashes) if bench.hashes_given else None
    bench.rehash()
    return TableScan(bench, len(bench), recorded_hashes=recorded)


__all__ = ["FORMATS", "TableScan", "TabularBenchmark", "check_one_table", "load_benchmark",
           "scan_benchmark", "select_rows", "split_spec", "with_filters"]
