"""Tabular benchmarks: one architecture per row, numeric columns, keyed by canonical hash.

``TabularBenchmark`` is the in-memory form every reader produces (CSV, JSON Lines and the
official formats). Columns are float arrays aligned with the rows, so whole-table work
(sampling a training set, scoring every cell, finding the optimum) is array indexing.

Rows are keyed by the space's canonical hash. Several rows may share a hash (in nb201,
equivalent cells were trained separately and got slightly different numbers); a query then
answers with the row whose text (``space.format``) is exactly the queried cell, else the first
row of that hash.

The CSV / JSON Lines readers run in a strict mode (first problem raises a one-line
``BenchmarkFormatError`` naming file and line) or a lenient mode that skips bad rows and
collects their problems (``archrank bench check``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import ArchrankError, BenchmarkFormatError, NotInBenchmark
from archrank.spaces.base import SearchSpace

# Columns that identify a row rather than measure it: never metric columns (kept as text).
ID_COLUMNS = ("hash", "index")
# The bookkeeping columns of `archrank runs export --csv` (a run's evaluation records: order,
# batch, status, error text, timestamps): in a table that has them all (an exported run) they
# describe how a row was evaluated, not the cell, so they are no metrics either (kept as text).
# Its `objective` (the run's metric) and `cost` (the oracle's cost, the cost column) stay.
RUN_EXPORT_COLUMNS = ("seq", "status", "error", "started", "finished", "batch", "tell_seq")


def non_metric_columns(names: Iterable[str]) -> tuple[str, ...]:
    """The columns of a table with header ``names`` that are never metrics: ``ID_COLUMNS``,
    and ``RUN_EXPORT_COLUMNS`` in an exported run."""
    names = set(names)
    return ID_COLUMNS + (RUN_EXPORT_COLUMNS if set(RUN_EXPORT_COLUMNS) <= names else ())
# Cost columns recognised automatically (training time in seconds), in order of preference.
COST_COLUMNS = ("train_time_s", "train_time", "training_time", "train_time_108", "time_s", "cost")
_MISSING = frozenset({"", "nan", "na", "n/a", "none", "null"})


def content_fingerprint(path: str | os.PathLike[str]) -> str | None:
    """Short SHA-256 digest of a file's bytes (of every file under a directory, with their
    relative names); ``None`` when ``path`` is neither."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
    else:
        return None
    digest = hashlib.sha256()
    for f in files:
        if p.is_dir():
            digest.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class TabularBenchmark:
    """A table of evaluated architectures of one search space.

    ``bookkeeping``: the columns of an exported run that the reader kept out of the metrics
    (``RUN_EXPORT_COLUMNS``), named as such when asked for as a metric.

    ``columns`` maps a metric name to a float array aligned with ``archs`` (NaN = missing);
    ``cost_column`` names the column holding the training cost of a row (seconds), if any.
    ``hashes`` may be given when the reader already computed them (they are trusted);
    ``text_columns`` keeps non-numeric columns (e.g. ``dataset``) for filtering with ``where``.
    Architectures may be given as objects of the space or as its text form.
    """

    bookkeeping: tuple[str, ...] = ()

    def __init__(
        self,
        space: SearchSpace,
        archs: list,
        columns: Mapping[str, Any],
        source: str,
        cost_column: str | None = None,
        *,
        hashes: Sequence[str] | None = None,
        text_columns: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.space = space
        self._archs = list(archs)
        self.source = str(source)
        n = len(self._archs)
        cols: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            try:
                arr = np.asarray(values, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise ArchrankError(f"{source}: column {name!r} is not numeric") from None
            if arr.size != n:
                raise ArchrankError(
                    f"{source}: column {name!r} has {arr.size} values for {n} architectures"
                )
            arr.flags.writeable = False
            cols[str(name)] = arr
        self._columns = cols
        if cost_column is not None and cost_column not in cols:
            raise ArchrankError(
                f"{source}: cost column {cost_column!r} is not among the columns: "
                f"{', '.join(cols) or '(none)'}"
            )
        self.cost_column = cost_column
        if hashes is not None and len(hashes) != n:
            raise ArchrankError(f"{source}: {len(hashes)} hashes for {n} architectures")
        self._hashes: list[str] | None = None if hashes is None else list(hashes)
        self.hashes_given = hashes is not None
        self._text: dict[str, list[str]] = {}
        for name, texts in (text_columns or {}).items():
            if len(texts) != n:
                raise ArchrankError(
                    f"{source}: text column {name!r} has {len(texts)} values for {n} rows"
                )
            self._text[str(name)] = [str(t) for t in texts]
        self._first: dict[str, int] | None = None
        self._dups: dict[str, list[int]] | None = None
        self._text_index: dict[str, int] | None = None
        self._text_repeats: list[tuple[int, int]] = []
        # the file line of each row, where a CSV / JSON Lines reader knows it (messages)
        self.lines: list[int] | None = None
        self.line_unit = "line"  # "record" for a JSON list

    # -- size and columns -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._archs)

    def __repr__(self) -> str:
        return (f"TabularBenchmark({self.space.name}, {len(self)} rows, "
                f"metrics={self.metrics}, source={self.source!r})")

    @property
    def archs(self) -> list:
        """The architectures, one per row (do not modify)."""
        return self._archs

    @property
    def metrics(self) -> list[str]:
        """Names of the numeric columns."""
        return list(self._columns)

    def check_metric(self, metric: str) -> str:
        """``metric`` if it is a column, else a one-line error listing the columns."""
        if metric in ID_COLUMNS and metric not in self._columns:
            raise ArchrankError(f"column {metric!r} of {self.source} identifies the rows; it "
                                f"is no metric (numeric columns: "
                                f"{', '.join(self._columns) or '(none)'})")
        if metric in self.bookkeeping and metric not in self._columns:
            raise ArchrankError(f"column {metric!r} of {self.source} is bookkeeping of an "
                                f"exported run (how the row was evaluated); it is no metric "
                                f"(numeric columns: {', '.join(self._columns) or '(none)'})")
        if metric not in self._columns and metric in self._text:
            texts = self._text[metric]
            i = next((j for j, t in enumerate(texts) if not _is_number(t)), 0)
            raise ArchrankError(
                f"column {metric!r} of {self.source} is not numeric ({self.row_name(i)}: "
                f"{_short(texts[i])}); write plain numbers, a dot as the decimal mark")
        if metric not in self._columns:
            raise ArchrankError(
                f"unknown metric {metric!r} in {self.source}; available columns: "
                f"{', '.join(self._columns) or '(none)'}"
            )
        return metric

    def values(self, metric: str) -> np.ndarray:
        """The column ``metric`` as a read-only float array aligned with ``archs``."""
        return self._columns[self.check_metric(metric)]

    def scores(self, metric: str, *, ranking: bool = False) -> np.ndarray:
        """``values(metric)`` for use as a score: one-line errors when the column holds an
        infinity (``inf``, ``1e999``: no score, and it would win every comparison), has no
        value at all, or (``ranking``) holds one value only, which ranks nothing."""
        col = self.values(metric)
        inf = np.flatnonzero(np.isinf(col))
        if len(inf):
            i = int(inf[0])
            raise ArchrankError(
                f"column {metric!r} of {self.source} holds {len(inf)} infinite value(s), "
                f"first {col[i]} in {self.row_name(i)} ({self.space.format(self._archs[i])}); "
                "a score must be a finite number (leave it empty when missing)")
        present = col[~np.isnan(col)]
        if len(present) == 0:
            raise ArchrankError(f"column {metric!r} of {self.source} has no values")
        if ranking and np.all(present == present[0]):
            raise ArchrankError(
                f"column {metric!r} of {self.source} holds the same value ({present[0]:g}) "
                "in every row; there is no ranking to learn or measure")
        return col

    @property
    def text_columns(self) -> list[str]:
        """Names of the non-numeric columns kept from the file (e.g. ``dataset``, ``hash``)."""
        return list(self._text)

    def text(self, column: str) -> list[str]:
        """The non-numeric column ``column``, one string per row."""
        if column not in self._text:
            raise ArchrankError(
                f"unknown text column {column!r} in {self.source}; text columns: "
                f"{', '.join(self._text) or '(none)'}"
            )
        return self._text[column]

    def where(self, **equals: Any) -> TabularBenchmark:
        """The rows whose columns equal the given values, e.g. ``where(dataset="cifar10")``."""
        return self.subset(self.where_index(**equals))

    def where_index(self, **equals: Any) -> np.ndarray:
        """Indices of the rows ``where`` keeps."""
        keep = np.ones(len(self), dtype=bool)
        for column, value in equals.items():
            if column in self._text:
                keep &= np.asarray(self._text[column], dtype=object) == str(value)
            else:
                keep &= self.values(column) == float(value)
        return np.flatnonzero(keep)

    def row(self, index: int) -> dict[str, float]:
        """Every numeric value of row ``index`` (missing values left out)."""
        out = {}
        for name, col in self._columns.items():
            v = float(col[index])
            if not math.isnan(v):
                out[name] = v
        return out

    # -- identity ---------------------------------------------------------------------------
    @property
    def hashes(self) -> list[str]:
        """Canonical hash of each row (computed on first use, then kept)."""
        if self._hashes is None:
            self._hashes = list(self.space.hash_many(self._archs))
        return self._hashes

    def rehash(self) -> None:
        """Forget the hashes (given or computed): the next use recomputes them from the cells."""
        self._hashes = None
        self.hashes_given = False
        self._first = self._dups = None

    def _build_index(self) -> None:
        first: dict[str, int] = {}
        dups: dict[str, list[int]] = {}
        for i, h in enumerate(self.hashes):
            j = first.setdefault(h, i)
            if j != i:
                dups.setdefault(h, [j]).append(i)
        self._first, self._dups = first, dups

    @property
    def n_unique(self) -> int:
        """Number of distinct canonical hashes."""
        if self._first is None:
            self._build_index()
        assert self._first is not None
        return len(self._first)

    @property
    def duplicates(self) -> dict[str, list[int]]:
        """Hashes held by more than one row, with those rows (first row first)."""
        if self._dups is None:
            self._build_index()
        assert self._dups is not None
        return self._dups

    def _by_text(self) -> dict[str, int]:
        """Exact text (``space.format``) -> first row with that text; cheap to build."""
        if self._text_index is None:
            fmt = self.space.format
            index: dict[str, int] = {}
            repeats: list[tuple[int, int]] = []
            for i, arch in enumerate(self._archs):
                j = index.setdefault(fmt(arch), i)
                if j != i:
                    repeats.append((j, i))
            self._text_index, self._text_repeats = index, repeats
        return self._text_index

    def text_repeats(self) -> list[tuple[int, int]]:
        """``(first, later)`` row pairs where a later row repeats a cell's exact text; a query
        never returns the later row (see ``find``)."""
        self._by_text()
        return self._text_repeats

    def row_name(self, i: int) -> str:
        """Row ``i`` as a message names it: its file line where known, else its place among
        the data rows (from 1)."""
        if self.lines is not None:
            return f"{self.line_unit} {self.lines[i]}"
        return f"data row {i + 1}"

    def conflicting_repeats(self, metric: str) -> list[tuple[int, int]]:
        """``(first, later)`` rows that write one cell with exactly the same text and two
        different values of ``metric`` (NaN and a number differ)."""
        col = self.values(metric)
        return [(i, j) for i, j in self.text_repeats()
                if col[i] != col[j] and not (np.isnan(col[i]) and np.isnan(col[j]))]

    def check_repeats_agree(self, metric: str) -> None:
        """One-line error when a cell written twice with exactly the same text has two
        different values of ``metric``: a query answers with the first row only, so the
        second value would be silently ignored (a table with one row per training seed, say,
        must be averaged into one row per cell first)."""
        bad = self.conflicting_repeats(metric)
        if bad:
            first, later = bad[0]
            col = self.values(metric)
            more = f" ({len(bad)} such pairs)" if len(bad) > 1 else ""
            raise ArchrankError(
                f"{self.source}: {self.row_name(first)} and {self.row_name(later)} hold the "
                f"same architecture {self.space.format(self._archs[first])} with different "
                f"{metric} ({col[first]:g} and {col[later]:g}){more}; a query would only ever "
                "see the first: keep one row per architecture (e.g. the mean over training "
                "seeds)")

    def answering_rows(self) -> np.ndarray:
        """The rows some query is answered by (``find``): the first of each exact text; a
        later row repeating that text is never returned."""
        return np.fromiter(sorted(self._by_text().values()), dtype=np.int64)

    def find(self, arch: Any) -> int | None:
        """Row of ``arch``, or ``None`` when the table has no equivalent cell.

        The row with exactly this text wins; otherwise the first row of its canonical hash
        (hashing every row only happens, once, when some query needs it).
        """
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        i = self._by_text().get(self.space.format(arch))
        if i is not None:
            return i
        if self._first is None:
            self._build_index()
        assert self._first is not None
        return self._first.get(self.space.hash(arch))

    def index_of(self, arch: Any) -> int:
        """Row answering queries for ``arch``; ``NotInBenchmark`` when there is none."""
        i = self.find(arch)
        if i is None:
            text = arch if isinstance(arch, str) else self.space.format(arch)
            raise NotInBenchmark(f"architecture {text} is not in {self.source}")
        return i

    def indices_of(self, archs: Iterable[Any]) -> np.ndarray:
        """Rows of many architectures (``NotInBenchmark`` for the first one missing)."""
        return np.fromiter((self.index_of(a) for a in archs), dtype=np.int64)

    def __contains__(self, arch: Any) -> bool:
        return self.find(arch) is not None

    def query(self, arch: Any, metric: str) -> float:
        """Value of ``metric`` for ``arch`` (NaN when that row has no value)."""
        col = self.values(metric)
        return float(col[self.index_of(arch)])

    @property
    def has_cost(self) -> bool:
        return self.cost_column is not None

    def cost(self, arch: Any) -> float:
        """Recorded training cost of ``arch`` (0 when the table records none)."""
        if self.cost_column is None:
            return 0.0
        v = float(self._columns[self.cost_column][self.index_of(arch)])
        return 0.0 if math.isnan(v) else v

    def fingerprint(self) -> str:
        """Short digest of the table's content, recorded by a run so that a resume notices a
        changed table: the bytes of its file (every file of a directory) when ``source`` is
        one, else its cells and columns."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = content_fingerprint(self.source) or self._content_digest()
        return self._fingerprint

    def _content_digest(self) -> str:
        digest = hashlib.sha256()
        for arch in self._archs:
            digest.update(self.space.format(arch).encode())
            digest.update(b"\n")
        for name, col in self._columns.items():
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(col).tobytes())
        return digest.hexdigest()[:16]

    # -- whole-table queries ----------------------------------------------------------------
    def best_index(self, metric: str) -> int:
        """Row with the largest value of ``metric`` (first one on ties)."""
        col = self.values(metric)
        if np.isnan(col).all():
            raise ArchrankError(f"column {metric!r} of {self.source} has no values")
        return int(np.nanargmax(col))

    def best(self, metric: str) -> tuple[Any, float]:
        """``(arch, value)`` of the row with the largest value of ``metric``."""
        i = self.best_index(metric)
        return self._archs[i], float(self._columns[metric][i])

    def subset(self, rows: Sequence[int] | np.ndarray) -> TabularBenchmark:
        """A benchmark made of the given rows (e.g. one dataset of a multi-dataset table)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        hashes = None if self._hashes is None else [self._hashes[i] for i in idx]
        out = TabularBenchmark(
            self.space, [self._archs[i] for i in idx],
            {k: v[idx] for k, v in self._columns.items()},
            self.source, self.cost_column, hashes=hashes,
            text_columns={k: [v[i] for i in idx] for k, v in self._text.items()},
        )
        out.hashes_given = self.hashes_given  # computed hashes stay computed ones
        out.lines = None if self.lines is None else [self.lines[i] for i in idx]
        out.line_unit = self.line_unit
        return out

    # -- pickling: ship registered spaces by name ------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        from archrank.spaces import SPACES, get_space

        name = getattr(self.space, "name", None)
        if name in SPACES:
            try:
                if get_space(name) is self.space:
                    state["space"] = name
            except ArchrankError:
                pass
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("space"), str):
            from archrank.spaces import get_space

            state["space"] = get_space(state["space"])
        self.__dict__.update(state)


# ------------------------------------------------------------------------------------------
# Reading CSV and JSON Lines
# ------------------------------------------------------------------------------------------


@dataclass
class RowProblem:
    """A row that could not be read: its line (1-based), or record number (``unit``)."""

    line: int
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.message}"


