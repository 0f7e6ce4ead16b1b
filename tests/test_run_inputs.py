"""Runs record a content fingerprint of what they depend on (a resume on changed data is a
one-line error), and can be read while running or read-only (issue 16)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from archrank.runs.store import LOCK_NAME, RunStore
from archrank.tables import load_benchmark
from conftest import one_line_error
from test_options import CELLS


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("arch,acc\n" + "".join(f"{c},{90 + i}\n" for i, c in enumerate(CELLS)))
    return path


def search(cli, table, run_dir, *extra):
    return cli("search", "--space", "nb201", "--bench", table, "--metric", "acc",
               "--space-from-bench", "--strategy", "random", "--run-dir", run_dir, *extra)


def _task_npz(tmp_path):
    """A 40-signal two-class task as an .npz dataset: (path, x, y)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 8)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64)
    data = tmp_path / "task.npz"
    np.savez(data, x_train=x[:30], y_train=y[:30], x_val=x[30:], y_val=y[30:])
    return data, x, y


def test_resume_on_a_changed_table_is_an_error(tmp_path, table, cli):
    run_dir = tmp_path / "run"
    status, _, err = search(cli, table, run_dir, "--budget", "2")
    assert status == 0, err
    with RunStore.open(run_dir) as store:
        assert len(store.inputs["fingerprint"]) == 16
    status, _, err = cli("search", "--resume", run_dir)           # unchanged: fine
    assert status == 0, err
    table.write_text(table.read_text().replace(",90\n", ",91\n"))  # one value changed
    status, _, err = cli("search", "--resume", run_dir)
    line = one_line_error(status, err)
    assert "inputs changed since it was created" in line and "fingerprint" in line
    assert f"the contents of {table}" in line  # whose contents, not only a hash


def test_resume_on_a_changed_dataset_is_an_error(tmp_path, cli):
    data, x, y = _task_npz(tmp_path)
    run_dir = tmp_path / "run"
    status, _, err = cli("search", "--oracle", "train", "--dataset", data, "--epochs", "1",
                         "--strategy", "random", "--budget", "1", "--run-dir", run_dir)
    assert status == 0, err
    with RunStore.open(run_dir) as store:
        recorded = store.inputs
    assert recorded["recipe"]["epochs"] == 1 and recorded["dataset"]["fingerprint"]
    np.savez(data, x_train=x[:30] * 2, y_train=y[:30], x_val=x[30:], y_val=y[30:])
    line = one_line_error(*cli("search", "--resume", run_dir, "--budget", "1")[::2])
    assert "dataset.fingerprint" in line


def test_search_width_and_depth_of_the_training_oracle(tmp_path, table, cli):
    """--width/--depth set the trained network (the old main job: width 8) and are recorded."""
    data = _task_npz(tmp_path)[0]
    run_dir = tmp_path / "run"
    status, _, err = cli("search", "--oracle", "train", "--dataset", data, "--epochs", "1",
                         "--width", "3", "--depth", "2", "--strategy", "random", "--budget",
                         "1", "--run-dir", run_dir)
    assert status == 0, err
    with RunStore.open(run_dir) as store:
        assert store.inputs["network"] == {"width": 3, "depth": 2}
        assert store.config["oracle_params"]["width"] == 3
    assert "--width must be at least 1" in one_line_error(*cli(
        "search", "--oracle", "train", "--dataset", data, "--width", "0")[::2])
    assert "only apply to --oracle train" in one_line_error(*search(
        cli, table, tmp_path / "r2", "--oracle", "table", "--depth", "2")[::2])
    for option in ("--epochs", "--width", "--depth", "--train-seed"):  # were ignored silently
        line = one_line_error(*search(cli, table, tmp_path / "r3", option, "2")[::2])
        assert "add --oracle train" in line, (option, line)
    assert not (tmp_path / "r3").exists()


