"""The official NAS-Bench-101 ``.tfrecord`` file, read without TensorFlow.

File layout (TFRecord framing), repeated for every record::

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

(little-endian). Each ``data`` is the UTF-8 JSON list
``[module_hash, epochs, raw_adjacency, raw_operations, raw_metrics]`` where the adjacency is
an n*n 0/1 string, the operations are comma-separated, and ``raw_metrics`` is base64 of a
``nasbench.ModelMetrics`` protobuf::

    ModelMetrics   { repeated EvaluationData evaluation_data = 1; int32 trainable_parameters = 2;
                     double total_time = 3; }
    EvaluationData { double current_epoch = 1; double training_time = 2;
                     double train_accuracy = 3; double validation_accuracy = 4;
                     double test_accuracy = 5; string checkpoint_path = 6; }

``evaluation_data`` holds the evaluations at step 0, half-way and at the end of training.
There is one record per (module, epoch budget, repeat). As the official API's ``query`` draws
one repeat at random, the table keeps the mean over repeats: columns ``train_acc_E``,
``val_acc_E``, ``test_acc_E``, ``train_time_E`` (end of training), the same with suffix
``_half`` (half-way), for every budget E (4, 12, 36, 108 in the full file), and ``params``.
The cost column is ``train_time_E`` of the largest budget. Each record's module hash is
checked against the hash recomputed from its cell.

CRCs are computed with a table-driven CRC-32C vectorised over many records at once (numpy),
so the 2 GB full file is checked in seconds, not hours.
"""

from __future__ import annotations

import binascii
import json
import mmap
import struct
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import ArchrankError, BenchmarkFormatError
from archrank.tables.table import RowProblem, TableScan, TabularBenchmark

# -- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 --------------------------------


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


CRC_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in CRC_TABLE]
_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (scalar, table-driven; for small inputs and tests)."""
    crc = 0xFFFFFFFF
    table = _TABLE_LIST
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """TFRecord's masked CRC (rotate right by 15, add a constant)."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def crc32c_many(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32C of many byte ranges ``buf[offsets[i] : offsets[i] + lengths[i]]`` at once.

    Ranges are sorted by length so that at byte position j only the still-running ranges
    (a prefix) are updated: one vectorised table step per byte position, not per byte.
    """
    n = len(offsets)
    out = np.zeros(n, dtype=np.uint32)
    if n == 0:
        return out
    order = np.argsort(-lengths, kind="stable")
    offs = offsets[order].astype(np.int64)
    lens = lengths[order].astype(np.int64)
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    # active[j] = number of ranges longer than j (lengths sorted descending).
    max_len = int(lens[0])
    active = np.searchsorted(-lens, -np.arange(max_len), side="left")
    table = CRC_TABLE
    for j in range(max_len):
        k = int(active[j])
        c = crc[:k]
        b = buf[offs[:k] + j]
        crc[:k] = table[(c ^ b) & 0xFF] ^ (c >> 8)
    out[order] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def mask_crc_many(crc: np.ndarray) -> np.ndarray:
    c = crc.astype(np.uint64)
    return ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)


# -- framing ------------------------------------------------------------------------------


def _frame(path: Path, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and lengths of every record's data, with both CRCs verified."""
    size = buf.size
    raw = memoryview(buf)
    starts: list[int] = []
    lengths: list[int] = []
    pos = 0
    unpack = struct.unpack_from
    while pos < size:
        if size - pos < 12:
            raise BenchmarkFormatError(
                f"{path}: record {len(starts) + 1} at byte {pos}: truncated header "
                f"(file ends {size - pos} bytes into it)"
            )
        (length,) = unpack("<Q", raw, pos)
        end = pos + 12 + length + 4
        if end > size:
            (stored,) = unpack("<I", raw, pos + 8)
            if mask_crc(crc32c(bytes(raw[pos : pos + 8]))) != stored:
                raise BenchmarkFormatError(
                    f"{path}: record {len(starts) + 1} at byte {pos}: corrupt length "
                    "(CRC mismatch); not a TFRecord file or damaged"
                )
            raise BenchmarkFormatError(
                f"{path}: record {len(starts) + 1} at byte {pos}: truncated "
                f"(needs {length} data bytes, file ends {size - pos - 12} bytes later)"
            )
        starts.append(pos)
        lengths.append(length)
        pos = end
    pos_arr = np.asarray(starts, dtype=np.int64)
    len_arr = np.asarray(lengths, dtype=np.int64)
    if pos_arr.size == 0:
        return pos_arr, len_arr
    _verify(path, buf, pos_arr, np.full(pos_arr.size, 8, np.int64), pos_arr + 8, "length")
    _verify(path, buf, pos_arr + 12, len_arr, pos_arr + 12 + len_arr, "data", starts=pos_arr)
    return pos_arr + 12, len_arr


