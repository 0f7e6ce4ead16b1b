"""Signals, driven on the real CLI in subprocesses (issue 16): SIGINT and SIGTERM stop a
search with worker processes cleanly (exit 130 / 143, a "resume with" hint, no traceback,
no worker left behind); after SIGKILL of the parent the workers die too; an interrupted
benchmark exits non-zero and never counts a search it cut short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import finished_count

ARCHRANK = [sys.executable, "-c", "from archrank.cli import main; main()"]


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float = 15.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A small .npz task whose cells each train for about a second."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 1, 16)).astype(np.float32)
    y = (x[:, 0, :8].sum(1) > 0).astype(np.int64)
    path = tmp_path / "task.npz"
    np.savez(path, x_train=x[:64], y_train=y[:64], x_val=x[64:], y_val=y[64:])
    return path


def _catch_sigint() -> None:
    """Children start with SIGINT at its default: a suite launched in the background (nohup,
    `cmd &`) hands them an ignored SIGINT, which the CLI then keeps ignored on purpose."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_search(run_dir: Path, dataset: Path, budget: int = 40) -> subprocess.Popen:
    args = [*ARCHRANK, "search", "--oracle", "train", "--dataset", str(dataset),
            "--epochs", "60", "--strategy", "random", "--budget", str(budget),
            "--workers", "2", "--run-dir", str(run_dir)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "100"}, start_new_session=True,
                            preexec_fn=_catch_sigint)


def wait_running(proc: subprocess.Popen, run_dir: Path) -> list[int]:
    """Wait until the search has results and two workers; return the workers' ids."""
    db = run_dir / "run.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [p for p in children(proc.pid)
                   if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
        if db.exists() and finished_count(db) >= 1 and len(workers) >= 2:
            return workers
        time.sleep(0.1)
    _, err = proc.communicate(timeout=10) if proc.poll() is not None else ("", "")
    pytest.fail(f"the search did not get going: {err[-2000:]}")


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_search_stops_workers_and_says_how_to_resume(tmp_path, dataset, sig,
                                                                    status):
    run_dir = tmp_path / "run"
    proc = start_search(run_dir, dataset)
    workers = wait_running(proc, run_dir)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert f"resume with: archrank search --resume {run_dir}" in err
    assert wait_gone(workers) == []
    # What finished is kept: the run resumes from where it stopped.
    done = finished_count(run_dir / "run.sqlite")
    assert done >= 1


def test_workers_die_with_a_killed_parent(tmp_path, dataset):
    run_dir = tmp_path / "run"
    proc = start_search(run_dir, dataset)
    workers = wait_running(proc, run_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert wait_gone(workers) == [], "pool workers outlived their killed parent"


def test_interrupted_bench_search_exits_nonzero_and_keeps_finished_seeds(tmp_path, nb201_csv):
    out = tmp_path / "bench.json"
    args = [*ARCHRANK, "bench", "search", "--space", "nb201", "--bench", str(nb201_csv),
            "--metric", "cifar10_test", "--strategies", "random,gates", "--seeds", "3",
            "--budget", "100", "--full-budget", "--json", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "100"}, preexec_fn=_catch_sigint)
    # Wait for the random seeds to finish, then stop it during a (slower) GATES search.
    deadline = time.monotonic() + 120
    lines: list[str] = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "[3/6]" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = "".join(lines) + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "searches finished (a search cut short is never counted)" in err
    report = json.loads(out.read_text())
    assert report["interrupted"] is True
    finished = [ln for ln in err.splitlines() if ln.startswith("[")]
    seeds = sum(e["queries_to_optimum"]["seeds"] for e in report["strategies"].values())
    assert seeds == len(finished) < 6                     # only the searches that finished
    for entry in report["strategies"].values():           # each one ran its full budget
        assert entry["curve"][-1] is not None and len(entry["curve"]) == 100


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a 2-cell test set: NaN precision
def test_interrupted_bench_predictor_keeps_finished_fits(tmp_path, cli, monkeypatch):
    """In-process: the third fit is interrupted; the two finished ones are written."""
    from archrank.predictors.base import Predictor
    from test_options import CELLS

    table = tmp_path / "[bold]t[red].csv"              # markup in a path shown in the title
    table.write_text("arch,acc\n" + "".join(f"{c},{90 + i}\n" for i, c in enumerate(CELLS)))
    calls = {"n": 0}
    real_fit = Predictor.fit

    def fit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "fit", fit)
    out = tmp_path / "p.json"
    status, _, err = cli("bench", "predictor", "--space", "nb201", "--bench", table,
                         "--metric", "acc", "--predictors", "xgb", "--train-sizes", "2",
                         "--seeds", "3", "--json", out)
    assert status == 130, err
    assert "interrupted: 2 of 3 fits finished" in err and str(out) in err
    report = json.loads(out.read_text())
    assert report["interrupted"] is True and len(report["runs"]) == 2
    assert "Traceback" not in err
    # two predictors: the seed cut short after its first predictor is dropped, so both keep
    # the same seeds (a fresh start: the journal of the run above would lend it its fits)
    (tmp_path / "p.json.journal.jsonl").unlink()
    calls["n"] = -1
    status, _, err = cli("bench", "predictor", "--space", "nb201", "--bench", table,
                         "--metric", "acc", "--predictors", "xgb,rf", "--train-sizes", "2",
                         "--seeds", "3", "--json", out)
    assert status == 130 and "3 of 6 fits finished (1 whole seed kept)" in err, err
    report = json.loads(out.read_text())
    assert [(r["predictor"], r["seed"]) for r in report["runs"]] == [("xgb", 0), ("rf", 0)]
    assert all(r["seeds"] + r.get("seeds_without_tau", 0) == 1 for r in report["results"])
    # cut short in the first seed: a fit finished, no seed did. Said as such (it said "1 of 4
    # fits finished ...; nothing finished, p.json is left as it was"), the JSON left alone
    (tmp_path / "p.json.journal.jsonl").unlink()
    out.write_text("earlier")
    calls["n"] = 1  # the second fit is interrupted
    status, _, err = cli("bench", "predictor", "--space", "nb201", "--bench", table,
                         "--metric", "acc", "--predictors", "xgb,rf", "--train-sizes", "2",
                         "--seeds", "2", "--json", out)
    assert status == 130, err
    assert ("interrupted: 1 of 4 fits finished, no whole seed yet (only whole seeds are "
            f"written); {out} is left as it was; the same command resumes from its journal"
            in " ".join(err.split())), err
    assert "nothing finished" not in err and out.read_text() == "earlier"


