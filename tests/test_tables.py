"""Tabular benchmarks (CSV / JSON Lines), their errors, and the tabular oracle."""

from __future__ import annotations

import csv
import gzip
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from archrank.errors import ArchrankError, BenchmarkFormatError, InvalidOption, NotInBenchmark
from archrank.oracles.tabular import TabularOracle
from archrank.spaces import get_space
from archrank.tables import TabularBenchmark, load_benchmark, scan_benchmark

A1 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
      "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
A2 = ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
      "+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
A3 = "|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def nb201():
    return get_space("nb201")


def nb101():
    pytest.importorskip("archrank.spaces.nb101", reason="nb101 space not available yet")
    return get_space("nb101")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def small_csv(tmp_path: Path) -> Path:
    return write(tmp_path / "t.csv",
                 "arch,acc,dataset,train_time,hash\n"
                 f"{A1},93.5,cifar10,100.5,h1\n"
                 f"{A2},85.25,cifar10,,h2\n"
                 f"{A3},10.0,cifar10,7,h3\n")


def equivalent_pair(space) -> tuple[str, str]:
    """Two different nb201 cell strings with the same canonical hash."""
    seen: dict[str, str] = {}
    for arch in space.enumerate():
        text, h = space.format(arch), space.hash(arch)
        if h in seen and seen[h] != text:
            return seen[h], text
        seen.setdefault(h, text)
    raise AssertionError("nb201 has no equivalent cells?")


# -- reading ---------------------------------------------------------------------------------
def test_csv_columns_and_queries(tmp_path: Path, nb201) -> None:
    bench = load_benchmark(small_csv(tmp_path), "nb201")
    assert len(bench) == 3
    assert bench.metrics == ["acc", "train_time"]  # dataset is text, hash is an id
    assert bench.cost_column == "train_time"
    np.testing.assert_array_equal(bench.values("acc"), [93.5, 85.25, 10.0])
    assert np.isnan(bench.values("train_time")[1])
    a2 = nb201.parse(A2)
    assert a2 in bench and bench.index_of(a2) == 1
    assert bench.query(a2, "acc") == 85.25
    assert bench.cost(nb201.parse(A1)) == 100.5
    assert bench.cost(a2) == 0.0  # missing cost counts as none
    assert bench.best("acc") == (nb201.parse(A1), 93.5)
    assert bench.hashes == [nb201.hash(nb201.parse(a)) for a in (A1, A2, A3)]
    with pytest.raises(ValueError):
        bench.values("acc")[0] = 1.0  # columns are read-only


def test_unknown_metric_lists_columns(tmp_path: Path) -> None:
    bench = load_benchmark(small_csv(tmp_path), "nb201")
    with pytest.raises(ArchrankError) as exc:
        bench.values("cifar10_val")
    assert str(exc.value) == (f"unknown metric 'cifar10_val' in {tmp_path / 't.csv'}; "
                              "available columns: acc, train_time")


