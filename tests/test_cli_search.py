"""``archrank search``, ``bench search``, ``runs export`` and ``demo`` as a user runs them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import one_line_error
from test_options import CELLS


@pytest.fixture
def base(nb201_csv) -> list[str]:
    return ["--space", "nb201", "--bench", str(nb201_csv), "--metric", "cifar10_test"]


def test_search_summary_export_and_resume(cli, base, tmp_path):
    run_dir = tmp_path / "runs" / "demo"
    code, out, err = cli("search", *base, "--strategy", "rea", "--budget", "40", "--seed", "1",
                         "--run-dir", str(run_dir), "--json", str(tmp_path / "s.json"))
    assert code == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["queries"] == 40 and summary["strategy"] == "rea"
    best = summary["best"]
    assert best["value"] > 93.0 and 1 <= best["found_at_query"] <= 40
    assert best["arch"] in out and f"{best['value']:.4f}".rstrip("0") in out
    assert "40 of 40" in out and "40/40" in err  # summary and progress bar

    code, out, _ = cli("runs", "export", str(run_dir), "--jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 40
    assert [r["seq"] for r in rows] == list(range(40))
    assert max(r["objective"] for r in rows) == best["value"]
    assert {"hash", "arch", "metrics", "status", "cost", "started", "finished"} <= set(rows[0])

    code, out, _ = cli("runs", "export", str(run_dir), "--out", str(tmp_path / "e.jsonl"))
    assert code == 0 and len((tmp_path / "e.jsonl").read_text().splitlines()) == 40
    # an --out named .csv gets the CSV table, not JSON Lines under that name
    code, out, _ = cli("runs", "export", str(run_dir), "--out", str(tmp_path / "e.csv"))
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert code == 0 and len(lines) == 41 and lines[0].startswith("seq,hash,arch,status")
    code, out, _ = cli("runs", "show", str(run_dir))
    assert code == 0 and "40 ok, 0 failed, 0 pending" in out

    # resuming a finished run evaluates nothing and reports the same best cell
    code, out, err = cli("search", "--resume", str(run_dir))
    assert code == 0, err
    assert "resuming" in err and best["arch"] in out
    # the same command on the same run directory continues it as well
    code, _, err = cli("search", *base, "--strategy", "rea", "--budget", "40", "--seed", "1",
                       "--run-dir", str(run_dir))
    assert code == 0, err


def test_a_run_directory_keeps_its_configuration(cli, base, tmp_path):
    run_dir = str(tmp_path / "r")
    assert cli("search", *base, "--strategy", "random", "--budget", "5",
               "--run-dir", run_dir)[0] == 0
    code, _, err = cli("search", "--resume", run_dir, "--strategy", "rea")
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: run directory {run_dir} was created with --strategy random; got "
        "--strategy rea (use another --run-dir for a different search)"]
    code, _, err = cli("search", *base, "--budget", "6", "--strategy", "random",
                       "--run-dir", run_dir)
    assert code == 2 and "was created with --budget 5" in err
    code, _, err = cli("search", *base, "--strategy", "random", "--budget", "5", "--seed", "2",
                       "--run-dir", run_dir)
    assert code == 2 and "--seed 0" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "annealing"], "unknown strategy 'annealing'; choose from: random, rea"),
        (["--budget", "0"], "--budget must be a positive number of evaluations, not 0"),
        (["--budget", "-3"], "--budget must be a positive number of evaluations, not -3"),
        (["--strategy", "rea", "--predictor", "gates"], "--predictor applies to guided"),
        (["--metric", "accuracy"], "unknown metric 'accuracy'"),
        (["--bench", "/no/such/table.csv"], "/no/such/table.csv: no such file"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--set", "explore"], "--set 'explore': expected KEY=VALUE"),
    ],
)
def test_bad_input_gets_a_one_line_error(cli, base, tmp_path, args, message):
    code, _, err = cli("search", *base, *args, "--run-dir", str(tmp_path / "r"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "r").exists()


def test_missing_options_and_missing_run_dirs(cli, tmp_path):
    code, _, err = cli("search", "--strategy", "rea")  # no arguments at all = the main job
    assert code == 2 and "missing --space, --bench, --metric" in err
    code, _, err = cli("search", "--resume", str(tmp_path / "nope"))
    assert code == 2 and "no such run directory" in err
    code, _, err = cli("runs", "export", str(tmp_path))
    assert code == 2 and "not a run directory" in err


def test_search_help_has_an_example(cli):
    code, out, _ = cli("search", "--help")
    assert code == 0 and "archrank search --space nb201" in out
    code, out, _ = cli("bench", "search", "--help")
    assert code == 0 and "--strategies random,rea,ls,gates" in out


def test_bench_search_json(cli, base, tmp_path):
    out_json = tmp_path / "out.json"
    code, out, err = cli("bench", "search", *base, "--strategies", "random,rea", "--budget",
                         "60", "--seeds", "3", "--workers", "1", "--json", str(out_json))
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["optimum"] == pytest.approx(94.3733)
    assert list(report["strategies"]) == ["random", "rea"]
    for entry in report["strategies"].values():
        q = entry["queries_to_optimum"]
        assert set(q) >= {"median", "reached"} and 0 <= q["reached"] <= 3
        assert set(entry["best_at"]) == {"50", "60"}
        assert len(entry["curve"]) == 60
    assert "rea" in out and "best@50" in out
    code, _, err = cli("bench", "search", *base, "--strategies", "random,sa", "--seeds", "1",
                       "--jobs", "1")  # the option's first name still parses
    assert code == 2 and "unknown strategy 'sa'" in err


def test_bench_search_on_a_partial_table_needs_space_from_bench(cli, nb101_csv):
    args = ["bench", "search", "--space", "nb101", "--bench", str(nb101_csv), "--metric",
            "val_acc_108", "--strategies", "random", "--seeds", "1", "--budget", "20"]
    code, _, err = cli(*args)
    assert code == 2 and "add --space-from-bench" in err
    code, out, err = cli(*args, "--space-from-bench")
    assert code == 0, err
    assert "random" in out


def test_demo_compares_gates_with_random_search(cli):
    pytest.importorskip("nas_bench_graph")
    code, out, err = cli("demo", "--quick", "--budget", "15")
    assert code == 0, err
    assert "gates" in out and "random" in out and "nbgraph:cora" in out
    code, out, err = cli("demo", "--quick", "--budget", "30000")  # minutes of nothing before
    assert code == 2 and "more than the 26,206 distinct cells of nbgraph:cora" in err


def test_a_run_recorded_before_guided_defaults_continues(cli, base, tmp_path):
    import sqlite3

    from archrank.runs.config import SearchConfig, as_recorded
    from archrank.runs.store import RunStore

    run_dir = tmp_path / "old"
    assert cli("search", *base, "--strategy", "rea", "--budget", "5",
               "--run-dir", str(run_dir))[0] == 0
    db = next(p for p in run_dir.iterdir() if p.suffix in (".db", ".sqlite", ".sqlite3"))
    with sqlite3.connect(db) as conn:  # as an earlier archrank recorded it
        conn.execute("DELETE FROM config WHERE key IN ('predictor_defaults', "
                     "'defaults_session')")
    with RunStore.open(run_dir) as store:
        assert SearchConfig.from_dict(store.config).predictor_defaults is False
        assert SearchConfig.from_dict(store.config).defaults_session == 8
    # the full command again continues it (the flag is the record's, not an option)
    code, _, err = cli("search", *base, "--strategy", "rea", "--budget", "6",
                       "--run-dir", str(run_dir))
    assert code == 2 and "was created with --budget 5" in err and "guided" not in err
    code, _, err = cli("search", *base, "--strategy", "rea", "--budget", "5",
                       "--run-dir", str(run_dir))
    assert code == 0, err
    # an earlier GATES++ run on nb201 searched with "auto" inputs without the structural
    # signals and resumes with those
    old = SearchConfig.from_dict({"space": "nb201", "metric": "m", "strategy": "gates++"})
    pred = as_recorded(old, None).strategy_params["predictor_params"]
    assert pred == {"arch_inputs": "flops,params,synflow"}


def test_a_run_keeps_the_predictor_defaults_it_was_recorded_with(cli, base, tmp_path):
    """The tree baselines regress ranks since session 11; a guided xgb run recorded before
    (sessions 9-10 recorded guided defaults but no session) resumes with raw targets."""
    import sqlite3

    from archrank.runs.config import DEFAULTS_SESSION, SearchConfig, as_recorded
    from archrank.runs.store import RunStore

    pytest.importorskip("xgboost")
    now = SearchConfig(space="nb201", metric="m", strategy="guided", predictor="xgb")
    assert now.defaults_session == DEFAULTS_SESSION
    assert "predictor_params" not in as_recorded(now, None).strategy_params
    run_dir = tmp_path / "xgb"
    assert cli("search", *base, "--strategy", "xgb", "--budget", "12",
               "--run-dir", str(run_dir))[0] == 0
    db = next(p for p in run_dir.iterdir() if p.suffix in (".db", ".sqlite", ".sqlite3"))
    with sqlite3.connect(db) as conn:  # as session 10 recorded it
        conn.execute("DELETE FROM config WHERE key = 'defaults_session'")
    with RunStore.open(run_dir) as store:
        old = SearchConfig.from_dict(store.config)
    assert old.defaults_session == 10
    assert as_recorded(old, None).strategy_params["predictor_params"] == {"target": "raw"}
    code, _, err = cli("search", *base, "--strategy", "xgb", "--budget", "12",
                       "--run-dir", str(run_dir))  # the full command again: finished, no clash
    assert code == 0, err



def test_sparse_tables_seeds_failures_and_a_bare_run_dir(cli, nb201_csv, tmp_path):
    """--space-from-bench proposes only rows holding the metric; a seed out of range is a
    one-line error; a stop after failures in a row keeps the summary and says how to go
    on; `search --run-dir DIR` alone continues the run recorded there."""
    lines = nb201_csv.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    col = header.split(",").index("cifar10_test")

    def blank(row: str) -> str:
        cells = row.split(",")
        cells[col] = ""
        return ",".join(cells)

    sparse = tmp_path / "sparse.csv"  # a value on one row in 200
    sparse.write_text("\n".join([header] + [r if i % 200 == 0 else blank(r)
                                            for i, r in enumerate(rows)]) + "\n")
    args = ["--space", "nb201", "--bench", str(sparse), "--metric", "cifar10_test"]
    code, out, err = cli("search", *args, "--strategy", "random", "--budget", "60",
                         "--space-from-bench", "--run-dir", str(tmp_path / "s"))
    assert code == 0, err
    assert "60 of 60" in out and "failed" not in out
    code, _, err = cli("search", *args, "--seed", str(2**32), "--budget", "5",
                       "--run-dir", str(tmp_path / "big"))
    assert code == 2 and f"--seed must lie in 0..{2**32 - 1}, got {2**32}" in err
    assert not (tmp_path / "big").exists()
    # without --space-from-bench nearly every cell of the space fails: stopped at 50 in a
    # row, with the summary printed and written first
    run_dir, summary = tmp_path / "f", tmp_path / "f.json"
    code, out, err = cli("search", *args, "--strategy", "random", "--budget", "400",
                         "--run-dir", str(run_dir), "--json", str(summary))
    assert code == 2 and "queries used" in out
    assert "evaluations in a row failed; stopping" in err
    assert f"once the cause is fixed, archrank search --resume {run_dir} continues it" in err
    stopped = json.loads(summary.read_text())
    assert stopped["failed"] >= 50 and stopped["seconds"] > 0
    # a recorded seed outside the range (runs of older versions took -1) still resumes
    from archrank.runs.config import SearchConfig

    assert SearchConfig(space="nb201", bench=str(sparse), metric="cifar10_test",
                        seed=-1).seed == -1
    code, _, err = cli("bench", "search", *args, "--strategies", "random", "--budget", "5",
                       "--seeds", "2", "--first-seed", str(2**32 - 1))
    assert code == 2 and "goes past the largest seed" in err
    code, out, err = cli("search", "--run-dir", str(tmp_path / "s"))
    assert code == 0 and "resuming" in err and "(this session)" in out


def test_the_demo_continues_its_stopped_main_job(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`archrank demo` after a Ctrl-C continues the main job's newest unfinished run under
    runs/ rather than starting another one beside it; a finished or other run is left."""
    from archrank.cli.search import MAIN_JOB, _unfinished_main_job
    from archrank.datasets import canonical_spec
    from archrank.runs.store import RunStore

    runs = tmp_path / "runs"
    assert _unfinished_main_job(runs) is None
    main = {"space": "nb201", "metric": "val_acc", "strategy": "guided", "predictor": "gates",
            "budget": MAIN_JOB["budget"], "seed": 0, "bench": None, "space_from_bench": False,
            "max_in_flight": 2, "ordered": True, "oracle": "train", "strategy_params": {},
            "oracle_params": {"dataset": canonical_spec("mnist1d")}}
    older, newer = runs / "gates-nb201-seed0-20260101-000000", runs / "gates-nb201-seed0-2027"
    for run, budget in ((older, MAIN_JOB["budget"]), (newer, 7)):
        RunStore.create(run, {**main, "budget": budget}).close()
    assert _unfinished_main_job(runs) == older  # the newer one is another search
    RunStore.create(runs / "gates-nb201-seed0-20260202-000000", main).close()
    assert _unfinished_main_job(runs) == runs / "gates-nb201-seed0-20260202-000000"


