"""The NAS-Bench-101 .tfrecord reader, on small files written here in the official structure.

The writer below is independent of the reader: a bit-by-bit CRC-32C, a hand-rolled protobuf
encoder for ``nasbench.ModelMetrics`` and the TFRecord framing.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from archrank.errors import ArchrankError, BenchmarkFormatError

pytest.importorskip("archrank.spaces.nb101", reason="nb101 space not available yet")

from archrank.tables import load_benchmark, scan_benchmark
from archrank.tables.nb101_tfrecord import (
    crc32c,
    crc32c_many,
    decode_model_metrics,
    read_nb101_tfrecord,
)

# Three real NB101 modules (hash, adjacency, ops, trainable parameters) from nb101_10k.csv.
CELLS = [
    ("15f63ccf767bfa34fa4e9c9a66de8126", "0111000000010100000100000100000001000000010000000",
     "input,conv3x3-bn-relu,conv1x1-bn-relu,conv1x1-bn-relu,conv3x3-bn-relu,maxpool3x3,output",
     6491146),
    ("168e95938db8e7c52112e58c0f292079", "0110000100010000",
     "input,conv1x1-bn-relu,conv1x1-bn-relu,output", 1404042),
    ("19092e5d6cd57f13de1b98f46e22aa22", "0111001000010000",
     "input,maxpool3x3,conv1x1-bn-relu,output", 3667594),
]


# -- an independent writer ------------------------------------------------------------------
def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> bytes:
    crc = crc32c_bitwise(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def double_field(number: int, value: float) -> bytes:
    return varint(number << 3 | 1) + struct.pack("<d", value)


def bytes_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def evaluation_data(epoch: float, time_s: float, train: float, val: float, test: float) -> bytes:
    return (double_field(1, epoch) + double_field(2, time_s) + double_field(3, train)
            + double_field(4, val) + double_field(5, test)
            + bytes_field(6, b"/ckpt/model.ckpt-123"))


def model_metrics(params: int, evals: list[bytes], total: float) -> bytes:
    out = b"".join(bytes_field(1, e) for e in evals)
    return out + varint(2 << 3 | 0) + varint(params) + double_field(3, total)


def record(module_hash: str, epochs: int, adjacency: str, ops: str, params: int,
           final: tuple[float, float, float, float], half: tuple[float, float, float, float]
           ) -> bytes:
    evals = [evaluation_data(0, 0, 0.1, 0.1, 0.1),
             evaluation_data(epochs / 2, *half),
             evaluation_data(epochs, *final)]
    blob = base64.b64encode(model_metrics(params, evals, final[0] + 5)).decode()
    return json.dumps([module_hash, epochs, adjacency, ops, blob]).encode()


def frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + masked(length) + data + masked(data)


def write_file(path: Path, records: list[bytes]) -> Path:
    path.write_bytes(b"".join(frame(r) for r in records))
    return path


def sample_records() -> tuple[list[bytes], dict]:
    """3 modules x 2 budgets (4, 108) x 3 repeats, with known means."""
    rng = np.random.default_rng(0)
    records = []
    expected: dict = {}
    for module_hash, adjacency, ops, params in CELLS:
        for epochs in (4, 108):
            runs = []
            for _ in range(3):
                final = tuple(float(v) for v in (rng.uniform(100, 2000), *rng.uniform(0.1, 1, 3)))
                half = tuple(float(v) for v in (final[0] / 2, *rng.uniform(0.1, 1, 3)))
                runs.append((final, half))
                records.append(record(module_hash, epochs, adjacency, ops, params, final, half))
            expected[module_hash, epochs] = (np.mean([r[0] for r in runs], axis=0),
                                             np.mean([r[1] for r in runs], axis=0))
    return records, expected


# -- tests -----------------------------------------------------------------------------------
def test_crc32c_known_vector_and_vectorised() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    rng = np.random.default_rng(1)
    chunks = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()
              for n in rng.integers(0, 300, 40)]
    buf = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    lengths = np.array([len(c) for c in chunks])
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    got = crc32c_many(buf, offsets, lengths)
    assert [int(v) for v in got] == [crc32c_bitwise(c) for c in chunks]


def test_protobuf_decoder() -> None:
    blob = model_metrics(-5, [evaluation_data(1, 2, 0.3, 0.4, 0.5)], 7.5)
    out = decode_model_metrics(blob)
    assert out["trainable_parameters"] == -5  # int32 as a sign-extended varint
    assert out["total_time"] == 7.5
    assert out["evaluation_data"] == [{"current_epoch": 1.0, "training_time": 2.0,
                                       "train_accuracy": 0.3, "validation_accuracy": 0.4,
                                       "test_accuracy": 0.5}]


def test_read_round_trip(tmp_path: Path) -> None:
    records, expected = sample_records()
    path = write_file(tmp_path / "nasbench_tiny.tfrecord", records)
    bench = load_benchmark(path, "nb101")
    assert len(bench) == 3
    assert bench.hashes == [c[0] for c in CELLS]  # recomputed hashes equal the file's
    assert bench.cost_column == "train_time_108"
    for i, (module_hash, _, _, params) in enumerate(CELLS):
        assert bench.values("params")[i] == params
        for epochs in (4, 108):
            final, half = expected[module_hash, epochs]
            for j, name in enumerate(("train_time", "train_acc", "val_acc", "test_acc")):
                assert bench.values(f"{name}_{epochs}")[i] == pytest.approx(final[j])
                assert bench.values(f"{name}_{epochs}_half")[i] == pytest.approx(half[j])
    arch = bench.archs[1]
    assert bench.query(arch, "val_acc_108") == pytest.approx(expected[CELLS[1][0], 108][0][2])
    assert bench.cost(arch) == pytest.approx(expected[CELLS[1][0], 108][0][0])


def test_truncated_file_is_one_line_error(tmp_path: Path) -> None:
    records, _ = sample_records()
    data = b"".join(frame(r) for r in records)
    for cut in (len(data) - 3, len(data) - 200, len(data) - len(frame(records[-1])) + 5):
        path = tmp_path / "cut.tfrecord"
        path.write_bytes(data[:cut])
        with pytest.raises(BenchmarkFormatError, match=r"record 18 at byte \d+: truncated") as e:
            read_nb101_tfrecord(path)
        assert "\n" not in str(e.value)


def test_corrupt_data_and_length(tmp_path: Path) -> None:
    records, _ = sample_records()
    data = bytearray(b"".join(frame(r) for r in records))
    second = len(frame(records[0]))
    flipped = bytearray(data)
    flipped[second + 12 + 40] ^= 0x01  # a byte inside record 2's data
    path = write_file(tmp_path / "x.tfrecord", [])
    path.write_bytes(bytes(flipped))
    with pytest.raises(BenchmarkFormatError, match=r"record 2 at byte \d+: data CRC mismatch"):
        read_nb101_tfrecord(path)
    flipped = bytearray(data)
    flipped[second + 1] ^= 0x40  # record 2's length: now runs past the end of the file
    path.write_bytes(bytes(flipped))
    with pytest.raises(BenchmarkFormatError, match=r"record 2 at byte \d+: corrupt length"):
        read_nb101_tfrecord(path)
    path.write_bytes(b"not a tfrecord at all, just some text\n")
    with pytest.raises(BenchmarkFormatError, match="record 1"):
        read_nb101_tfrecord(path)


def test_hash_mismatch(tmp_path: Path) -> None:
    records, _ = sample_records()
    forged = [r.replace(CELLS[2][0].encode(), b"0" * 32) for r in records]
    path = write_file(tmp_path / "forged.tfrecord", forged)
    with pytest.raises(BenchmarkFormatError, match="does not match the hash"):
        read_nb101_tfrecord(path)
    scan = scan_benchmark(path, "nb101")  # lenient: reported, not fatal
    assert scan.valid == 3
    mismatches = [r != h for r, h in zip(scan.recorded_hashes, scan.bench.hashes, strict=True)]
    assert mismatches == [False, False, True]


def test_bad_record_is_reported_with_its_number(tmp_path: Path) -> None:
    records, _ = sample_records()
    records[4] = b'["abc", 4, "0110"'  # valid framing, broken JSON
    path = write_file(tmp_path / "bad.tfrecord", records)
    with pytest.raises(BenchmarkFormatError, match="record 5: record is not JSON"):
        read_nb101_tfrecord(path)
    scan = scan_benchmark(path, "nb101")
    assert scan.valid == 3 and scan.invalid == 1
    assert str(scan.problems[0]).startswith("record 5:")
    records[4] = b"[" * 100_000 + b"]" * 100_000  # nested past the parser's recursion limit
    with pytest.raises(BenchmarkFormatError, match="record 5: record is not JSON"):
        read_nb101_tfrecord(write_file(tmp_path / "deep.tfrecord", records))
    row = json.loads(sample_records()[0][4])
    records[4] = json.dumps([row[0], True, *row[2:]]).encode()  # an epoch count `true`
    with pytest.raises(BenchmarkFormatError, match="record 5: bad module hash or epoch"):
        read_nb101_tfrecord(write_file(tmp_path / "bool.tfrecord", records))


def test_wrong_space_and_missing_file(tmp_path: Path) -> None:
    path = write_file(tmp_path / "a.tfrecord", sample_records()[0])
    with pytest.raises(ArchrankError, match="space nb101, not nb201"):
        load_benchmark(path, "nb201")
    with pytest.raises(ArchrankError, match="no such file"):
        load_benchmark(tmp_path / "absent.tfrecord", "nb101")


def test_bench_check_on_tfrecord(tmp_path: Path) -> None:
    from archrank.cli import main

    records, _ = sample_records()
    forged = [r.replace(CELLS[2][0].encode(), b"f" * 32) for r in records]
    path = write_file(tmp_path / "forged.tfrecord", forged)
    out = tmp_path / "report.json"
    with pytest.raises(SystemExit) as exc:
        main(["bench", "check", str(path), "--space", "nb101", "--json", str(out)])
    assert exc.value.code == 1
    report = json.loads(out.read_text())
    assert (report["rows"], report["valid"], report["hashes_checked"],
            report["hash_mismatches"]) == (3, 3, 3, 1)
    assert report["first_mismatches"][0]["recorded"] == "f" * 32


def test_a_file_without_one_readable_record_is_reported_not_crashed(tmp_path: Path) -> None:
    from archrank.cli import main

    path = write_file(tmp_path / "junk.tfrecord", [b"hello world"])
    scan = scan_benchmark(path, "nb101")
    assert (scan.rows, scan.valid, scan.invalid, scan.row_name) == (1, 0, 1, "module")
    assert str(scan.problems[0]).startswith("record 1: record is not JSON")
    with pytest.raises(SystemExit) as exc:
        main(["bench", "check", str(path), "--space", "nb101", "--json", str(tmp_path / "r.json")])
    assert exc.value.code == 1


def test_bench_check_names_a_modules_first_record(tmp_path: Path) -> None:
    """A module's row is the mean of its records; a mismatch names its first record."""
    records, _ = sample_records()
    forged = [r.replace(CELLS[2][0].encode(), b"0" * 32) for r in records]
    scan = scan_benchmark(write_file(tmp_path / "forged.tfrecord", forged), "nb101")
    assert scan.bench.line_unit == "record" and scan.lines == [1, 7, 13]
    from archrank.cli.bench import check_report

    report = check_report(str(tmp_path / "forged.tfrecord"), "nb101")
    assert report["row_name"] == "module"
    assert report["first_mismatches"] == [
        {"record": 13, "recorded": "0" * 32, "computed": CELLS[2][0]}]