def test_absent_architecture_is_one_line(tmp_path: Path, nb201) -> None:
    bench = load_benchmark(small_csv(tmp_path), "nb201")
    other = nb201.parse("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    assert other not in bench
    with pytest.raises(NotInBenchmark) as exc:
        bench.query(other, "acc")
    assert "is not in" in str(exc.value) and "\n" not in str(exc.value)
    assert not str(exc.value).startswith("'")  # not KeyError's quoting


def test_duplicates_exact_text_wins(tmp_path: Path, nb201) -> None:
    first, second = equivalent_pair(nb201)
    third = nb201.format(nb201.parse(A1))
    path = write(tmp_path / "d.csv", f"arch,acc\n{first},1\n{second},2\n{third},3\n")
    bench = load_benchmark(path, nb201)
    assert bench.n_unique == 2
    assert bench.duplicates == {nb201.hash(nb201.parse(first)): [0, 1]}
    assert bench.query(nb201.parse(first), "acc") == 1
    assert bench.query(nb201.parse(second), "acc") == 2  # exact text, not the first row
    # An equivalent cell that is in neither row answers with the first row of its hash.
    sub = bench.subset([1, 2])
    assert sub.query(nb201.parse(first), "acc") == 2
    only_first = bench.subset([0, 2])
    assert only_first.query(nb201.parse(second), "acc") == 1


def test_oracle_refuses_a_repeated_cell_with_two_values(tmp_path: Path, nb201) -> None:
    """One row per seed of the same cell: a query would only ever see the first value."""
    path = write(tmp_path / "r.csv",
                 f"arch,acc,seed\n{A1},90,0\n\n{A2},80,0\n{A1},92,1\n{A1},93,2\n")
    bench = load_benchmark(path, nb201)
    assert bench.text_repeats() == [(0, 2), (0, 3)]
    # named by file line (a blank line in between), not by place among the rows
    with pytest.raises(ArchrankError, match=r"r.csv: line 2 and line 5 hold the same "
                       r"architecture .* with different acc \(90 and 92\) \(2 such pairs\); "
                       r"a query would only ever see"):
        TabularOracle(bench, "acc")
    rows = write(tmp_path / "r.jsonl", "\n".join(json.dumps({"arch": a, "acc": v})
                                                 for a, v in ((A1, 1), (A2, 2), (A1, 3))))
    with pytest.raises(ArchrankError, match=r"line 1 and line 3 hold"):
        TabularOracle(load_benchmark(rows, nb201), "acc")
    mixed = write(tmp_path / "m.csv", f"arch,acc,d\n{A2},1,y\n{A1},5,x\n{A1},6,x\n")
    with pytest.raises(ArchrankError, match=r"line 3 and line 4 hold"):
        TabularOracle(load_benchmark(f"{mixed}?d=x", nb201), "acc")
    # The same repeat agreeing on the objective is harmless; other columns may differ.
    path = write(tmp_path / "s.csv", f"arch,acc,seed\n{A1},90,0\n{A2},80,0\n{A1},90,1\n")
    assert TabularOracle(load_benchmark(path, nb201), "acc").optimum() == 90


def test_non_numeric_value_in_metric_column(tmp_path: Path) -> None:
    path = write(tmp_path / "n.csv", f"arch,acc\n{A1},93.5\n{A2},n/a\n{A3},oops\n")
    with pytest.raises(BenchmarkFormatError) as exc:
        load_benchmark(path, "nb201")
    assert str(exc.value) == f"{path}:4: column 'acc': 'oops' is not a number"


def test_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "cell,acc\nx,1\n")
    with pytest.raises(BenchmarkFormatError, match=r"m.csv: missing column 'arch' needed by "
                       r"space nb201 .*columns are: cell, acc$"):
        load_benchmark(path, "nb201")


def test_truncated_csv(tmp_path: Path) -> None:
    full = small_csv(tmp_path).read_text()
    cut = write(tmp_path / "cut.csv", full[: full.rindex(",7,")])  # last line cut mid-row
    with pytest.raises(BenchmarkFormatError) as exc:
        load_benchmark(cut, "nb201")
    assert str(exc.value) == f"{cut}:4: expected 5 fields, got 3 (truncated or malformed row)"
    quoted = write(tmp_path / "q.csv", f'arch,acc\n"{A1}",1\n"{A2}')  # cut inside quotes
    with pytest.raises(BenchmarkFormatError, match=r"q.csv:3: malformed CSV"):
        load_benchmark(quoted, "nb201")
    cell = write(tmp_path / "c.csv", f"arch,acc\n{A1},1\n{A2[:30]},2\n")  # cut inside the cell
    with pytest.raises(BenchmarkFormatError, match=r"c.csv:3: .*nor_conv_1x1"):
        load_benchmark(cell, "nb201")


def test_invalid_architecture_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv", f"arch,acc\n{A1},1\n{A2.replace('skip', 'jump')},2\n")
    with pytest.raises(BenchmarkFormatError) as exc:
        load_benchmark(path, "nb201")
    msg = str(exc.value)
    assert msg.startswith(f"{path}:3: ") and "jump" in msg and "\n" not in msg


def test_empty_and_header_only(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkFormatError, match="empty file"):
        load_benchmark(write(tmp_path / "e.csv", ""), "nb201")
    bench = load_benchmark(write(tmp_path / "h.csv", "arch,acc\n"), "nb201")
    assert len(bench) == 0 and bench.metrics == ["acc"]


def test_lenient_scan_collects_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv",
                 f"arch,acc\n{A1},1\nnonsense,2\n{A2},x\n{A3}\n\n{A1},5\n")
    scan = scan_benchmark(path, "nb201")
    assert (scan.rows, scan.valid, scan.invalid) == (5, 2, 3)
    assert [p.line for p in scan.problems] == [3, 4, 5]
    assert scan.lines == [2, 7]
    assert scan.bench.n_unique == 1