def test_a_bare_search_continues_the_stopped_main_job_as_the_demo_does(cli, tmp_path,
                                                                       monkeypatch):
    """`archrank search` with no options (the main job) started a new run each time, while
    `archrank demo` continued the stopped one."""
    import archrank.cli.search as search_module
    from archrank.cli.search import MAIN_JOB
    from archrank.datasets import canonical_spec
    from archrank.errors import ArchrankError
    from archrank.runs.store import RunStore

    resolved: list[tuple[Any, Any]] = []

    def resolve_run(options, run_dir, resume):  # type: ignore[no-untyped-def]
        resolved.append((run_dir, resume))
        raise ArchrankError("stop here")  # (no training in a test)

    monkeypatch.setattr(search_module, "resolve_run", resolve_run)
    monkeypatch.chdir(tmp_path)
    for command in ("search", "demo"):  # nothing stopped: a new run
        assert cli(command)[0] == 2 and resolved.pop() == (None, None)
    run = Path("runs") / "gates-nb201-seed0-20260101-000000"
    RunStore.create(run, {
        "space": "nb201", "metric": "val_acc", "strategy": "guided", "predictor": "gates",
        "budget": MAIN_JOB["budget"], "seed": 0, "bench": None, "space_from_bench": False,
        "max_in_flight": 2, "ordered": True, "oracle": "train", "strategy_params": {},
        "oracle_params": {"dataset": canonical_spec("mnist1d")}}).close()
    for command in ("search", "demo"):
        code, _, err = cli(command)
        assert code == 2 and f"continuing the main job stopped in {run}" in err, err
        assert resolved.pop() == (None, run)
    # a search with options, or into a run directory of its own, starts its own run
    assert cli("search", "--run-dir", tmp_path / "mine")[0] == 2
    assert resolved.pop() == (tmp_path / "mine", None)


