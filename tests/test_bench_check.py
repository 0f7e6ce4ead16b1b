"""``archrank bench check``: counts, problems with line numbers, hash mismatches, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archrank.cli import main
from archrank.spaces import get_space

A1 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
      "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
A2 = ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
      "+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
# Two equivalent cells: node 1 feeds nothing, so the edge into it does not matter.
DEAD_A = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
DEAD_B = "|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"


def run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_check_reports_problems_duplicates_and_mismatches(tmp_path: Path, capsys) -> None:
    space = get_space("nb201")
    h = {a: space.hash(space.parse(a)) for a in (A1, A2, DEAD_A, DEAD_B)}
    assert h[DEAD_A] == h[DEAD_B]  # node 1 feeds nothing: the same cell
    table = tmp_path / "t.csv"
    table.write_text(
        "arch,acc,hash\n"
        f"{A1},93.1,{h[A1]}\n"          # line 2
        f"{A2},80.0,{'0' * 32}\n"       # line 3: wrong hash
        "|bogus~0|,1,\n"                # line 4: invalid cell
        f"{DEAD_A},70.0,{h[DEAD_A]}\n"  # line 5
        f"{DEAD_B},71.0,\n"             # line 6: duplicate of line 5, no hash given
        f"{A1},oops,{h[A1]}\n"          # line 7: non-numeric metric
        f"{A1},93.2\n"                  # line 8: truncated
    )
    out = tmp_path / "report.json"
    code = run(["bench", "check", str(table), "--space", "nb201", "--metric", "acc",
                "--json", str(out)])
    assert code == 1  # invalid rows or mismatches
    report = json.loads(out.read_text())
    assert report["rows"] == 7
    assert report["valid"] == 4
    assert report["invalid"] == 3
    assert report["duplicates"] == 1 and report["unique"] == 3
    assert report["hashes_checked"] == 3
    assert report["hash_mismatches"] == 1
    assert report["first_mismatches"] == [{"line": 3, "recorded": "0" * 32,
                                           "computed": h[A2]}]
    assert [p["line"] for p in report["problems"]] == [4, 7, 8]
    assert "not a number" in report["problems"][1]["message"]
    assert report["metric"]["max"] == 93.1
    text = capsys.readouterr().out
    assert "hash mismatch" in text and "line 4" in text


def test_check_json_to_stdout_and_exit_zero(tmp_path: Path, capsys) -> None:
    table = tmp_path / "ok.jsonl"
    table.write_text(json.dumps({"arch": A1, "acc": 1.0}) + "\n"
                     + json.dumps({"arch": A2, "acc": 2.0}) + "\n")
    assert run(["bench", "check", str(table), "--space", "nb201", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["valid"], report["duplicates"],
            report["hash_mismatches"]) == (2, 2, 0, 0)
    assert report["hash_column"] is False


def test_check_user_errors_are_one_line(tmp_path: Path, capsys) -> None:
    table = tmp_path / "ok.csv"
    table.write_text(f"arch,acc\n{A1},1\n")
    cases = [
        (["bench", "check", str(tmp_path / "nope.csv"), "--space", "nb201"], "no such file"),
        (["bench", "check", str(table), "--space", "nb201", "--metric", "val"],
         "unknown metric 'val'"),
        (["bench", "check", str(table), "--space", "nb999"], "unknown search space"),
        (["bench", "check", str(table), "--space", "nb101"], "missing column 'adjacency'"),
    ]
    for argv, message in cases:
        assert run(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err


def test_check_help_has_example(capsys) -> None:
    assert run(["bench", "check", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out and "archrank bench check ../shared/data/nb101_10k.csv" in out


def test_acceptance_nb101(nb101_csv: Path, tmp_path: Path) -> None:
    pytest.importorskip("archrank.spaces.nb101", reason="nb101 space not available yet")
    out = tmp_path / "nb101.json"
    assert run(["bench", "check", str(nb101_csv), "--space", "nb101", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == report["valid"] == 10_000
    assert report["hashes_checked"] == 10_000 and report["hash_mismatches"] == 0
    assert report["duplicates"] == 0


def test_acceptance_nb201(nb201_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "nb201.json"
    assert run(["bench", "check", str(nb201_csv), "--space", "nb201", "--metric",
                "cifar10_test", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == report["valid"] == 15_625
    assert report["hash_mismatches"] == 0
    assert report["unique"] + report["duplicates"] == 15_625
    assert report["metric"]["max"] == 94.3733
    # two distinct cells share the optimum (lines 6113 and 13716)
    assert report["metric"]["best_rows"] == report["metric"]["best_cells"] == 2


def test_check_official_reader_hashes(tmp_path: Path) -> None:
    """Formats whose reader supplies hashes (NAS-Bench-Graph keys) get them re-checked."""
    pytest.importorskip("nas_bench_graph", reason="nas-bench-graph package not installed")
    out = tmp_path / "proteins.json"
    assert run(["bench", "check", "nbgraph:proteins", "--space", "nbgraph", "--json",
                str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == report["valid"] == report["hashes_checked"] > 0
    assert report["hash_mismatches"] == 0


def test_check_lists_infinite_values_of_the_metric(tmp_path: Path) -> None:
    """They were summarised as mean inf without a word, while search and fits refuse them as
    scores (a proxy column's -inf is a value, so they are listed, not invalid)."""
    table = tmp_path / "inf.csv"
    table.write_text(f"arch,acc\n{A1},93.1\n{A2},inf\n{DEAD_A},-1e999\n")
    out = tmp_path / "r.json"
    assert run(["bench", "check", str(table), "--space", "nb201", "--metric", "acc",
                "--json", str(out)]) == 0  # a proxy's -inf is a value; listed, not invalid
    metric = json.loads(out.read_text())["metric"]
    assert metric["infinite"] == 2 and [v["line"] for v in metric["first_infinite"]] == [3, 4]
    assert [v["value"] for v in metric["first_infinite"]] == ["inf", "-inf"]
    assert metric["max"] == metric["mean"] == 93.1
    assert run(["bench", "check", str(table), "--space", "nb201"]) == 0  # no metric asked


def test_a_metric_summary_needs_one_dataset(tmp_path: Path, capsys) -> None:
    """The rows of a table mixing datasets are checked; a metric summed over both is not."""
    table = tmp_path / "mixed.csv"
    table.write_text(f"arch,acc,dataset\n{A1},93.1,a\n{A2},40.0,b\n")
    assert run(["bench", "check", str(table), "--space", "nb201"]) == 0
    assert "mixed datasets" in capsys.readouterr().out  # said without --metric too
    assert run(["bench", "check", str(table), "--space", "nb201", "--metric", "acc"]) == 2
    assert "mixes 2 datasets" in capsys.readouterr().err
    assert run(["bench", "check", str(table), "--space", "nb201", "--metric", "acc",
                "--filter", "dataset=a"]) == 0


def test_check_fails_on_a_cell_repeated_with_another_value(tmp_path: Path, capsys) -> None:
    """What a search refuses, the validator flags: the later value is never answered, and
    the best it reports is one a query can get."""
    path = tmp_path / "r.csv"
    path.write_text(f"arch,acc\n{A1},90\n{A2},80\n{A1},99\n")
    out = tmp_path / "r.json"
    assert run(["bench", "check", str(path), "--space", "nb201", "-m", "acc",
                "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["repeated_rows"] == 1
    assert report["metric"]["conflicting_repeats"] == 1
    assert report["metric"]["first_conflicts"] == [
        {"line": 4, "repeats": 2, "values": ["90.0", "99.0"]}]
    assert report["metric"]["max"] == 90.0
    assert "conflicting repeat line 4 repeats the cell of line 2" in capsys.readouterr().out
    path.write_text(f"arch,acc\n{A1},90\n{A2},80\n{A1},90\n")  # agreeing: fine
    assert run(["bench", "check", str(path), "--space", "nb201", "-m", "acc"]) == 0


def test_check_names_json_list_rows_as_records(tmp_path: Path, capsys) -> None:
    """A JSON list has records, not lines: the report and its JSON say which record."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"arch": A1, "acc": 90}, {"arch": A2, "acc": 80},
                                {"arch": A1, "acc": 99}]))
    out = tmp_path / "r_report.json"
    assert run(["bench", "check", str(path), "--space", "nb201", "-m", "acc",
                "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["metric"]["first_conflicts"] == [
        {"record": 3, "repeats": 1, "values": ["90.0", "99.0"]}]
    assert "conflicting repeat record 3 repeats the cell of record 1" in capsys.readouterr().out


def test_check_fails_on_a_table_without_data_rows(tmp_path: Path, capsys) -> None:
    table = tmp_path / "header.csv"
    table.write_text("arch,cifar10_test\n")
    assert run(["bench", "check", str(table), "--space", "nb201"]) == 1
    assert "no data rows" in capsys.readouterr().out


def test_lenient_json_lines_report_a_first_record_without_the_cell(tmp_path: Path) -> None:
    """Only the record lacking the cell is invalid, wherever it stands; a file where no
    record has it is the one-line missing-column error."""
    from archrank.cli.bench import check_report
    from archrank.errors import BenchmarkFormatError

    arch = A1
    table = tmp_path / "t.jsonl"
    table.write_text('{"acc": 1}\n' + json.dumps({"arch": arch, "acc": 2}) + "\n")
    report = check_report(str(table), "nb201")
    assert (report["rows"], report["valid"], report["invalid"]) == (2, 1, 1)
    assert report["problems"] == [{"line": 1, "message": "missing field 'arch'"}]
    table.write_text('{"acc": 1}\n{"acc": 2}\n')
    with pytest.raises(BenchmarkFormatError, match="missing column 'arch'"):
        check_report(str(table), "nb201")


def test_check_mean_of_huge_values_is_finite(tmp_path: Path) -> None:
    from archrank.cli.bench import check_report

    table = tmp_path / "huge.csv"
    table.write_text(f"arch,acc\n{A1},1e308\n{A2},1e308\n")
    assert check_report(str(table), "nb201", "acc")["metric"]["mean"] == pytest.approx(1e308)