def _verify(path: Path, buf: np.ndarray, offs: np.ndarray, lens: np.ndarray,
            crc_at: np.ndarray, what: str, starts: np.ndarray | None = None,
            chunk: int = 65536) -> None:
    """Compare computed and stored masked CRCs; the first mismatch raises."""
    for lo in range(0, offs.size, chunk):
        hi = min(lo + chunk, offs.size)
        got = mask_crc_many(crc32c_many(buf, offs[lo:hi], lens[lo:hi]))
        at = crc_at[lo:hi, None] + np.arange(4)
        stored = buf[at].astype(np.uint32)
        stored = stored[:, 0] | (stored[:, 1] << 8) | (stored[:, 2] << 16) | (stored[:, 3] << 24)
        bad = np.flatnonzero(got != stored)
        if bad.size:
            i = lo + int(bad[0])
            where = int((starts if starts is not None else offs)[i])
            raise BenchmarkFormatError(
                f"{path}: record {i + 1} at byte {where}: {what} CRC mismatch (corrupt file)"
            )


# -- protobuf wire format (just what ModelMetrics needs) ---------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


_DOUBLE = struct.Struct("<d").unpack_from
_FIVE_DOUBLES = struct.Struct("<xdxdxdxdxd").unpack_from
_EVAL_FIELDS = ("current_epoch", "training_time", "train_accuracy", "validation_accuracy",
                "test_accuracy")


def _skip(data: bytes, pos: int, wire: int) -> int:
    """Position after a field's value of wire type ``wire`` starting at ``pos``."""
    if wire == 2 and pos < len(data) and data[pos] < 0x80:
        return pos + 1 + data[pos]
    if wire == 0:
        return _varint(data, pos)[1]
    if wire == 1:
        return pos + 8
    if wire == 2:
        size, pos = _varint(data, pos)
        return pos + size
    if wire == 5:
        return pos + 4
    raise ValueError(f"unsupported wire type {wire}")


def _evaluation(data: bytes, pos: int, end: int) -> tuple[float, float, float, float, float]:
    """``EvaluationData`` in ``data[pos:end]``: its five doubles (proto2 default 0)."""
    # Fast path: the official writer emits fields 1..5 in order, each a one-byte key and 8
    # bytes; reading them as one struct is exactly what the general loop below would do.
    if (pos + 45 <= end and data[pos] == 0x09 and data[pos + 9] == 0x11
            and data[pos + 18] == 0x19 and data[pos + 27] == 0x21 and data[pos + 36] == 0x29):
        vals = list(_FIVE_DOUBLES(data, pos))
        pos += 45
    else:
        vals = [0.0, 0.0, 0.0, 0.0, 0.0]
    while pos < end:
        key = data[pos]
        if key < 0x80:  # every field of the message has a one-byte key
            pos += 1
        else:
            key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if 1 <= number <= 5:
            if wire != 1:
                raise ValueError(f"EvaluationData.{_EVAL_FIELDS[number - 1]} has wire type "
                                 f"{wire}, expected double")
            if pos + 8 > end:
                raise ValueError("truncated double")
            vals[number - 1] = _DOUBLE(data, pos)[0]
            pos += 8
        else:
            pos = _skip(data, pos, wire)
    if pos != end:
        raise ValueError("truncated EvaluationData")
    return vals[0], vals[1], vals[2], vals[3], vals[4]


def _model_metrics(data: bytes) -> tuple[list[tuple[float, ...]], int, float]:
    """``ModelMetrics``: (evaluations as 5-tuples, trainable parameters, total time)."""
    evals: list[tuple[float, ...]] = []
    params = 0
    total = 0.0
    pos = 0
    end = len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 1 and wire == 2:
            size = data[pos] if pos < end else 0x80
            if size < 0x80:
                pos += 1
            else:
                size, pos = _varint(data, pos)
            if pos + size > end:
                raise ValueError("truncated evaluation_data")
            evals.append(_evaluation(data, pos, pos + size))
            pos += size
        elif number == 2 and wire == 0:
            params, pos = _varint(data, pos)
            if params >= 1 << 63:  # int32 negatives are sign-extended to 64 bits
                params -= 1 << 64
        elif number == 3 and wire == 1:
            if pos + 8 > end:
                raise ValueError("truncated total_time")
            total = _DOUBLE(data, pos)[0]
            pos += 8
        elif number in (1, 2, 3):
            raise ValueError(f"ModelMetrics field {number} has unexpected wire type {wire}")
        else:
            pos = _skip(data, pos, wire)
    if pos != end:
        raise ValueError("truncated ModelMetrics")
    return evals, params, total