def test_a_search_among_a_tables_cells_has_the_cells_with_a_value_as_budget(cli, tmp_path):
    import json

    import numpy as np

    from archrank.spaces import get_space

    space = get_space("nb201")
    cells = space.sample(40, np.random.default_rng(1))
    table = tmp_path / "part.csv"
    table.write_text("arch,c\n" + "".join(
        f"{space.format(c)},{i if i < 30 else ''}\n" for i, c in enumerate(cells)))
    code, out, err = cli("bench", "search", "--space", "nb201", "--bench", table, "--metric",
                         "c", "--strategies", "random", "--budget", "100", "--seeds", "1",
                         "--first-seed", "4", "--space-from-bench", "--json",
                         tmp_path / "s.json")
    assert code == 0, err
    valued = len({space.hash(c) for c in cells[:30]})  # distinct cells holding a value
    assert f"the budget is {valued}" in err and "distinct cells with a value of c" in err
    assert json.loads((tmp_path / "s.json").read_text())["budget"] == valued
    assert f"budget {valued} · seed 4" in out


def test_set_may_name_the_strategy_it_configures(cli, base, tmp_path):
    """`--set rea.population=5` (as bench search takes it) works in search too."""
    code, _, err = cli("search", *base, "--strategy", "rea", "--budget", "12", "--set",
                       "rea.population=5", "--run-dir", tmp_path / "r")
    assert code == 0, err
    from archrank.runs.store import RunStore

    with RunStore.open(tmp_path / "r", readonly=True) as store:
        assert store.config["strategy_params"] == {"population": 5}


