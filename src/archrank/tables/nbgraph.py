"""NAS-Bench-Graph's nine tabular benchmarks, read offline from the ``nas-bench-graph`` package.

The package ships ``light/<dataset>.bench``: a pickle of ``{key: {"valid_perf", "perf",
"latency", "para"}}`` where ``key`` is the benchmark's integer architecture key
(``NBGraphSpace.key``). We locate the files without importing the package and read them with
the allow-list unpickler. Columns: ``valid_perf`` (validation accuracy), ``perf`` (test
accuracy), ``latency`` (inference seconds) and ``params`` (millions, the file's ``para``).
``proteins`` was trained on a reduced op list and is read into that space (2,021 cells).
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from pathlib import Path

import numpy as np

from archrank.errors import ArchrankError, BenchmarkFormatError
from archrank.spaces.nbgraph import PROTEINS_OPS, NBGraphSpace
from archrank.tables.safe_pickle import load_pickle_file
from archrank.tables.table import TabularBenchmark

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv",
            "proteins")
# file field -> column name
FIELDS = {"valid_perf": "valid_perf", "perf": "perf", "latency": "latency", "para": "params"}
PACKAGE = "nas_bench_graph"


@cache
def space_for(dataset: str) -> NBGraphSpace:
    """The space a dataset's table covers (the registered one; proteins' own op list)."""
    if dataset == "proteins":
        return NBGraphSpace(PROTEINS_OPS)
    from archrank.spaces import get_space

    space = get_space("nbgraph")
    assert isinstance(space, NBGraphSpace)
    return space


def bench_file(dataset: str) -> Path:
    """Path of ``dataset``'s table inside the installed package (found, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ArchrankError(
            "the nas-bench-graph package is not installed; install it with "
            "`pip install nas-bench-graph==1.4.0`"
        )
    path = Path(locations[0]) / "light" / f"{dataset}.bench"
    if not path.is_file():
        raise ArchrankError(f"{path}: missing from the installed nas-bench-graph package")
    return path


def read_nbgraph(dataset: str) -> TabularBenchmark:
    """The NAS-Bench-Graph table of ``dataset`` (one of ``DATASETS``), one row per key.

    Example: ``read_nbgraph("cora").best("perf")``.
    """
    name = str(dataset).strip().lower()
    if name not in DATASETS:
        raise ArchrankError(
            f"unknown NAS-Bench-Graph dataset {dataset!r}; choose one of: {', '.join(DATASETS)}"
        )
    path = bench_file(name)
    data = load_pickle_file(path, bz2_compressed=False)
    return table_from_dict(data, space_for(name), source=f"nbgraph:{name}", path=path)


def table_from_dict(
    data: object, space: NBGraphSpace, *, source: str, path: Path | str
) -> TabularBenchmark:
    """Check and convert a loaded ``.bench`` dict (rows sorted by key)."""
    if not isinstance(data, dict) or not data:
        raise BenchmarkFormatError(
            f"{path}: expected a non-empty dict of architecture key -> record, "
            f"got {type(data).__name__}"
        )
    keys = sorted(data, key=lambda k: (not isinstance(k, int), str(k)))
    archs = []
    values = np.full((len(keys), len(FIELDS)), np.nan)
    for row, key in enumerate(keys):
        arch = space.from_key(key) if isinstance(key, int) and not isinstance(key, bool) else None
        if arch is None:
            raise BenchmarkFormatError(
                f"{path}: key {key!r} is not an architecture key of {space!r}"
            )
        record = data[key]
        if not isinstance(record, dict):
            raise BenchmarkFormatError(
                f"{path}: key {key}: expected a dict of metrics, got {type(record).__name__}"
            )
        for col, field in enumerate(FIELDS):
            if field not in record:
                raise BenchmarkFormatError(f"{path}: key {key}: missing field {field!r}")
            try:
                value = float(record[field])
            except (TypeError, ValueError):
                raise BenchmarkFormatError(
                    f"{path}: key {key}: field {field!r} is not a number ({record[field]!r})"
                ) from None
            values[row, col] = value if math.isfinite(value) else np.nan
        archs.append(arch)
    columns = {out: values[:, col] for col, out in enumerate(FIELDS.values())}
    return TabularBenchmark(space, archs, columns, source, hashes=[str(k) for k in keys])


__all__ = ["DATASETS", "bench_file", "read_nbgraph", "space_for", "table_from_dict"]
