"""Benchmarks: tabular oracles read from files users bring (CSV, JSON Lines, official formats).

``load_benchmark(spec, space)`` picks the reader from the spec:

- ``*.csv`` (optionally ``.gz``): a table with a header row;
- ``*.jsonl`` / ``*.ndjson`` / ``*.json``: JSON Lines, or a JSON list of objects;
- ``*.tfrecord``: the official NAS-Bench-101 file (read without TensorFlow);
- ``*.pth``: the official NAS-Bench-201 file;
- ``*.pickle.pbz2`` or a directory: NATS-Bench topology files;
- ``nbgraph:DATASET``: one of NAS-Bench-Graph's nine tables, shipped with its package.
"""

from __future__ import annotations

from pathlib import Path

from archrank.benchmarks.table import TableScan, TabularBenchmark, scan_table
from archrank.errors import ArchrankError
from archrank.spaces import get_space
from archrank.spaces.base import SearchSpace

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


def load_benchmark(spec: str | Path, space: SearchSpace | str) -> TabularBenchmark:
    """Read the benchmark ``spec`` (a file, a directory or ``nbgraph:DATASET``) of ``space``.

    Example: ``load_benchmark("../shared/data/nb201.csv", "nb201").query(arch, "cifar10_test")``
    """
    spec = str(spec)
    space = _space(space)
    kind = _kind(spec)
    if kind in ("csv", "json"):
        return scan_table(spec, space).bench
    if kind == "tfrecord":
        from archrank.benchmarks.nb101_tfrecord import read_nb101_tfrecord

        _require(space, "nb101", spec)
        return read_nb101_tfrecord(spec)
    if kind == "pth":
        from archrank.benchmarks.nb201_pth import read_nb201_pth

        _require(space, "nb201", spec)
        return _check_space(read_nb201_pth(spec), space, spec)
    if kind == "nats":
        from archrank.benchmarks.nats import read_nats

        _require(space, "nb201", spec)
        return _check_space(read_nats(spec), space, spec)
    from archrank.benchmarks.nbgraph import read_nbgraph

    _require(space, "nbgraph", spec)
    return _check_space(read_nbgraph(spec.split(":", 1)[1]), space, spec)


def _require(space: SearchSpace, name: str, spec: str) -> None:
    if space.name != name:
        raise ArchrankError(f"{spec} is a benchmark of space {name}, not {space.name}; "
                            f"use --space {name}")


def scan_benchmark(spec: str | Path, space: SearchSpace | str) -> TableScan:
    """Like ``load_benchmark`` but keeps going past bad rows and reports them (bench check).

    CSV / JSON tables and NB101 tfrecords are scanned row by row; other formats are loaded
    whole (a problem there is fatal), and hashes their reader supplied become the "recorded"
    hashes that the recomputed ones are compared with.
    """
    spec = str(spec)
    space = _space(space)
    kind = _kind(spec)
    if kind in ("csv", "json"):
        return scan_table(spec, space, lenient=True)
    if kind == "tfrecord":
        from archrank.benchmarks.nb101_tfrecord import scan_nb101_tfrecord

        _require(space, "nb101", spec)
        return scan_nb101_tfrecord(spec, lenient=True)
    bench = load_benchmark(spec, space)
    # Hashes a reader supplied (e.g. a file's own keys) are checked against recomputed ones.
    recorded: list[str | None] | None = list(bench.hashes) if bench.hashes_given else None
    bench.rehash()
    return TableScan(bench, len(bench), recorded_hashes=recorded)


__all__ = ["FORMATS", "TableScan", "TabularBenchmark", "load_benchmark", "scan_benchmark"]