@dataclass
class TableScan:
    """What a lenient read found: the valid rows as a benchmark, and the problems.

    ``recorded_hashes`` is the file's own ``hash`` of each valid row (``None`` where it has
    none); ``lines`` the line of each valid row (the benchmark's own). ``row_name`` says what
    a row of the file is: an NB101 tfrecord's rows are modules (a module's records, one per
    repeat and budget, are averaged into one row; an undecodable record counts as one).
    """

    bench: TabularBenchmark
    rows: int
    problems: list[RowProblem] = field(default_factory=list)
    recorded_hashes: list[str | None] | None = None
    row_name: str = "row"

    @property
    def lines(self) -> list[int] | None:
        return self.bench.lines

    @property
    def valid(self) -> int:
        return len(self.bench)

    def subset(self, rows: np.ndarray) -> TableScan:
        """The scan of the valid rows ``rows`` (a filter); the problems stay as found."""
        pick = [int(i) for i in rows]
        return TableScan(
            self.bench.subset(rows), len(pick) + self.invalid, self.problems,
            None if self.recorded_hashes is None else [self.recorded_hashes[i] for i in pick],
            self.row_name)

    @property
    def invalid(self) -> int:
        return self.rows - self.valid


class _Collector:
    """Collects row problems; ``finish`` raises the first one unless lenient."""

    def __init__(self, path: Path, lenient: bool) -> None:
        self.path = path
        self.lenient = lenient
        self.unit = "line"
        self.problems: list[RowProblem] = []

    def add(self, line: int, message: str) -> None:
        self.problems.append(RowProblem(line, message, self.unit))

    def finish(self) -> None:
        """Sort the problems by line; in strict mode raise the first one."""
        self.problems.sort(key=lambda p: p.line)
        if self.problems and not self.lenient:
            first = self.problems[0]
            where = f":{first.line}" if first.unit == "line" else f": {first.unit} {first.line}"
            raise BenchmarkFormatError(f"{self.path}{where}: {first.message}")