SMALL = CELLS  # four nb201 cells of one small table (test_options)


@pytest.fixture
def small_run(cli, tmp_path):
    """A finished random search of 3 evaluations on a 4-cell table, and its --json."""
    table = tmp_path / "small.csv"
    table.write_text("arch,acc\n" + "".join(f"{c},{90 + i}\n" for i, c in enumerate(SMALL)))
    run_dir = tmp_path / "run"
    code, _, err = cli("search", "--space", "nb201", "--bench", table, "--metric", "acc",
                       "--strategy", "random", "--budget", "3", "--space-from-bench",
                       "--run-dir", run_dir,
                       "--json", tmp_path / "s.json")
    assert code == 0, err
    return run_dir, table


def test_runs_show_json_says_what_the_table_says(cli, small_run, tmp_path):
    run_dir, _ = small_run
    code, table_out, _ = cli("runs", "show", run_dir)
    assert code == 0
    code, out, err = cli("runs", "show", run_dir, "--json", "-")
    assert code == 0, err
    shown = json.loads(out)  # only the JSON on stdout
    assert shown["kind"] == "run-show" and shown["run_dir"] == str(run_dir.resolve())
    assert shown["evaluations"] == {"ok": 3, "failed": 0, "pending": 0}
    assert shown["status"] == "finished" and shown["config"]["budget"] == 3
    assert shown["best"]["arch"] in table_out and shown["config"]["strategy"] == "random"
    code, out, _ = cli("runs", "show", run_dir, "--json", tmp_path / "show.json")
    assert code == 0 and "3 ok, 0 failed" in out  # a file: the table too
    assert json.loads((tmp_path / "show.json").read_text()) == shown