def decode_model_metrics(data: bytes) -> dict[str, Any]:
    """A ``ModelMetrics`` message as ``{evaluation_data: [{field: value}], trainable_parameters,
    total_time}``."""
    evals, params, total = _model_metrics(data)
    return {"evaluation_data": [dict(zip(_EVAL_FIELDS, e, strict=True)) for e in evals],
            "trainable_parameters": params, "total_time": total}


# -- records to a table ------------------------------------------------------------------

# Column stem and index in an evaluation tuple (see _EVAL_FIELDS).
_POINTS = (("train_acc", 2), ("val_acc", 3), ("test_acc", 4), ("train_time", 1))


def _decode_record(data: bytes) -> tuple[str, int, str, str, tuple[Any, ...], int]:
    """(module hash, epochs, adjacency, operations, (half-way, final) evaluation, params)."""
    try:
        row = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"record is not JSON ({exc})") from None
    except RecursionError:
        raise ValueError("record is not JSON (nested too deeply)") from None
    if not (isinstance(row, list) and len(row) == 5):
        raise ValueError("record is not [module_hash, epochs, adjacency, operations, metrics]")
    module_hash, epochs, adjacency, operations, raw_metrics = row
    if (not isinstance(module_hash, str) or not isinstance(epochs, int)
            or isinstance(epochs, bool) or epochs <= 0):
        raise ValueError("bad module hash or epoch count")
    if not isinstance(adjacency, str) or not isinstance(operations, str):
        raise ValueError("adjacency and operations must be strings")
    try:
        blob = binascii.a2b_base64(raw_metrics, strict_mode=True)
    except (binascii.Error, TypeError, ValueError):
        raise ValueError("metrics are not base64") from None
    evals, params, _ = _model_metrics(blob)
    if len(evals) < 3:
        raise ValueError(f"metrics have {len(evals)} evaluations, expected 3 "
                         "(start, half-way, end)")
    return module_hash, epochs, adjacency, operations, (evals[1], evals[2]), params