def open_text(path: Path) -> io.TextIOBase:
    try:
        # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name
        if path.name.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise ArchrankError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ArchrankError(f"{path}: is a directory, not a table file") from None
    except OSError as exc:
        raise ArchrankError(f"{path}: cannot read ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """A damaged compressed file or a failing disk, met while reading, as one line."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BenchmarkFormatError(
            f"{path}: damaged or truncated compressed file ({exc or type(exc).__name__})"
        ) from None
    except OSError as exc:
        raise BenchmarkFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None


def bad_utf8_line(path: Path) -> int:
    """The line holding a file's first byte that is not UTF-8 (the decoder reads ahead in
    blocks, so the reader's own line count is not where the byte is)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return data[:exc.start].count(b"\n") + 1
    return 1


def _why(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:100]


def _decode_field(value: Any) -> Any:
    """Architecture fields written as JSON text in a CSV cell (``[[0,1],[0,0]]``) are decoded."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{" and text:
            try:
                return json.loads(text)
            except (ValueError, RecursionError):  # not JSON, or nested absurdly deep
                return value
    return value


def _parse_arch(space: SearchSpace, record: Mapping[str, Any]) -> Any:
    """``space.from_record`` with every failure turned into a one-line message."""
    try:
        return space.from_record({k: _decode_field(v) for k, v in record.items()})
    except ArchrankError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise BenchmarkFormatError(f"invalid architecture ({type(exc).__name__}: {exc})") from None