def test_show_and_export_read_a_run_that_is_being_written(tmp_path, table, cli):
    run_dir = tmp_path / "run"
    assert search(cli, table, run_dir, "--budget", "3")[0] == 0
    with RunStore.open(run_dir):      # another process holds the run's lock (a live search)
        status, out, err = cli("runs", "show", run_dir)
        assert status == 0, err
        assert "3 ok, 0 failed" in out
        status, out, err = cli("runs", "export", run_dir)
        assert status == 0, err
        assert [json.loads(line)["seq"] for line in out.splitlines()] == [0, 1, 2]
        status, _, err = cli("runs", "export", run_dir, "--csv", "--out", tmp_path / "e.csv")
        assert status == 0, err
        # a second writer is refused with one line
        assert "in use" in one_line_error(*cli("search", "--resume", run_dir)[::2])
    bench = load_benchmark(tmp_path / "e.csv", "nb201")   # the CSV reads back as a table
    assert len(bench) == 3 and {"objective", "acc"} <= set(bench.metrics)
    assert "seq" not in bench.metrics  # bookkeeping of the run, no metric
    assert set(bench.values("acc")) <= {90.0, 91.0, 92.0, 93.0}


def test_reading_takes_no_lock_and_leaves_the_database_alone(tmp_path, table, cli):
    run_dir = tmp_path / "run"
    assert search(cli, table, run_dir, "--budget", "2")[0] == 0
    (run_dir / LOCK_NAME).unlink()
    db = run_dir / "run.sqlite"
    before = (db.stat().st_mtime_ns, db.read_bytes())
    assert cli("runs", "show", run_dir)[0] == 0
    assert cli("runs", "export", run_dir, "--csv")[0] == 0
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
    assert not (run_dir / LOCK_NAME).exists()


def test_snapshot_read_when_sqlite_cannot_open_read_only(tmp_path, table, cli, monkeypatch):
    """A read-only folder without the WAL index: the database is read from a copy."""
    run_dir = tmp_path / "run"
    assert search(cli, table, run_dir, "--budget", "2")[0] == 0
    import sqlite3

    real = sqlite3.connect

    def refuse_ro(target, *args, **kwargs):
        if "mode=ro" in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", refuse_ro)
    status, out, err = cli("runs", "show", run_dir)
    assert status == 0, err
    assert "2 ok" in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only folder")
def test_resume_in_a_read_only_run_directory_is_an_error(tmp_path, table, cli):
    run_dir = tmp_path / "run"
    assert search(cli, table, run_dir, "--budget", "2")[0] == 0
    for p in [run_dir, *run_dir.iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert cli("runs", "show", run_dir)[0] == 0
        assert "read-only" in one_line_error(*cli("search", "--resume", run_dir)[::2])
    finally:
        run_dir.chmod(0o755)


def test_a_run_recorded_before_the_mnist1d_default_changed_resumes_on_its_data(tmp_path, cli):
    """Plain 'mnist1d' in a run's records meant 5,000 signals and nb201 at width 8: such a run
    resumes on that data and network (its fingerprints would refuse anything else)."""
    import sqlite3

    from archrank.runs.store import DB_NAME

    run_dir = tmp_path / "old"
    status, _, err = cli("search", "--oracle", "train", "--dataset",
                         "mnist1d:num_samples=5000,val_fraction=0.2", "--width", "8",
                         "--epochs", "1", "--strategy", "random", "--budget", "1",
                         "--run-dir", run_dir)
    assert status == 0, err
    with sqlite3.connect(run_dir / DB_NAME) as db:  # what the run recorded before the change
        rows = dict(db.execute("SELECT key, value FROM config").fetchall())
        params, inputs = json.loads(rows["oracle_params"]), json.loads(rows["inputs"])
        assert params == {"dataset": "mnist1d:num_samples=5000,val_fraction=0.2", "width": 8,
                          "epochs": 1}
        inputs["dataset"]["name"] = "mnist1d"
        db.execute("UPDATE config SET value = ? WHERE key = 'oracle_params'",
                   (json.dumps({"dataset": "mnist1d", "epochs": 1}),))
        db.execute("UPDATE config SET value = ? WHERE key = 'inputs'", (json.dumps(inputs),))
    status, _, err = cli("search", "--resume", run_dir)  # checks the data and network
    assert status == 0, err
    with sqlite3.connect(run_dir / DB_NAME) as db:  # a record of the new default is held to it
        db.execute("UPDATE config SET value = ? WHERE key = 'inputs'", (json.dumps(
            {**inputs, "dataset": {**inputs["dataset"],
                                   "name": "mnist1d:num_samples=20000,val_fraction=0.8"}}),))
    assert "inputs changed" in one_line_error(*cli("search", "--resume", run_dir)[::2])