def scan_nb101_tfrecord(path: str | Path, *, lenient: bool = False) -> TableScan:
    """Read an NB101 tfrecord; strict mode raises on the first problem (one line)."""
    from archrank.spaces import get_space

    space = get_space("nb101")
    path = Path(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise ArchrankError(f"{path}: no such file") from None
    except OSError as exc:
        raise ArchrankError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        if path.stat().st_size == 0:
            raise BenchmarkFormatError(f"{path}: empty file")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            failure = None
            buf = np.frombuffer(mm, dtype=np.uint8)
            try:
                offsets, lengths = _frame(path, buf)
            except BenchmarkFormatError as exc:
                failure = str(exc)  # raised below: the traceback pins views of the mmap
            del buf
            if failure is not None:
                raise BenchmarkFormatError(failure)
            records = (mm[o : o + n] for o, n in zip(offsets.tolist(), lengths.tolist(),
                                                     strict=True))
            return _records_to_table(path, space, records, lenient)


class _Accumulator:
    """Per-record values in compact arrays, averaged per (module, budget) at the end."""

    width = 2 * len(_POINTS)

    def __init__(self) -> None:
        self.module = array("q")
        self.epochs = array("q")
        self.flat = array("d")  # per record: final then half-way values, in _POINTS order

    def add(self, module: int, epochs: int, half: tuple[float, ...],
            final: tuple[float, ...]) -> None:
        self.module.append(module)
        self.epochs.append(epochs)
        self.flat.extend((final[2], final[3], final[4], final[1],
                          half[2], half[3], half[4], half[1]))

    def columns(self, keep: np.ndarray) -> tuple[dict[str, np.ndarray], list[int]]:
        """Mean over repeats for every budget, rows ``keep`` (module indices)."""
        mod = np.frombuffer(self.module, dtype=np.int64) if self.module else np.zeros(0, int)
        ep = np.frombuffer(self.epochs, dtype=np.int64) if self.epochs else np.zeros(0, int)
        flat = (np.frombuffer(self.flat, dtype=np.float64) if self.flat
                else np.zeros(0)).reshape(-1, self.width)
        budgets = [int(e) for e in np.unique(ep)]
        if not budgets:  # no record decoded: no column to average
            return {}, []
        n_mod = int(mod.max()) + 1
        slot = np.searchsorted(np.asarray(budgets, dtype=np.int64), ep)
        key = mod * max(len(budgets), 1) + slot
        size = n_mod * len(budgets)
        counts = np.bincount(key, minlength=size).reshape(n_mod, len(budgets))
        names = [f"{stem}_{{e}}{suffix}" for suffix in ("", "_half") for stem, _ in _POINTS]
        means = []
        for k in range(self.width):
            sums = np.bincount(key, weights=flat[:, k], minlength=size).reshape(n_mod, -1)
            with np.errstate(invalid="ignore", divide="ignore"):
                means.append((sums / counts)[keep])
        out = {name.format(e=e): means[k][:, b]
               for b, e in enumerate(budgets) for k, name in enumerate(names)}
        return out, budgets


def _records_to_table(path: Path, space: Any, records: Iterator[bytes],
                      lenient: bool) -> TableScan:
    problems: list[RowProblem] = []

    def problem(record: int, message: str) -> None:
        if not lenient:
            raise BenchmarkFormatError(f"{path}: record {record}: {message}")
        problems.append(RowProblem(record, message, unit="record"))

    index: dict[str, int] = {}  # module hash -> module number
    cells: list[tuple[int, str, str, int]] = []  # first record, adjacency, ops, params
    same_cell: dict[tuple[int, str, str], bool] = {}  # (module, adjacency, ops) -> same cell
    bad: set[int] = set()
    undecodable = 0
    acc = _Accumulator()
    for i, data in enumerate(records, start=1):
        try:
            module_hash, epochs, adjacency, operations, (half, final), params = (
                _decode_record(data)
            )
        except ValueError as exc:
            problem(i, str(exc))
            undecodable += 1
            continue
        m = index.get(module_hash)
        if m is None:
            m = index[module_hash] = len(cells)
            cells.append((i, adjacency, operations, params))
        elif (adjacency, operations) != cells[m][1:3] and not _same_cell(
                space, cells[m][1:3], (adjacency, operations), same_cell, m):
            problem(i, f"module {module_hash} has a different cell than record {cells[m][0]}")
            bad.add(m)
            continue
        acc.add(m, epochs, half, final)

    archs: list[Any] = []
    hashes: list[str] = []
    recorded: list[str | None] = []
    keep: list[int] = []
    for module_hash, m in index.items():
        if m in bad:
            continue
        first, adjacency, operations, _ = cells[m]
        try:
            arch = space.from_record({"adjacency": adjacency, "ops": operations})
            computed = space.hash(arch)
        except ArchrankError as exc:
            problem(first, str(exc))
            bad.add(m)
            continue
        if computed != module_hash and not lenient:
            raise BenchmarkFormatError(
                f"{path}: record {first}: module hash {module_hash} does not match the hash "
                f"{computed} recomputed from its cell"
            )
        archs.append(arch)
        hashes.append(computed)
        recorded.append(module_hash)
        keep.append(m)

    keep_arr = np.asarray(keep, dtype=np.int64)
    columns, budgets = acc.columns(keep_arr)
    columns["params"] = np.asarray([float(cells[m][3]) for m in keep], dtype=np.float64)
    cost = f"train_time_{budgets[-1]}" if budgets else None
    bench = TabularBenchmark(space, archs, columns, str(path), cost, hashes=hashes)
    # a row is a module (the mean over its records); it is named by its first record
    bench.lines, bench.line_unit = [cells[m][0] for m in keep], "record"
    return TableScan(bench, len(index) + undecodable, problems, recorded, row_name="module")


def _same_cell(space: Any, first: tuple[str, str], other: tuple[str, str],
               memo: dict[tuple[int, str, str], bool], module: int) -> bool:
    """Whether two records of one module write the same cell in other words (an isomorphic
    vertex order): their recomputed hashes agree. Unreadable cells are not the same."""
    key = (module, *other)
    if key not in memo:
        try:
            hashes = [space.hash(space.from_record({"adjacency": a, "ops": o}))
                      for a, o in (first, other)]
        except ArchrankError:
            hashes = [None, 0]
        memo[key] = hashes[0] == hashes[1]
    return memo[key]


def read_nb101_tfrecord(path: str | Path) -> TabularBenchmark:
    """The NB101 benchmark in ``path`` (``nasbench_full.tfrecord`` or
    ``nasbench_only108.tfrecord``), one row per module, metrics averaged over repeats."""
    return scan_nb101_tfrecord(path).bench