def test_jsonl_and_json_list(tmp_path: Path, nb201) -> None:
    rows = [{"arch": A1, "acc": 93.5, "note": "best", "extra": [1, 2]},
            {"arch": A2, "acc": None, "params": 1.5},
            {"arch": A3, "acc": "10.5"}]
    jl = write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    bench = load_benchmark(jl, "nb201")
    assert bench.metrics == ["acc", "params"]
    np.testing.assert_array_equal(bench.values("acc"), [93.5, np.nan, 10.5])
    js = write(tmp_path / "t.json", json.dumps(rows))
    bench2 = load_benchmark(js, nb201)
    np.testing.assert_array_equal(bench2.values("params"), bench.values("params"))
    # JSON Lines stored as .json works too.
    js2 = write(tmp_path / "t2.json", jl.read_text())
    assert len(load_benchmark(js2, nb201)) == 3


def test_jsonl_errors(tmp_path: Path) -> None:
    good = json.dumps({"arch": A1, "acc": 1})
    cut = write(tmp_path / "c.jsonl", good + "\n" + good[:25])
    with pytest.raises(BenchmarkFormatError, match=r"c.jsonl:2: malformed JSON"):
        load_benchmark(cut, "nb201")
    nonobj = write(tmp_path / "n.jsonl", good + "\n[1, 2]\n")
    with pytest.raises(BenchmarkFormatError, match=r"n.jsonl:2: expected a JSON object"):
        load_benchmark(nonobj, "nb201")
    missing = write(tmp_path / "m.jsonl", json.dumps({"cell": A1}) + "\n")
    with pytest.raises(BenchmarkFormatError, match="missing column 'arch'"):
        load_benchmark(missing, "nb201")
    later = write(tmp_path / "l.jsonl", good + "\n" + json.dumps({"acc": 2}) + "\n")
    with pytest.raises(BenchmarkFormatError, match=r"l.jsonl:2: missing field 'arch'"):
        load_benchmark(later, "nb201")
    bad_list = write(tmp_path / "b.json", "[" + good + ",\n" + good[:20])
    with pytest.raises(BenchmarkFormatError, match=r"b.json:2: malformed JSON"):
        load_benchmark(bad_list, "nb201")
    bad_value = write(tmp_path / "v.json", json.dumps([{"arch": A1, "acc": 1},
                                                       {"arch": A2, "acc": "high"}]))
    with pytest.raises(BenchmarkFormatError, match=r"v.json: record 2: column 'acc'"):
        load_benchmark(bad_value, "nb201")


def test_load_benchmark_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(ArchrankError, match="no such file"):
        load_benchmark(tmp_path / "absent.csv", "nb201")
    with pytest.raises(ArchrankError, match="unknown benchmark format"):
        load_benchmark(write(tmp_path / "x.parquet", "x"), "nb201")
    with pytest.raises(ArchrankError, match="unknown search space"):
        load_benchmark(small_csv(tmp_path), "nb999")


def test_gzip_csv(tmp_path: Path) -> None:
    raw = small_csv(tmp_path).read_bytes()
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(raw))
    assert len(load_benchmark(gz, "nb201")) == 3


def test_constructor_checks(nb201) -> None:
    a = nb201.parse(A1)
    with pytest.raises(ArchrankError, match="has 2 values for 1"):
        TabularBenchmark(nb201, [a], {"acc": [1.0, 2.0]}, "mem")
    with pytest.raises(ArchrankError, match="cost column 'time'"):
        TabularBenchmark(nb201, [a], {"acc": [1.0]}, "mem", cost_column="time")
    bench = TabularBenchmark(nb201, [a], {"acc": np.array([1.0])}, "mem")
    assert bench.query(a, "acc") == 1.0 and bench.cost(a) == 0.0