def test_report_of_a_search_json_reports_its_run(cli, small_run, tmp_path):
    """`search --json` wrote no kind: `report` said 'JSON without a kind field'."""
    run_dir, table = small_run
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["kind"] == "search-summary" and summary["schema"] == 1
    assert cli("runs", "show", run_dir, "--json", tmp_path / "show.json")[0] == 0
    for source in ("s.json", "show.json"):  # the report of the run they stand for
        code, _, err = cli("report", tmp_path / source, "--out", tmp_path / "r.html")
        assert code == 0, err[-300:]
        assert 'alt="runs0_best_so_far"' in (tmp_path / "r.html").read_text()
    del summary["kind"], summary["schema"]  # written before kinds: recognised all the same
    (tmp_path / "old.json").write_text(json.dumps(summary))
    assert cli("report", tmp_path / "old.json", "--out", tmp_path / "r.html")[0] == 0
    (tmp_path / "gone.json").write_text(json.dumps({**summary, "run_dir": "nowhere"}))
    line = one_line_error(*cli("report", tmp_path / "gone.json", "--out",
                               tmp_path / "r.html")[::2])
    assert "output of `archrank search --json`" in line and "nowhere" in line

    assert cli("bench", "check", table, "--space", "nb201", "--json",
               tmp_path / "c.json")[0] == 0
    line = one_line_error(*cli("report", tmp_path / "c.json", "--out", tmp_path / "r.html")[::2])
    assert "output of `archrank bench check --json` (kind 'bench-check'), which has no report" \
        in line


def test_an_exported_run_read_back_has_no_bookkeeping_metrics(cli, small_run, tmp_path):
    """`runs export --csv` given as --bench: seq, started, finished, batch... read as metrics
    (listed by bench check, accepted as --metric)."""
    run_dir, _ = small_run
    assert cli("runs", "export", run_dir, "--csv", "--out", tmp_path / "e.csv")[0] == 0
    code, _, err = cli("bench", "check", tmp_path / "e.csv", "--space", "nb201", "--json",
                       tmp_path / "c.json")
    assert code == 0, err
    assert json.loads((tmp_path / "c.json").read_text())["metrics"] == ["objective", "cost",
                                                                         "acc"]
    for column in ("started", "seq", "status"):
        line = one_line_error(*cli("search", "--space", "nb201", "--bench", tmp_path / "e.csv",
                                   "--space-from-bench", "--metric", column, "--budget", "2",
                                   "--run-dir", tmp_path / "r2")[::2])
        assert f"column {column!r}" in line and "bookkeeping of an exported run" in line
    # a table that merely has a column called seq keeps it as a metric
    table = tmp_path / "own.csv"
    table.write_text("arch,seq,acc\n" + f"{SMALL[0]},1,90\n{SMALL[1]},2,91\n")
    assert cli("bench", "check", table, "--space", "nb201", "--json", tmp_path / "o.json")[0] == 0
    assert json.loads((tmp_path / "o.json").read_text())["metrics"] == ["seq", "acc"]