def _to_float(value: Any) -> float:
    """A cell as a float: numbers, numeric text, or a missing marker (NaN). ValueError else."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _MISSING:
            return math.nan
        return float(text)
    raise ValueError(value)


def _mostly_numbers(cells: list[Any]) -> bool:
    """Whether a column is numeric: more of its present cells are numbers than not (a column
    with no value at all counts as numeric, an empty metric)."""
    if not any(isinstance(c, bool) for c in cells):
        try:
            np.asarray(cells, dtype=np.float64)
            return True
        except (ValueError, TypeError, OverflowError):
            pass
    kinds = [_is_number(c) for c in cells]
    return kinds.count(True) >= kinds.count(False)


def _is_number(value: Any) -> bool | None:
    """Whether a value is a number; ``None`` when it is missing."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in _MISSING:
        return None
    try:
        _to_float(value)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _pick_cost_column(names: Iterable[str]) -> str | None:
    present = set(names)
    return next((c for c in COST_COLUMNS if c in present), None)


def _text_cell(value: Any) -> str:
    """A text column's cell; padding is dropped, as it is from header names and filters."""
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else json.dumps(value)


def _column(name: str, cells: list[Any], bad: dict[int, str]) -> np.ndarray:
    """One metric column as floats; rows whose cell is not a number go into ``bad``.
    Infinities are kept as read (a proxy may be ``-inf``); a column used as a score is
    checked with ``TabularBenchmark.scores``."""
    try:
        if any(isinstance(c, bool) for c in cells):  # JSON true is not 1.0
            raise TypeError
        out = np.asarray(cells, dtype=np.float64)  # fast path: numbers, numeric text, None
    except (ValueError, TypeError, OverflowError):
        out = np.empty(len(cells), dtype=np.float64)
        for i, cell in enumerate(cells):
            try:
                out[i] = _to_float(cell)
            except (ValueError, TypeError, OverflowError):
                out[i] = np.nan
                bad.setdefault(i, f"column {name!r}: {_short(cell)} is not a number")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _assemble(
    path: Path,
    space: SearchSpace,
    records: list[tuple[int, dict[str, Any]]],
    order: list[str],
    collect: _Collector,
    rows: int,
) -> TableScan:
    """Turn ``(line, record)`` pairs into a benchmark: type the columns, parse architectures."""
    fields = space.record_fields
    skip = non_metric_columns(order)
    metric_names = [k for k in order if k not in fields and k not in skip]
    # A column is a metric column when most of its present values are numbers (a stray '-'
    # in the first row must not turn a metric into text; it is reported on its own line).
    cells = {name: [rec.get(name) for _, rec in records] for name in metric_names}
    numeric = [name for name in metric_names if _mostly_numbers(cells[name])]
    bad: dict[int, str] = {}
    for i, (_, rec) in enumerate(records):
        missing = [f for f in fields if f not in rec or rec[f] is None]
        if missing:
            bad[i] = f"missing field {missing[0]!r}"
    full = {name: _column(name, cells[name], bad) for name in numeric}

    archs: list[Any] = []
    keep: list[int] = []
    for i, (line, rec) in enumerate(records):
        if i in bad:
            collect.add(line, bad[i])
            continue
        try:
            arch = _parse_arch(space, {f: rec[f] for f in fields})
        except ArchrankError as exc:
            collect.add(line, str(exc))
            continue
        archs.append(arch)
        keep.append(i)
    collect.finish()

    idx = np.asarray(keep, dtype=np.int64)
    columns = {name: col if len(keep) == len(records) else col[idx]
               for name, col in full.items()}
    texts = {name: [_text_cell(records[i][1].get(name)) for i in keep]
             for name in order if name not in fields and name not in full}
    bench = TabularBenchmark(space, archs, columns, str(path), _pick_cost_column(numeric),
                             text_columns=texts)
    recorded = None
    if "hash" in order:
        recorded = []
        for i in keep:
            h = records[i][1].get("hash")
            recorded.append(None if h is None or h == "" else str(h))
    bench.lines, bench.line_unit = [records[i][0] for i in keep], collect.unit
    bench.bookkeeping = tuple(c for c in skip if c not in ID_COLUMNS)
    return TableScan(bench, rows, collect.problems, recorded)