# -- the tabular oracle ----------------------------------------------------------------------
def test_tabular_oracle(tmp_path: Path, nb201) -> None:
    bench = load_benchmark(small_csv(tmp_path), "nb201")
    oracle = TabularOracle(bench, "acc")
    ev = oracle.evaluate(nb201.parse(A1))
    assert ev.ok and ev.metrics == {"acc": 93.5, "train_time": 100.5} and ev.cost == 100.5
    assert oracle.evaluate(nb201.parse(A2)).cost == 0.0
    info = oracle.describe()
    assert info["source"] == str(tmp_path / "t.csv") and info["metric"] == "acc"
    assert info["objective"] == "acc" and info["space"] == "nb201"
    clone = pickle.loads(pickle.dumps(oracle))
    assert clone.space is nb201  # registered spaces travel by name
    assert clone.evaluate(nb201.parse(A3)) == oracle.evaluate(nb201.parse(A3))
    with pytest.raises(ArchrankError, match="unknown metric 'val'"):
        TabularOracle(bench, "val")
    absent = nb201.parse("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    with pytest.raises(NotInBenchmark):
        oracle.evaluate(absent)
    failed = TabularOracle(bench, "acc", missing="fail").evaluate(absent)
    assert not failed.ok and "not in the benchmark" in (failed.error or "")
    with pytest.raises(InvalidOption, match=r"TabularOracle: missing must be 'raise' or "
                       r"'fail', not 'skip'"):  # was a bare ValueError
        TabularOracle(bench, "acc", missing="skip")  # type: ignore[arg-type]


# -- the real tables -------------------------------------------------------------------------
def test_real_nb201_table(nb201_csv: Path, nb201) -> None:
    start = time.perf_counter()
    bench = load_benchmark(nb201_csv, "nb201")
    seconds = time.perf_counter() - start
    print(f"reading nb201.csv took {seconds:.2f} s")  # (speed is a benchmark's, not a test's)
    assert len(bench) == 15_625
    assert set(bench.metrics) >= {"cifar10_test", "cifar100_test"}
    arch, best = bench.best("cifar10_test")
    assert best == 94.3733
    # Every row answers for its own text, even among equivalent cells.
    rows = bench.indices_of(bench.archs)
    np.testing.assert_array_equal(rows, np.arange(len(bench)))
    with nb201_csv.open() as fh:
        reader = csv.DictReader(fh)
        for i, row in zip(range(200), reader, strict=False):
            a = nb201.parse(row["arch"])
            assert bench.query(a, "cifar10_test") == float(row["cifar10_test"]), i
    oracle = TabularOracle(bench, "cifar10_test")
    assert oracle.evaluate(arch).metrics["cifar10_test"] == 94.3733


def test_real_nb101_table(nb101_csv: Path) -> None:
    space = nb101()
    start = time.perf_counter()
    bench = load_benchmark(nb101_csv, space)
    seconds = time.perf_counter() - start
    print(f"reading nb101_10k.csv took {seconds:.2f} s")
    assert len(bench) == 10_000 and bench.cost_column == "train_time_s"
    with nb101_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert bench.hashes == [r["hash"] for r in rows]  # the official module hashes
    assert bench.n_unique == 10_000
    for i in (0, 4999, 9999):
        arch = bench.archs[i]
        assert bench.query(arch, "val_acc_108") == float(rows[i]["val_acc_108"])
        assert bench.cost(arch) == float(rows[i]["train_time_s"])
        assert bench.values("params")[i] == int(rows[i]["params"])


def test_nb101_jsonl_with_lists(tmp_path: Path, nb101_csv: Path) -> None:
    space = nb101()
    with nb101_csv.open() as fh:
        rows = [r for _, r in zip(range(5), csv.DictReader(fh), strict=False)]
    lines = []
    for r in rows:
        n = int(r["num_vertices"])
        adj = [[int(r["adjacency"][i * n + j]) for j in range(n)] for i in range(n)]
        lines.append(json.dumps({"hash": r["hash"], "adjacency": adj,
                                 "ops": r["ops"].split(","), "val_acc_108": r["val_acc_108"]}))
    bench = load_benchmark(write(tmp_path / "n.jsonl", "\n".join(lines)), space)
    assert bench.hashes == [r["hash"] for r in rows]
    # The same lists as JSON text inside a CSV.
    with (tmp_path / "n.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["adjacency", "ops", "val_acc_108"])
        for line in lines:
            obj = json.loads(line)
            w.writerow([json.dumps(obj["adjacency"]), json.dumps(obj["ops"]),
                        obj["val_acc_108"]])
    assert load_benchmark(tmp_path / "n.csv", space).hashes == bench.hashes


def test_text_columns_and_where(tmp_path: Path, nb201) -> None:
    path = write(tmp_path / "w.csv", f"dataset,arch,acc\nc10,{A1},90\nc100,{A1},70\n"
                 f"c10,{A2},80\n")
    bench = load_benchmark(path, nb201, mixed_ok=True)
    assert bench.text_columns == ["dataset"] and bench.text("dataset") == ["c10", "c100", "c10"]
    assert bench.query(A1, "acc") == 90  # first row of an exact duplicate; text form accepted
    c100 = bench.where(dataset="c100")
    assert len(c100) == 1 and c100.query(A1, "acc") == 70
    assert len(bench.where(acc=80)) == 1
    with pytest.raises(ArchrankError, match="text columns: dataset"):
        bench.text("split")


def test_real_zero_cost_table_per_dataset(nb201_zc_csv: Path) -> None:
    with pytest.warns(UserWarning, match=r"mixes 2 datasets in column 'dataset' \(cifar10, "
                      r"cifar100\); choose one with --filter dataset=cifar10 \(in Python, a "
                      r"'\?dataset=cifar10' suffix on the path\); every row is kept"):
        bench = load_benchmark(nb201_zc_csv, "nb201")
    assert "dataset" in bench.text_columns and "val_acc" in bench.metrics
    per = {d: bench.where(dataset=d) for d in ("cifar10", "cifar100")}
    assert len(per["cifar10"]) == len(per["cifar100"]) == 725
    arch = per["cifar100"].archs[0]
    assert per["cifar100"].query(arch, "val_acc") != per["cifar10"].query(arch, "val_acc")


def test_a_metric_written_as_text_is_named_not_missing(tmp_path: Path, nb201) -> None:
    path = write(tmp_path / "p.csv", f"arch,acc\n{A1},93.5%\n{A2},80.1%\n")
    bench = load_benchmark(path, nb201)
    with pytest.raises(ArchrankError, match=r"column 'acc' of .*p.csv is not numeric \(line 2: "
                       r"'93.5%'\); write plain numbers"):
        TabularOracle(bench, "acc")


def test_json_records_with_a_repeated_key_or_one_indented_object(tmp_path: Path) -> None:
    path = write(tmp_path / "k.jsonl", f'{{"arch": "{A1}", "acc": 1, "acc": 5}}\n')
    with pytest.raises(BenchmarkFormatError, match=r"k.jsonl:1: key 'acc' appears twice"):
        load_benchmark(path, "nb201")
    path = write(tmp_path / "k.json", f'[{{"arch": "{A1}", "acc": 1, "acc": 5}}]')
    with pytest.raises(BenchmarkFormatError, match=r"k.json: key 'acc' appears twice"):
        load_benchmark(path, "nb201")
    path = write(tmp_path / "o.json", json.dumps({"arch": A1, "acc": 1}, indent=2))
    with pytest.raises(BenchmarkFormatError, match=r"o.json: one JSON object over 4 lines; a "
                       r"table is JSON Lines"):
        load_benchmark(path, "nb201")


def test_a_numeric_dataset_column_also_counts_as_mixed(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", f"arch,acc,dataset\n{A1},90,10\n{A2},70,100\n")
    with pytest.raises(ArchrankError, match=r"mixes 2 datasets in column 'dataset' \(10, 100\)"):
        load_benchmark(path, "nb201", one_table=True)
    assert len(load_benchmark(f"{path}?dataset=10", "nb201", one_table=True)) == 1


def test_the_oracle_names_mixed_datasets_before_repeats(nb201_zc_csv: Path) -> None:
    """nb201_zc.csv holds each cell once per dataset: the oracle says to pick a dataset,
    not to average repeats."""
    with pytest.warns(UserWarning):
        bench = load_benchmark(nb201_zc_csv, "nb201")
    with pytest.raises(ArchrankError, match=r"mixes 2 datasets in column 'dataset'"):
        TabularOracle(bench, "val_acc")
    TabularOracle(load_benchmark(f"{nb201_zc_csv}?dataset=cifar10", "nb201"), "val_acc")


def test_write_csv_writes_whole_numbers_as_integers_and_reads_back(tmp_path: Path) -> None:
    """A parameter count stored as a float is written ``14521``, not ``14521.0``; every
    value reads back exactly; missing and non-finite values are empty."""
    from archrank.tables.table import write_csv

    arch = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    path = tmp_path / "t.csv"
    write_csv(path, [{"arch": arch, "params": 14521.0, "acc": 93.25, "big": 2.0**60,
                      "gone": float("nan"), "tiny": 1e-300}])
    lines = path.read_text().splitlines()
    assert lines[1].split(",")[1:] == ["14521", "93.25", repr(2.0**60), "", "1e-300"]
    bench = load_benchmark(path, "nb201")
    assert bench.values("params")[0] == 14521.0 and bench.values("big")[0] == 2.0**60