def test_a_budget_past_the_cells_is_capped_with_a_note(cli, small_run, tmp_path):
    """`search --budget 1000000000` was taken as given (bench search capped it already)."""
    _, table = small_run
    argv = ["search", "--space", "nb201", "--bench", table, "--metric", "acc",
            "--space-from-bench", "--strategy", "random", "--budget", "1000000000",
            "--run-dir", tmp_path / "big", "--json", tmp_path / "big.json"]
    code, _, err = cli(*argv)
    assert code == 0, err
    assert ("warning: --budget 1,000,000,000 is more than the 4 distinct cells with a value "
            "of acc: every search ends by then, so the budget is 4") in err
    assert json.loads((tmp_path / "big.json").read_text())["budget"] == 4
    code, _, err = cli(*argv)  # the same command continues the same run
    assert code == 0, err
    code, _, err = cli("bench", "search", "--space", "nb201", "--bench", table, "--metric", "acc",
                       "--space-from-bench", "--strategies", "random", "--seeds", "1",
                       "--budget", "1000000000", "--json", tmp_path / "b.json")
    assert code == 0 and "so the budget is 4" in err, err
    assert json.loads((tmp_path / "b.json").read_text())["budget"] == 4


def test_a_training_search_is_capped_at_the_space():
    from archrank.runs.config import SearchConfig, cap_budget

    config = SearchConfig(space="nb201", metric="val_acc", oracle="train", budget=10**9)
    capped, note = cap_budget(config)
    assert capped.budget == 8765 and "distinct cells of nb201" in (note or "")
    assert cap_budget(SearchConfig(space="nb201", metric="val_acc", oracle="train",
                                   budget=40)) == (SearchConfig(space="nb201", metric="val_acc",
                                                                oracle="train", budget=40), None)
    darts = SearchConfig(space="darts", metric="val_acc", oracle="train", budget=10**9)
    assert cap_budget(darts) == (darts, None)  # too many to count: as given


class _Pipe(io.RawIOBase):
    """A pipe whose reader takes ``room`` bytes and goes away (`| head -c ROOM`): a write
    that runs past is cut short, as the kernel cuts one, and the next one is refused."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        if self.room <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        taken = min(self.room, len(data))
        self.room -= taken
        return taken


@pytest.mark.parametrize("form", ["--jsonl", "--csv"])
def test_an_export_to_a_reader_that_quits_ends_with_141(cli, small_run, monkeypatch, form):
    """`runs export RUN | head` of JSON Lines exited 0 with the output cut short (one write
    of the whole export; the part left in the buffer failed unnoticed at exit)."""
    run_dir, _ = small_run
    assert len(cli("runs", "export", run_dir, form)[1]) > 300
    pipe = io.TextIOWrapper(io.BufferedWriter(_Pipe(200), 8192), encoding="utf-8")
    monkeypatch.setattr("sys.stdout", pipe)
    code, _, err = cli("runs", "export", run_dir, form)
    assert code == 141 and err == "", err


class _Full(_Pipe):
    """`> /dev/full`: every write fails with ENOSPC."""

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("form", ["--jsonl", "--csv"])
def test_an_export_to_a_full_device_is_a_one_line_error(cli, small_run, monkeypatch, form):
    """`runs export RUN > /dev/full` ended as an internal error (exit 70, 'a bug')."""
    run_dir, _ = small_run
    pipe = io.TextIOWrapper(io.BufferedWriter(_Full(0), 8192), encoding="utf-8")
    monkeypatch.setattr("sys.stdout", pipe)
    line = one_line_error(*cli("runs", "export", run_dir, form)[::2])
    assert line == "error: cannot write standard output (No space left on device)"