def _missing_columns_error(path: Path, space: SearchSpace, missing: list[str],
                           present: Sequence[str]) -> BenchmarkFormatError:
    return BenchmarkFormatError(
        f"{path}: missing column {missing[0]!r} needed by space {space.name} "
        f"(it reads {', '.join(space.record_fields)}); columns are: "
        f"{', '.join(present) or '(none)'}"
    )


def scan_csv(path: str | Path, space: SearchSpace, *, lenient: bool = False) -> TableScan:
    """Read a CSV table with a header row; see the module docstring for the two modes."""
    path = Path(path)
    collect = _Collector(path, lenient)
    records: list[tuple[int, dict[str, Any]]] = []
    rows = 0
    with open_text(path) as fh, _read_errors(path):
        reader = csv.reader(fh, strict=True)
        try:
            try:
                header = next(reader, None)
            except csv.Error as exc:
                raise BenchmarkFormatError(f"{path}:1: malformed header row ({exc})") from None
            if header is None:
                raise BenchmarkFormatError(f"{path}: empty file (no header row)")
            header = [h.strip() for h in header]
            seen: set[str] = set()
            for h in header:
                if h in seen:
                    raise BenchmarkFormatError(f"{path}:1: column {h!r} appears twice")
                seen.add(h)
            missing = [f for f in space.record_fields if f not in seen]
            if missing:
                raise _missing_columns_error(path, space, missing, header)
            width = len(header)
            last_line = -1
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    rows += 1
                    if reader.line_num == last_line:
                        break  # no progress: give up on the rest of the file
                    last_line = reader.line_num
                    where = (f"; an unterminated quote runs to line {reader.line_num}"
                             if reader.line_num > start else "; truncated?")
                    collect.add(start, f"malformed CSV ({exc}{where})")
                    continue
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                rows += 1
                if len(row) != width:
                    collect.add(
                        reader.line_num,
                        f"expected {width} fields, got {len(row)} (truncated or malformed row)",
                    )
                    continue
                records.append((reader.line_num, dict(zip(header, row, strict=True))))
        except UnicodeDecodeError:
            raise BenchmarkFormatError(
                f"{path}:{bad_utf8_line(path)}: not UTF-8 text (is this a CSV file?)"
            ) from None
    return _assemble(path, space, records, header, collect, rows)


