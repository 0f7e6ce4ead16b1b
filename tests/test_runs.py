"""Run store (SQLite WAL), the search loop (executors, failures, ordering) and bench search."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from archrank.bench.search import bench_search, summarise
from archrank.errors import ArchrankError
from archrank.oracles.base import Evaluation, Oracle
from archrank.runs import RunStore, SearchConfig, build_oracle, build_strategy, run_search
from archrank.runs.loop import executor_for
from archrank.spaces import get_space

SPACE = get_space("nb201")


@pytest.fixture
def config(nb201_csv) -> SearchConfig:
    return SearchConfig(space="nb201", bench=str(nb201_csv), metric="cifar10_test",
                        strategy="rea", budget=40, seed=0)


def run(config: SearchConfig, store: RunStore | None = None, **kw: Any):
    store = store or RunStore.memory(config.to_dict())
    return run_search(build_strategy(config), build_oracle(config), store,
                      budget=config.budget, max_in_flight=config.max_in_flight, **kw)


def fingerprint(result) -> list[tuple]:
    return [(r.seq, r.hash, r.arch, r.status, r.objective, r.tell_seq) for r in result.records]


# -- store -------------------------------------------------------------------------------------
def test_store_round_trip(tmp_path):
    cfg = {"space": "nb201", "metric": "acc", "budget": 3, "strategy_params": {"a": [1, 2]}}
    with RunStore.create(tmp_path / "run", cfg) as store:
        store.add_ask(0, 0, 2, [(0, "h0", "arch0"), (1, "h1", "arch1")])
        store.record_result(0, Evaluation({"acc": np.float32(0.5), "t": 3}, cost=12.5),
                            0.5, 10.0, 11.0)
        store.mark_told(0, 0)
        store.record_result(1, Evaluation(status="failed", error="diverged"), None, 10.0, 12.0)
    assert (tmp_path / "run" / "run.sqlite").is_file()
    with RunStore.open(tmp_path / "run") as store:
        assert store.config == cfg
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        recs = store.records()
        assert store.counts() == {"pending": 0, "ok": 1, "failed": 1}
        assert [a.returned for a in store.asks()] == [2]
        lines = [json.loads(x) for x in store.iter_jsonl()]
    ok, failed = recs
    assert (ok.hash, ok.arch, ok.status, ok.objective, ok.cost, ok.tell_seq) == (
        "h0", "arch0", "ok", 0.5, 12.5, 0)
    assert ok.metrics == {"acc": 0.5, "t": 3.0}
    assert ok.evaluation() == Evaluation({"acc": 0.5, "t": 3.0}, cost=12.5)
    assert (failed.status, failed.error, failed.tell_seq) == ("failed", "diverged", None)
    assert lines[1]["status"] == "failed" and lines[0]["metrics"]["acc"] == 0.5


def test_store_refuses_repeats_second_writers_and_foreign_dirs(tmp_path):
    store = RunStore.create(tmp_path / "r", {"space": "nb201"})
    store.add_ask(0, 0, 1, [(0, "h0", "a")])
    with pytest.raises(RuntimeError, match="repeated proposal"):
        store.add_ask(1, 0, 1, [(1, "h0", "a")])
    with pytest.raises(ArchrankError, match="in use by another archrank process"):
        RunStore.open(tmp_path / "r")
    with pytest.raises(ArchrankError, match="already holds a run"):
        RunStore.create(tmp_path / "r", {})
    store.close()
    RunStore.open(tmp_path / "r").close()  # the lock is released on close
    with pytest.raises(ArchrankError, match="no such run directory"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchrankError, match="not a run directory"):
        RunStore.open(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.sqlite").write_text("not a database" * 100)
    with pytest.raises(ArchrankError, match="not a readable run database"):
        RunStore.open(tmp_path / "junk")


def test_each_evaluation_is_committed_as_it_completes(config, tmp_path):
    seen: list[int] = []
    path = tmp_path / "run"
    store = RunStore.create(path, config.to_dict())

    def on_result(rec, n_done, best):
        # another connection sees the result the moment it is reported
        with sqlite3.connect(path / "run.sqlite") as other:
            seen.append(other.execute(
                "SELECT COUNT(*) FROM evaluations WHERE status != 'pending'").fetchone()[0])

    run(config, store, on_result=on_result)
    store.close()
    assert seen == list(range(1, config.budget + 1))


# -- loop --------------------------------------------------------------------------------------
def test_search_on_the_table_finds_good_cells(config):
    result = run(replace(config, budget=150))
    values = result.values()
    assert result.n_evaluated == 150 and not result.interrupted
    assert len({r.hash for r in result.records}) == 150
    assert result.best.objective == values.max() > 94.0
    assert np.all(np.diff(result.best_curve()) >= 0)


class FlakyOracle(Oracle):
    """Fails for cells with a 'none' on the first edge; raises on avg_pool there."""

    def __init__(self, inner: Oracle) -> None:
        self.inner, self.space, self.objective = inner, inner.space, inner.objective

    def evaluate(self, arch: Any) -> Evaluation:
        if arch.ops[0] == "none":
            return Evaluation(status="failed", error="diverged")
        if arch.ops[0] == "avg_pool_3x3":
            raise RuntimeError("worker lost")
        return self.inner.evaluate(arch)


def test_failed_evaluations_are_recorded_and_the_search_goes_on(config):
    cfg = replace(config, strategy="random", budget=60)
    store = RunStore.memory(cfg.to_dict())
    result = run_search(build_strategy(cfg), FlakyOracle(build_oracle(cfg)), store,
                        budget=cfg.budget)
    failed = [r for r in result.records if r.status == "failed"]
    assert result.n_evaluated == 60
    assert {r.error for r in failed} == {"diverged", "RuntimeError: worker lost"}
    assert all(r.objective is None for r in failed)
    assert result.best is not None and result.best.status == "ok"


def test_a_broken_oracle_stops_after_many_failures(config):
    class Broken(FlakyOracle):
        def evaluate(self, arch):
            return Evaluation(status="failed", error="no GPU")

    cfg = replace(config, strategy="random")
    with pytest.raises(ArchrankError, match=r"5 evaluations in a row failed.*no GPU"):
        run_search(build_strategy(cfg), Broken(build_oracle(cfg)),
                   RunStore.memory(cfg.to_dict()), budget=40, max_consecutive_failures=5)


@pytest.mark.parametrize("strategy", ["rea", "ls"])
def test_parallel_executors_evaluate_what_a_serial_run_does(config, strategy):
    cfg = replace(config, strategy=strategy, budget=30, max_in_flight=3)
    serial = run(cfg)
    with ThreadPoolExecutor(3) as pool:
        threaded = run(cfg, executor=pool)
    assert fingerprint(threaded) == fingerprint(serial)
    # three in flight: the first ask requests three proposals
    assert [r.batch for r in serial.records[:3]] == [0, 0, 0]


def test_process_pool_matches_serial(config):
    cfg = replace(config, budget=12, max_in_flight=2)
    executor = executor_for(2)
    try:
        pooled = run(cfg, executor=executor)
    finally:
        executor.shutdown()
    assert fingerprint(pooled) == fingerprint(run(cfg))


def test_unordered_mode_tells_results_as_they_arrive(config):
    cfg = replace(config, budget=20, max_in_flight=2)
    result = run(cfg, ordered=False)
    assert result.n_evaluated == 20 and len({r.hash for r in result.records}) == 20


def test_target_stops_the_search(config):
    result = run(replace(config, budget=150), target=94.0)
    assert result.best.objective >= 94.0
    assert result.values()[-1] == result.best.objective  # nothing after the hit
    assert result.n_evaluated < 150


def test_search_exhausts_a_small_table(tmp_path, nb201_csv):
    rows = nb201_csv.read_text().splitlines()
    small = tmp_path / "small.csv"
    small.write_text("\n".join(rows[:26]) + "\n")
    cfg = SearchConfig(space="nb201", bench=str(small), metric="cifar10_test",
                       strategy="ls", budget=100, space_from_bench=True)
    result = run(cfg)
    n_unique = len({SPACE.hash(SPACE.parse(r.split(",")[1])) for r in rows[1:26]})
    assert result.n_evaluated == n_unique and result.exhausted


def test_config_errors(nb201_csv, nb101_csv):
    with pytest.raises(ArchrankError, match="--budget must be a positive"):
        SearchConfig(space="nb201", metric="m", budget=0)
    with pytest.raises(ArchrankError, match="unknown strategy"):
        SearchConfig(space="nb201", metric="m", strategy="annealing")
    cfg = SearchConfig(space="nb101", metric="val_acc_108", bench=str(nb101_csv),
                       strategy="random")
    with pytest.raises(ArchrankError, match="add --space-from-bench"):
        build_oracle(cfg)
    with pytest.raises(ArchrankError, match="unknown metric 'acc'"):
        build_oracle(replace(cfg, metric="acc", space_from_bench=True))
    with pytest.raises(ArchrankError, match="no such file"):
        build_oracle(replace(cfg, bench="/nonexistent/table.csv"))
    a = SearchConfig(space="nb201", metric="m", bench=str(nb201_csv), strategy="rea")
    b = replace(a, strategy="gates", budget=7)
    assert a.differences(b) == ["--strategy rea", "--predictor (none)", "--budget 100"]


# -- bench search ------------------------------------------------------------------------------
def test_summarise_counts_reached_seeds_and_carries_curves_forward():
    runs = [
        {"curve": [1.0, 2.0, 3.0], "queries_to_optimum": 3, "best": 3.0, "failed": 0,
         "seconds": 1.0},
        {"curve": [2.0], "queries_to_optimum": 1, "best": 3.0, "failed": 1, "seconds": 3.0},
        {"curve": [0.0, 1.0, 1.0], "queries_to_optimum": None, "best": 1.0, "failed": 0,
         "seconds": 2.0},
    ]
    s = summarise(runs, 3)
    assert s["queries_to_optimum"]["median"] == 2.0
    assert s["queries_to_optimum"]["reached"] == 2
    assert s["curve"] == [1.0, pytest.approx(5 / 3), 2.0]
    assert s["best_at"] == {"3": 2.0}
    assert s["seconds"]["median_per_seed"] == 2.0
    # a seed whose first evaluation failed has no best yet: no mean there (not the others')
    runs[2]["curve"] = [float("-inf"), 1.0, 1.0]
    assert summarise(runs, 3)["curve"] == [None, pytest.approx(5 / 3), 2.0]


def test_bench_search_side_by_side(config):
    report = bench_search(replace(config, budget=60), ["random", "rea"], 3,
                          stop_at_optimum=False)
    assert report["optimum"] == pytest.approx(94.3733)
    assert set(report["strategies"]) == {"random", "rea"}
    for entry in report["strategies"].values():
        assert set(entry["best_at"]) == {"50", "60"}
        assert len(entry["curve"]) == 60
        assert entry["queries_to_optimum"]["seeds"] == 3
    # evolution beats random search on this table
    assert report["strategies"]["rea"]["best_at"]["60"] > \
        report["strategies"]["random"]["best_at"]["60"]
    with pytest.raises(ArchrankError, match="listed twice"):
        bench_search(config, ["rea", "rea"], 1)
    with pytest.raises(ArchrankError, match=r"name the predictor as a strategy instead "
                       r"\(--strategies xgb"):
        bench_search(config, ["guided"], 1, strategy_params={"guided": {"predictor": "xgb"}})


def test_bench_search_resumes_from_its_journal(config, tmp_path):
    """A bench killed half-way keeps each finished search in its journal; the same command
    then runs only the rest and reports what an uninterrupted run reports."""
    from archrank.errors import Interrupted

    short = replace(config, budget=30)
    whole = bench_search(short, ["random", "rea"], 3, stop_at_optimum=False)
    journal = tmp_path / "out.json.journal.jsonl"

    def stop_after_four(run, i, n):
        if i == 4:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        bench_search(short, ["random", "rea"], 3, stop_at_optimum=False, journal=journal,
                     progress=stop_after_four)
    assert info.value.partial["seeds"] == [0, 1, 2]  # random's three, rea's first
    assert len(journal.read_text().splitlines()) == 1 + 4
    ran = []
    again = bench_search(short, ["random", "rea"], 3, stop_at_optimum=False, journal=journal,
                         progress=lambda run, i, n: ran.append((run["label"], run["seed"])))
    assert ran == [("rea", 1), ("rea", 2)]
    for label in ("random", "rea"):
        assert again["strategies"][label]["runs"] == whole["strategies"][label]["runs"]
        assert again["strategies"][label]["curve"] == whole["strategies"][label]["curve"]
    # a journal of other settings is refused, not mixed in
    with pytest.raises(ArchrankError, match=r"other settings .*budget"):
        bench_search(replace(short, budget=20), ["random", "rea"], 3, journal=journal)


def test_bench_search_first_seed_runs_fresh_seeds(config):
    """``first_seed`` shifts the seeds (a setting chosen on 0-19 checked on 20-39): the
    same searches as those seeds of a run from 0."""
    short = replace(config, budget=12)
    later = bench_search(short, ["random"], 2, first_seed=3, stop_at_optimum=False)
    assert later["first_seed"] == 3
    runs = later["strategies"]["random"]["runs"]
    assert [r["seed"] for r in runs] == [3, 4]
    whole = bench_search(short, ["random"], 5, stop_at_optimum=False)
    assert [r["curve"] for r in whole["strategies"]["random"]["runs"][3:]] == \
        [r["curve"] for r in runs]
    with pytest.raises(ArchrankError, match="--first-seed must be at least 0"):
        bench_search(short, ["random"], 1, first_seed=-1)


def test_a_run_killed_while_being_created_is_created_again(tmp_path):
    """A kill between the database file and its configuration left a directory that could
    neither be resumed nor created; now resuming says why and creating starts it afresh."""
    from archrank.runs.store import _SCHEMA, DB_NAME

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    conn = sqlite3.connect(run_dir / DB_NAME)
    conn.executescript(_SCHEMA)  # tables, no configuration: the creation was cut short
    conn.close()
    with pytest.raises(ArchrankError, match="stopped while being created"):
        RunStore.open(run_dir)
    with RunStore.create(run_dir, {"budget": 5}) as store:
        assert store.config == {"budget": 5}
    with pytest.raises(ArchrankError, match="already holds a run"):
        RunStore.create(run_dir, {"budget": 6})
    with RunStore.open(run_dir) as store:
        assert store.config == {"budget": 5}


def test_bench_search_journal_of_an_edited_table_is_refused(nb201_csv, tmp_path):
    """A table edited between a kill and the resume (same name, same optimum) would mix old
    and new searches: its content is part of the journal's settings."""
    from archrank.errors import Interrupted

    rows = nb201_csv.read_text().splitlines()
    table = tmp_path / "t.csv"
    table.write_text("\n".join(rows[:60]) + "\n")
    cfg = SearchConfig(space="nb201", bench=str(table), metric="cifar10_test",
                       strategy="random", budget=10, seed=0, space_from_bench=True)
    journal = tmp_path / "s.json.journal.jsonl"

    def stop_after_one(run, i, n):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        bench_search(cfg, ["random"], 3, journal=journal, progress=stop_after_one)
    best = max(rows[1:60], key=lambda line: float(line.split(",")[2]))
    edited = list(rows[:60])
    k = next(i for i in range(59, 0, -1) if edited[i] != best)  # not the optimum's row
    cells = edited[k].split(",")
    cells[2] = str(float(cells[2]) - 10)
    edited[k] = ",".join(cells)
    table.write_text("\n".join(edited) + "\n")
    with pytest.raises(ArchrankError, match=r"other settings \(table\)"):
        bench_search(cfg, ["random"], 3, journal=journal)


def test_another_programs_database_is_named_as_such(tmp_path, cli, nb201_csv):
    """A run directory holding some other SQLite file was 'stopped while being created'
    (and a new search would have replaced it); it is now left alone and named."""
    import sqlite3

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        conn.execute("CREATE TABLE notes (x)")
    code, _, err = cli("runs", "show", run_dir)
    assert code == 2 and "not an archrank run database" in err
    code, _, err = cli("search", "--space", "nb201", "--bench", nb201_csv, "--metric",
                       "cifar10_test", "--budget", "3", "--run-dir", run_dir)
    assert code == 2 and "not an archrank run database" in err
    with sqlite3.connect(run_dir / "run.sqlite") as conn:  # untouched
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]
