"""A real-training search killed with SIGKILL resumes without retraining finished cells."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archrank.runs import RunStore
from conftest import finished_count

ARCHRANK = Path(sys.executable).with_name("archrank")


@pytest.mark.slow
@pytest.mark.skipif(not ARCHRANK.exists(), reason="the archrank script is not installed")
def test_killed_training_search_resumes_without_retraining(tmp_path):
    pytest.importorskip("sklearn")
    budget = 6
    run_dir = tmp_path / "train-run"
    args = [str(ARCHRANK), "search", "--oracle", "train", "--dataset", "digits",
            "--epochs", "1", "--strategy", "random", "--budget", str(budget), "--seed", "1",
            "--run-dir", str(run_dir)]
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = run_dir / "run.sqlite"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and finished_count(db) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"search ended before it was killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with RunStore.open(run_dir) as store:
        trained = {r.hash: r for r in store.records() if r.done}
    assert 2 <= len(trained) < budget

    resumed = subprocess.run([str(ARCHRANK), "search", "--resume", str(run_dir)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "val_acc" in resumed.stdout and "test_acc" in resumed.stdout
    with RunStore.open(run_dir) as store:
        after = store.records()
    assert len(after) == budget and all(r.done for r in after)
    assert len({r.hash for r in after}) == budget  # no cell trained twice
    for rec in after:  # the cells trained before the kill were not trained again
        if rec.hash in trained:
            old = trained[rec.hash]
            assert (rec.objective, rec.started, rec.finished) == (
                old.objective, old.started, old.finished)