class _RepeatedKey(ValueError):
    pass


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are distinct (``json`` keeps the last of a repeated key
    silently; a CSV header naming a column twice is refused, so is this)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _iter_json_records(path: Path, collect: _Collector) -> Iterator[tuple[int, Any]]:
    """``(line, object)`` of a JSON Lines file, or ``(record number, object)`` of a JSON list."""
    with open_text(path) as fh, _read_errors(path):
        try:
            text = fh.read()
        except UnicodeDecodeError:
            raise BenchmarkFormatError(
                f"{path}:{bad_utf8_line(path)}: not UTF-8 text (is this a JSON file?)") from None
    if text.lstrip()[:1] == "{" and "\n" in text.strip():
        try:  # one object over several lines (indented JSON), not JSON Lines
            whole = json.loads(text)
        except (ValueError, RecursionError):
            whole = None
        if isinstance(whole, dict):
            raise BenchmarkFormatError(
                f"{path}: one JSON object over {text.strip().count(chr(10)) + 1} lines; a "
                "table is JSON Lines (one object a line) or a JSON list of objects")
    if text.lstrip()[:1] == "[":
        try:
            data = json.loads(text, object_pairs_hook=_no_repeated_keys)
        except _RepeatedKey as exc:
            raise BenchmarkFormatError(f"{path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise BenchmarkFormatError(
                f"{path}:{exc.lineno}: malformed JSON ({exc.msg}, column {exc.colno})"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise BenchmarkFormatError(f"{path}: unreadable JSON ({_why(exc)})") from None
        if not isinstance(data, list):
            raise BenchmarkFormatError(f"{path}: expected a JSON list of objects")
        collect.unit = "record"
        yield from enumerate(data, start=1)
        return
    # JSON Lines break on \n only (splitlines would also break on U+2028 inside a string)
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line, object_pairs_hook=_no_repeated_keys)
        except _RepeatedKey as exc:
            collect.add(lineno, str(exc))
            yield lineno, None
        except json.JSONDecodeError as exc:
            collect.add(lineno, f"malformed JSON ({exc.msg}, column {exc.colno}; truncated?)")
            yield lineno, None
        except (ValueError, RecursionError) as exc:
            collect.add(lineno, f"unreadable JSON ({_why(exc)})")
            yield lineno, None


