"""``archrank bench predictor`` / ``bench speed`` and the harness behind them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from archrank.bench.predictor import bench_predictors, parse_sizes, train_split
from archrank.cli import main
from archrank.cli.app import app
from archrank.errors import ArchrankError

TINY = ["--set", "gates.epochs=3", "--set", "gates.dim=16", "--set", "mlp.epochs=3"]


def test_train_split_is_uniform_disjoint_and_reproducible() -> None:
    train, test = train_split(1000, 100, seed=3)
    assert len(train) == 100 and len(test) == 900
    assert not set(train) & set(test)
    again, _ = train_split(1000, 100, seed=3)
    np.testing.assert_array_equal(train, again)
    other, _ = train_split(1000, 100, seed=4)
    assert not np.array_equal(train, other)


def test_bench_predictors_reports_every_predictor_and_size(nb201_csv: Path) -> None:
    result = bench_predictors(
        "nb201", str(nb201_csv), "cifar10_test", ["gates", "mlp"], [20, 40], seeds=2,
        params={"gates": {"epochs": 3, "dim": 16}, "mlp": {"epochs": 3}},
    )
    data = result.to_json()
    assert data["settings"]["rows"] == 15625
    assert data["machine"]["available_cores"] >= 1
    results = data["results"]
    assert [(r["predictor"], r["train_size"]) for r in results] == [
        ("gates", 20), ("gates", 40), ("mlp", 20), ("mlp", 40)]
    for r in results:
        assert r["seeds"] == 2
        assert r["test_size"] == 15625 - r["train_size"]
        for key in ("kendall_tau", "spearman", "precision_at_5pct", "n_at_10"):
            assert set(r[key]) == {"mean", "std"} and np.isfinite(r[key]["mean"])
        assert -1 <= r["kendall_tau"]["mean"] <= 1
        assert 1 <= r["n_at_10"]["mean"] <= 15625
        assert r["fit_seconds"] > 0 and r["predict_seconds"] > 0
    # the same training sets for every predictor of a (seed, size)
    assert len(data["runs"]) == 8


def test_cli_bench_predictor_writes_json(nb201_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = CliRunner().invoke(app, [
        "bench", "predictor", "--space", "nb201", "--bench", str(nb201_csv),
        "--metric", "cifar10_test", "--predictors", "gates", "--train-sizes", "30",
        "--seeds", "1", "--json", str(out), *TINY[:4]], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Kendall tau" in result.output and "gates" in result.output
    data = json.loads(out.read_text())
    assert data["settings"]["predictors"] == ["gates"]
    assert data["results"][0]["train_size"] == 30


def test_cli_bench_predictor_on_nbgraph(tmp_path: Path) -> None:
    pytest.importorskip("nas_bench_graph")
    out = tmp_path / "g.json"
    result = CliRunner().invoke(app, [
        "bench", "predictor", "--space", "nbgraph", "--bench", "nbgraph:cora",
        "--metric", "perf", "--predictors", "gates", "--train-sizes", "50", "--seeds", "1",
        "--json", str(out), *TINY[:4]], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    entry = json.loads(out.read_text())["results"][0]
    assert entry["test_size"] == 26206 - 50


@pytest.mark.parametrize("args, message", [
    (["--predictors", "gates,nope"], "unknown predictor 'nope'"),
    (["--train-sizes", "10,abc"], "not an integer"),
    (["--train-sizes", "20000"], "leaves nothing to score"),
    (["--metric", "cifar11"], "unknown metric 'cifar11'"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--set", "gates.bogus=1"], "no parameter 'bogus'"),
    (["--set", "nodot"], "expected PREDICTOR.PARAM=VALUE"),
    (["--predictors", "gates,gates"], "'gates' is given twice"),
    (["--train-sizes", "10,10"], "10 is given twice"),
    (["--arch-inputs", "flops"], "--arch-inputs: none of the predictors benchmarked (gates)"),
    (["--aux-targets", "cifar100_test"], "--aux-targets: none of the predictors"),
])
def test_bad_options_give_one_line_errors(args: list[str], message: str, nb201_csv: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    base = {"--space": "nb201", "--bench": str(nb201_csv), "--metric": "cifar10_test",
            "--predictors": "gates", "--train-sizes": "10", "--seeds": "1"}
    argv = ["bench", "predictor"]
    for key, value in base.items():
        if key not in args:
            argv += [key, value]
    argv += [*args, "--set", "gates.epochs=1"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_parse_sizes_rejects_tiny_sets() -> None:
    with pytest.raises(ArchrankError, match="too small"):
        parse_sizes("1")


def test_cli_bench_speed_small(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    result = CliRunner().invoke(app, [
        "bench", "speed", "--train-size", "50", "--repeats", "1", "--no-nb101",
        "--set", "gates.epochs=5", "--json", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["fit_nb201"]["cells"] == 50
    assert data["score_nb201"]["cells"] == 15625
    assert data["score_nb201"]["median_seconds"] > 0
    assert "score_nb101" not in data


def test_percentile_of_a_failed_pick_is_nan_not_the_bottom() -> None:
    from archrank.bench.common import percentile
    from archrank.bench.oneshot_search import _seed_mean

    truth = np.array([50.0, 60.0, 70.0, 80.0, 90.0])
    assert percentile(truth, 85.0) == pytest.approx(80.0)
    assert np.isnan(percentile(truth, float("nan")))
    # one diverged training seed leaves the mean of the others; none finished: NaN
    means = _seed_mean(np.array([[88.0, np.nan, 90.0], [np.nan, np.nan, np.nan]]))
    assert means[0] == pytest.approx(89.0) and np.isnan(means[1])


def test_bench_predictors_resumes_from_its_journal(nb201_csv: Path, tmp_path: Path) -> None:
    """Every finished fit is journaled; the same command after a kill fits only the rest and
    reports the figures of an uninterrupted run; a failing fit keeps the finished seeds."""
    from archrank.errors import FailedWithPartial, Interrupted

    args = ("nb201", str(nb201_csv), "cifar10_test", ["xgb", "mlp"], [20, 40])
    params = {"xgb": {"n_estimators": 20}, "mlp": {"epochs": 2}}
    whole = bench_predictors(*args, seeds=2, params=params).to_json()
    journal = tmp_path / "p.json.journal.jsonl"
    seen: list[str] = []

    def stop_at_fifth(msg: str) -> None:
        seen.append(msg)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"5 of 8 fits finished .1 whole seed kept"):
        bench_predictors(*args, seeds=2, params=params, journal=journal,
                         progress=stop_at_fifth)
    fits: list[str] = []
    again = bench_predictors(*args, seeds=2, params=params, journal=journal,
                             progress=fits.append).to_json()
    assert fits[0].startswith("resuming: 5 fits journaled")
    assert [m.split(":")[0] for m in fits[1:]] == ["seed 1 n=20 mlp", "seed 1 n=40 xgb",
                                                  "seed 1 n=40 mlp"]
    key = ("predictor", "train_size", "seed", "kendall_tau", "spearman", "test_size")
    assert [[r[k] for k in key] for r in again["runs"]] == \
        [[r[k] for k in key] for r in whole["runs"]]
    assert again["samples"] == whole["samples"]
    # other parameters of one predictor: the other's fits are taken, its own redone
    fits.clear()
    bench_predictors(*args, seeds=1, params={**params, "mlp": {"epochs": 3}},
                     journal=journal, progress=fits.append)
    assert [m.split(":")[0] for m in fits[1:]] == ["seed 0 n=20 mlp", "seed 0 n=40 mlp"]
    # another table setting shared by every fit: refused, not mixed in
    with pytest.raises(ArchrankError, match=r"other settings \(drop_twins\)"):
        bench_predictors(*args, seeds=2, params=params, journal=journal, drop_twins=True)
    # a split without test rows (--drop-twins) is bad input: said before any fit or journal
    twins = tmp_path / "twins.csv"
    rows = nb201_csv.read_text().splitlines()
    twins.write_text("\n".join([rows[0], *rows[1:11] * 6]) + "\n")
    with pytest.raises(ArchrankError, match="0 test rows are left once the training "
                       "rows' twins are dropped") as info:
        bench_predictors("nb201", str(twins), "cifar10_test", ["xgb"], [5, 55], seeds=2,
                         drop_twins=True, params={"xgb": params["xgb"]},
                         journal=tmp_path / "t.json.journal.jsonl")
    assert not isinstance(info.value, FailedWithPartial)
    assert not (tmp_path / "t.json.journal.jsonl").exists()
    # a fit that fails keeps the whole seeds before it
    import archrank.bench.predictor as harness

    calls = []

    def fail_on_third(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return report(*a, **k)

    report = harness.ranking_report
    harness.ranking_report = fail_on_third
    try:
        with pytest.raises(FailedWithPartial, match=r"a fit failed \(RuntimeError: boom\); "
                           "2 of 4 fits finished") as failed:
            bench_predictors("nb201", str(nb201_csv), "cifar10_test", ["xgb"], [20, 40],
                             seeds=2, params={"xgb": params["xgb"]})
    finally:
        harness.ranking_report = report
    assert failed.value.partial["interrupted"] and failed.value.partial["seeds"] == [0]


@pytest.mark.parametrize(("args", "message"), [
    (["--no-nb201", "--no-nb101", "--no-darts"], "leave nothing to time"),
    (["--no-nb201", "--metric", "cifar100_test"], "--metric is for the nb201 fit"),
    (["--no-nb201", "--bench", "x.csv"], "--bench is for the nb201 fit"),
])
def test_bench_speed_refuses_options_it_would_ignore(args: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "speed", *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_failed_bench_leaves_an_earlier_json_whole(nb201_csv: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A bench refused before any fit (a split without test rows) writes no report over an
    earlier one and leaves no journal to block another command."""
    from archrank.bench.journal import journal_for

    out = tmp_path / "p.json"
    out.write_text('{"kept": true}')
    base = ["bench", "predictor", "--space", "nb201", "--bench", str(nb201_csv), "--metric",
            "cifar10_test", "--predictors", "xgb", "--seeds", "1", "--set",
            "xgb.n_estimators=5", "--json", str(out)]
    with pytest.raises(SystemExit) as exc:
        main([*base, "--train-sizes", "15624", "--drop-twins"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "0 test rows are left" in err and out.read_text() == '{"kept": true}'
    assert not journal_for(out).exists()
    with pytest.raises(SystemExit) as exc:
        main([*base, "--train-sizes", "20"])
    assert exc.value.code in (0, None) and json.loads(out.read_text())["results"]
    assert not journal_for(out).exists()  # removed once the JSON is written, with its lock
    from archrank.files import lock_path

    assert not lock_path(journal_for(out)).exists()
    assert journal_for("/dev/null") is None and journal_for("-") is None


def test_locks_step_aside_where_they_cannot_work(tmp_path: Path, monkeypatch) -> None:
    import errno
    import fcntl

    from archrank.files import hold_lock

    assert hold_lock("/dev/null", "x") is None  # written in place: nothing to guard
    assert hold_lock(tmp_path / "missing" / "f.json", "x") is None  # the output check says

    def no_locks(*_args):  # a file system without flock
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="cannot lock x on this file system"):
        assert hold_lock(tmp_path / "f.json", "x") is None


def test_a_training_set_of_equal_targets_is_a_fit_without_tau(tmp_path: Path, cli) -> None:
    """A tie-heavy metric's small training set can hold one value only: that fit has no
    ranking to learn and no tau, and the bench goes on (it stopped, and every resume with
    it); the table says why its figures are missing."""
    from archrank.spaces import get_space

    space = get_space("nb201")
    cells = space.sample(60, np.random.default_rng(0))
    table = tmp_path / "ties.csv"
    table.write_text("arch,c\n" + "".join(
        f"{space.format(c)},{1 if i < 2 else 0}\n" for i, c in enumerate(cells)))
    code, out, err = cli("bench", "predictor", "--space", "nb201", "--bench", table,
                         "--metric", "c", "--predictors", "rf", "--train-sizes", "4",
                         "--seeds", "2", "--json", tmp_path / "t.json")
    assert code == 0, err
    report = json.loads((tmp_path / "t.json").read_text())
    entry = report["results"][0]
    assert entry["seeds"] + entry["seeds_without_tau"] == 2
    assert entry["seeds_with_targets_alike"] >= 1
    assert all(r["kendall_tau"] is None for r in report["runs"]  # NaN: null in JSON
               if r.get("targets_alike"))
    assert "fits have no Kendall tau" in out and "training targets all alike" in out


def test_a_training_result_as_an_arch_input_is_warned_about(nb201_csv: Path) -> None:
    """A table column holding another training result, given for every test cell, makes the
    figures better than any search could see: said."""
    with pytest.warns(UserWarning, match="'cifar100_test' .* reads as a training result"):
        bench_predictors("nb201", str(nb201_csv), "cifar10_test", ["gates++"], [20], 1,
                         params={"gates++": {"epochs": 1, "ensemble": 1}},
                         arch_inputs="cifar100_test")