def test_records_of_one_module_may_order_its_vertices_differently(tmp_path: Path) -> None:
    """Two records of one module whose cells are isomorphic (another vertex order, the same
    recomputed hash) are one cell; a truly different cell is still refused."""
    import itertools

    module, adjacency, ops, params = CELLS[0]
    n = 7
    matrix = np.array([int(c) for c in adjacency]).reshape(n, n)
    names = ops.split(",")
    for perm in itertools.permutations(range(1, n - 1)):
        order = [0, *perm, n - 1]
        moved = matrix[np.ix_(order, order)]
        if order != list(range(n)) and not np.tril(moved).any():
            break
    adjacency2 = "".join(str(v) for v in moved.flatten())
    ops2 = ",".join(names[i] for i in order)
    assert (adjacency2, ops2) != (adjacency, ops)
    final, half = (10.0, 0.9, 0.8, 0.7), (5.0, 0.5, 0.4, 0.3)
    path = write_file(tmp_path / "iso.tfrecord", [
        record(module, 108, adjacency, ops, params, final, half),
        record(module, 108, adjacency2, ops2, params, final, half)])
    bench = read_nb101_tfrecord(path)
    assert len(bench) == 1 and bench.hashes == [module]
    other = CELLS[1]
    path = write_file(tmp_path / "other.tfrecord", [
        record(module, 108, adjacency, ops, params, final, half),
        record(module, 108, other[1], other[2], params, final, half)])
    with pytest.raises(BenchmarkFormatError, match=r"record 2: module .* has a different cell"):
        read_nb101_tfrecord(path)