def scan_jsonl(path: str | Path, space: SearchSpace, *, lenient: bool = False) -> TableScan:
    """Read JSON Lines (one object a line) or a JSON list of objects."""
    path = Path(path)
    collect = _Collector(path, lenient)
    records: list[tuple[int, dict[str, Any]]] = []
    order: dict[str, None] = {}
    rows = 0
    lacking: tuple[list[str], list[str]] | None = None  # the first record without a field
    for line, obj in _iter_json_records(path, collect):
        rows += 1
        if obj is None:
            continue  # already reported
        if not isinstance(obj, dict):
            collect.add(line, f"expected a JSON object, got {type(obj).__name__}")
            continue
        if not records:
            missing = [f for f in space.record_fields if f not in obj]
            if missing and not lenient:
                raise _missing_columns_error(path, space, missing, list(obj))
            if missing:  # one bad record among good ones is one invalid row (as later on)
                lacking = lacking or (missing, list(obj))
                collect.add(line, f"missing field {missing[0]!r}")
                continue
        for k in obj:
            if k not in order:
                order[k] = None
        records.append((line, obj))
    if rows == 0:
        raise BenchmarkFormatError(f"{path}: empty file (no records)")
    if not records and lacking is not None:  # no record has the space's fields: say which
        raise _missing_columns_error(path, space, *lacking)
    return _assemble(path, space, records, list(order), collect, rows)