def test_a_failed_search_keeps_the_finished_seeds_of_a_parallel_bench(nb201_csv, monkeypatch):
    """With --jobs > 1, one search failing (a worker killed for memory...) threw away every
    finished seed; now they travel with the error for --json."""
    from concurrent.futures import ThreadPoolExecutor

    import archrank.bench.search as bench
    from archrank.errors import FailedWithPartial
    from archrank.runs.config import SearchConfig

    real = bench.run_one

    def run_one(cfg, threads=None, stop_at_optimum=True):  # type: ignore[no-untyped-def]
        if cfg.seed == 2:
            raise MemoryError("worker killed")
        return real(cfg, threads, stop_at_optimum)

    monkeypatch.setattr(bench, "run_one", run_one)
    monkeypatch.setattr(bench, "process_pool", lambda jobs, threads, **kw: ThreadPoolExecutor(1))
    base = SearchConfig(space="nb201", bench=str(nb201_csv), metric="cifar10_test",
                        budget=10)
    for jobs in (2, 1):  # in worker processes or in this one alike
        with pytest.raises(FailedWithPartial, match=r"a search failed \(MemoryError: worker "
                                                    r"killed\); 2 of 3 searches finished"
                           ) as info:
            bench.bench_search(base, ["random"], 3, jobs=jobs, stop_at_optimum=False)
        assert info.value.partial["interrupted"] is True
        assert info.value.partial["strategies"]["random"]["queries_to_optimum"]["seeds"] == 2


def test_bench_predictor_can_leave_the_training_cells_twins_out(nb201_csv):
    """nb201.csv holds 15,625 rows of 8,765 distinct cells: --drop-twins scores only rows
    unlike every training row."""
    from archrank.bench.predictor import bench_predictors, train_split
    from archrank.spaces import get_space
    from archrank.tables import load_benchmark

    kept = bench_predictors("nb201", str(nb201_csv), "cifar10_test", ["mlp"], [100], 1,
                            params={"mlp": {"epochs": 2}})
    dropped = bench_predictors("nb201", str(nb201_csv), "cifar10_test", ["mlp"], [100], 1,
                               params={"mlp": {"epochs": 2}}, drop_twins=True)
    space = get_space("nb201")
    hashes = np.asarray(space.hash_many(load_benchmark(nb201_csv, space).archs))
    train, test = train_split(len(hashes), 100, 0)
    twins = int(np.isin(hashes[test], hashes[train]).sum())
    assert twins > 1000  # a fifth of the test rows (review, session 10)
    assert kept.runs[0]["test_size"] == len(test)
    assert dropped.runs[0]["test_size"] == len(test) - twins
    assert dropped.to_json()["settings"]["drop_twins"] is True


def test_an_interrupted_command_ignores_a_second_ctrl_c_while_it_exits(monkeypatch):
    """Worker pools' finalizers run at exit; a second Ctrl-C there printed a traceback."""
    import signal

    import archrank.cli as cli_mod

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for status, ignored in ((130, True), (2, False)):
            for s, h in before.items():
                signal.signal(s, h)
            monkeypatch.setattr(cli_mod, "run", lambda argv=None, status=status: status)
            with pytest.raises(SystemExit) as exc:
                cli_mod.main([])
            assert exc.value.code == status
            assert (signal.getsignal(signal.SIGINT) is signal.SIG_IGN) == ignored
    finally:
        for s, h in before.items():
            signal.signal(s, h)