def scan_table(path: str | Path, space: SearchSpace, *, lenient: bool = False) -> TableScan:
    """CSV or JSON (Lines) by file name."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return scan_jsonl(path, space, lenient=lenient)
    return scan_csv(path, space, lenient=lenient)


def read_csv(path: str | Path, space: SearchSpace) -> TabularBenchmark:
    """A CSV benchmark; the first problem raises a one-line ``BenchmarkFormatError``."""
    return scan_csv(path, space).bench


def read_jsonl(path: str | Path, space: SearchSpace) -> TabularBenchmark:
    """A JSON Lines (or JSON list) benchmark; strict like ``read_csv``."""
    return scan_jsonl(path, space).bench


# ------------------------------------------------------------------------------------------
# Writing CSV
# ------------------------------------------------------------------------------------------


def _csv_cell(value: Any) -> str:
    """A value as CSV text the readers above read back: numbers exactly (``repr``; a whole
    float such as a parameter count as an integer), missing and non-finite values empty,
    lists and objects as JSON."""
    if value is None or isinstance(value, bool):
        return "" if value is None else str(value).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return ""
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]],
              columns: Sequence[str] | None = None, flag: str = "--out") -> int:
    """Write ``rows`` (flat dicts) as a CSV table with a header row; ``columns`` first in
    that order, then every other key in the order first seen. Written with
    ``archrank.files.open_output`` (atomic for a regular file); a table with an ``arch``
    column and numeric columns reads back with ``load_benchmark``. Returns the row count."""
    from archrank.files import open_output

    order: dict[str, None] = dict.fromkeys(columns or ())
    for row in rows:
        order.update(dict.fromkeys(row))
    header = list(order)
    with open_output(path, "w", flag, newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_cell(row.get(k)) for k in header])
    return len(rows)

