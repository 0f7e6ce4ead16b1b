"""Output files: checked before any work, regular files replaced atomically, anything else
(a device, a FIFO) written in place, symbolic links kept (issue 16)."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from archrank.files import check_output, open_output
from conftest import one_line_error


def test_device_node_is_written_in_place(cli):
    before = os.stat("/dev/null")
    status, out, _ = cli("space", "enumerate", "nb201", "--out", "/dev/null")
    assert status == 0, out
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_fifo_is_written_in_place(tmp_path, cli):
    fifo = tmp_path / "cells.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    status, out, _ = cli("space", "enumerate", "nb201", "--out", fifo)
    reader.join(10)
    assert status == 0, out
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)          # still a FIFO, not a regular file
    assert got and got[0].count(b"\n") == 15625


def test_symlink_stays_a_link_and_its_target_is_written(tmp_path, cli):
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target.name)
    status, out, _ = cli("space", "enumerate", "nb201", "--out", link)
    assert status == 0, out
    assert link.is_symlink() and os.readlink(link) == "real.jsonl"
    assert target.read_text().count("\n") == 15625
    assert stat.S_IMODE(target.stat().st_mode) == 0o640       # permission bits kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "real.jsonl"]


def test_regular_file_replaced_atomically_and_kept_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), open_output(path) as fh:
        fh.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]     # no temporary left
    with open_output(path) as fh:
        fh.write("new")
    assert path.read_text() == "new"


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    """A writer killed outright leaves its temporary file (SIGKILL runs no clean-up); the
    next write of that file removes those of dead processes, not those of live ones."""
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    path = tmp_path / "ck.pt"
    orphan = tmp_path / f".ck.pt.{dead}.0badf00d.tmp"
    fresh = tmp_path / f".ck.pt.{dead}.1badf00d.tmp"
    live = tmp_path / f".ck.pt.{os.getppid()}.2badf00d.tmp"
    for p in (orphan, fresh, live):
        p.write_bytes(b"x" * 100)
    os.utime(orphan, (1_000_000_000, 1_000_000_000))  # long untouched
    os.utime(live, (1_000_000_000, 1_000_000_000))
    with open_output(path, "wb") as fh:
        fh.write(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ck.pt", fresh.name, live.name])  # a fresh one may be another namespace's writer


@pytest.mark.parametrize("argv", [
    ["space", "enumerate", "nb201", "--out", "{missing}/x.jsonl"],
    ["zc", "--n", "2", "--out", "{missing}/x.csv"],
    ["bench", "check", "{table}", "--space", "nb201", "--json", "{missing}/x.json"],
    ["bench", "search", "--space", "nb201", "--bench", "{table}", "--metric", "acc",
     "--space-from-bench", "--seeds", "1", "--json", "{missing}/x.json"],
    ["bench", "predictor", "--space", "nb201", "--bench", "{table}", "--metric", "acc",
     "--json", "{missing}/x.json"],
    ["search", "--space", "nb201", "--bench", "{table}", "--metric", "acc",
     "--space-from-bench", "--run-dir", "{tmp}/run", "--json", "{missing}/x.json"],
    ["runs", "export", "{tmp}", "--out", "{tmp}"],
])
def test_output_paths_checked_before_any_work(tmp_path, cli, argv):
    table = tmp_path / "t.csv"
    table.write_text("arch,acc\n|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|"
                     "nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|,1.0\n")
    fill = {"missing": tmp_path / "no" / "such", "table": table, "tmp": tmp_path}
    t0 = time.perf_counter()
    status, _, err = cli(*[a.format(**fill) for a in argv])
    line = one_line_error(status, err)
    assert ("does not exist" in line) or ("is a directory" in line)
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "no").exists()          # no folder created silently
    assert not (tmp_path / "run").exists()         # no run directory either


def test_check_output_rejects_directory_and_missing_folder(tmp_path):
    with pytest.raises(Exception, match="is a directory"):
        check_output(tmp_path, "--json")
    with pytest.raises(Exception, match="does not exist"):
        check_output(tmp_path / "a" / "b.json", "--json")
    assert check_output(tmp_path / "b.json") == Path(tmp_path / "b.json")


def test_the_working_folder_is_called_a_folder_and_an_empty_path_empty(tmp_path,
                                                                       monkeypatch):
    """model.save(".") said "an empty path (give a file name)"."""
    from archrank.errors import ArchrankError
    from archrank.predictors.base import save_torch_file

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArchrankError, match=r"^\.: is the working folder \(or an empty "
                       r"path\); give a file name$"):
        save_torch_file({}, ".")
    with pytest.raises(ArchrankError, match=r"^--out \.: is the working folder"):
        check_output(Path(""))
    with pytest.raises(ArchrankError, match=r"^--out: an empty path \(give a file name\)$"):
        check_output("")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_read_only_output_rejected_up_front(tmp_path, cli):
    path = tmp_path / "ro.jsonl"
    path.write_text("")
    path.chmod(0o444)
    status, _, err = cli("space", "enumerate", "nb201", "--out", path)
    assert "not writable" in one_line_error(status, err)


def test_an_output_never_overwrites_the_commands_own_input(tmp_path, cli, nb201_csv):
    """`runs export RUN --out RUN/run.sqlite`, `search --bench T --json T`, `oneshot fit CKPT
    --out CKPT` replaced the input with their output and exited 0."""
    table = tmp_path / "t.csv"
    table.write_bytes(nb201_csv.read_bytes()[:4000].rsplit(b"\n", 1)[0] + b"\n")
    run = tmp_path / "run"
    base = ["search", "--space", "nb201", "--bench", table, "--metric", "cifar10_test",
            "--space-from-bench", "--strategy", "random", "--budget", "3"]
    assert cli(*base, "--run-dir", run)[0] == 0
    db = next(p for p in run.iterdir() if p.suffix == ".sqlite")
    before = {p: p.read_bytes() for p in (table, db)}
    for argv in (["runs", "export", run, "--csv", "--out", db],
                 ["report", run, "--out", db],
                 [*base, "--run-dir", tmp_path / "run2", "--json", table],
                 ["bench", "check", table, "--space", "nb201", "--json", table]):
        status, _, err = cli(*argv)
        line = one_line_error(status, err)
        assert "overwritten" in line, line
    assert all(p.read_bytes() == b for p, b in before.items())
    # a file next to the run's database is fine, also when it exists (an earlier export)
    for _ in range(2):
        assert cli("runs", "export", run, "--csv", "--out", run / "evals.csv")[0] == 0
        assert cli("report", run, "--out", run / "report.html")[0] == 0
    status, out, err = cli("report", run, "-o", "-")  # the HTML on standard output
    assert status == 0 and out.startswith("<!DOCTYPE html>") and "standard output" in err
    for argv in (["bench", "speed", "--bench", table, "--json", table, "--no-nb101",
                  "--no-darts"],
                 ["zc", "--dataset", table, "--n", "2", "--out", table]):
        line = one_line_error(*cli(*argv)[::2])
        assert "overwritten" in line, line
    assert table.read_bytes() == before[table]


def test_data_on_standard_output_is_not_mixed_with_status_lines(tmp_path, cli, nb201_csv):
    """With `--out -` / `--json -` the status lines and tables went to stdout too."""
    status, out, err = cli("space", "enumerate", "nb201", "--out", "-")
    assert status == 0 and "wrote 15625 cells" in err
    assert all(json.loads(line) for line in out.splitlines())
    status, out, err = cli("search", "--space", "nb201", "--bench", nb201_csv, "--metric",
                           "cifar10_test", "--strategy", "random", "--budget", "3",
                           "--run-dir", tmp_path / "r", "--json", "-")
    assert status == 0, err
    assert json.loads(out)["budget"] == 3
    status, out, _ = cli("space", "enumerate", "nb201", "--out", tmp_path / "c.jsonl")
    assert status == 0 and "wrote 15625 cells" in out  # otherwise the console is stdout


def test_every_journal_reads_a_torn_last_line_as_unfinished(tmp_path):
    from archrank.errors import ArchrankError
    from archrank.files import read_journal

    path = tmp_path / "j.jsonl"
    path.write_text('{"format": 1}\n{"a": 1}\n{"a": 2')  # killed while appending
    assert read_journal(path) == ({"format": 1}, [{"a": 1}], True)
    path.write_text('{"form')  # killed while the header was written
    assert read_journal(path) == (None, [], False)
    path.write_text('{"format": 1}\nnot json\n{"a": 1}\n')
    with pytest.raises(ArchrankError, match="line 2: not JSON"):
        read_journal(path)


def test_a_released_lock_leaves_no_file_and_a_held_one_refuses(tmp_path):
    """A finished job removes its hidden lock file; a second taker is refused while it is
    held, also when the lock lives in a local that goes out of scope (CLI commands)."""
    import pytest

    from archrank.errors import ArchrankError
    from archrank.files import hold_lock, lock_path, locked

    out = tmp_path / "scores.csv"
    lock = hold_lock(out, "the score table")
    assert lock is not None and lock_path(out).exists()
    with pytest.raises(ArchrankError, match=r"scores\.csv: the score table is in use"):
        hold_lock(out, "the score table")
    lock.close()
    assert not lock_path(out).exists()

    def command() -> None:
        held = hold_lock(out, "the score table")  # noqa: F841 (held till the end)
        assert lock_path(out).exists()

    command()
    assert not lock_path(out).exists()
    with locked(out, "the score table"):
        assert lock_path(out).exists()
    assert not lock_path(out).exists()
    # A stale file (a killed holder) is taken over and removed in turn.
    lock_path(out).write_text("")
    hold_lock(out, "the score table").close()
    assert not lock_path(out).exists()
    # a finished job's journal goes without touching a lock another job holds now
    from archrank.bench.journal import discard

    journal = tmp_path / "b.json.journal.jsonl"
    journal.write_text("")
    held = hold_lock(journal, "the bench journal")
    discard(journal)
    assert not journal.exists() and lock_path(journal).exists()
    with pytest.raises(ArchrankError, match="in use"):
        hold_lock(journal, "the bench journal")
    held.close()


def test_paths_naming_a_descriptor_write_through_it(tmp_path, capsys):
    """/dev/stdout followed is the file `>>` appends to (replaced by an atomic rename: its
    earlier lines lost) or a pipe's name (no such file): written through the descriptor."""
    from archrank.files import open_descriptor, write_output

    assert [open_descriptor(p) for p in ("/dev/stdout", "/dev/stderr", "/dev/fd/5",
                                         "/proc/self/fd/1", "/dev/null", "out.csv")] == \
        [1, 2, 5, 1, None, None]
    assert check_output("/dev/stdout", "--out") == Path("/dev/stdout")
    write_output("/dev/stdout", "data\n")
    assert capsys.readouterr().out == "data\n"
    # nothing can sit beside a stream: no journal, and a truth table is refused there
    from archrank.bench.journal import journal_for
    from archrank.errors import ArchrankError
    from archrank.truth import check_table_path

    assert journal_for("/dev/stdout") is None and journal_for("-") is None
    with pytest.raises(ArchrankError, match="a truth table is a file"):
        check_table_path("/dev/stdout")
    kept = tmp_path / "log.txt"
    kept.write_text("precious\n")
    with open(kept, "a") as fh:
        write_output(f"/dev/fd/{fh.fileno()}", "more\n")
    assert kept.read_text() == "precious\nmore\n"


def test_two_outputs_to_standard_output_and_a_checkpoint_there_are_refused(cli):
    code, _, err = cli("zc", "--n", "2", "--proxies", "params", "--out", "-", "--json", "-")
    assert code == 2 and "two outputs to standard output" in err
    code, _, err = cli("oneshot", "train", "--out", "-", "--epochs", "1")
    assert code == 2 and "a checkpoint is a file" in err


def test_a_symlinked_file_written_atomically_stays_a_link(tmp_path):
    from archrank.files import atomic_path

    real, link = tmp_path / "real.npz", tmp_path / "link.npz"
    real.write_text("old")
    link.symlink_to(real)
    with atomic_path(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_full_disk_while_journaling_is_one_line(tmp_path, monkeypatch):
    import builtins

    from archrank.bench.journal import BenchJournal
    from archrank.errors import ArchrankError

    journal = BenchJournal(tmp_path / "j.jsonl", "bench x", {"a": 1})
    real_open = builtins.open

    def full(path, mode="r", *a, **k):  # type: ignore[no-untyped-def]
        if str(path).endswith("j.jsonl") and "a" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(ArchrankError, match="cannot write the journal \\(No space left on "
                       "device\\); the units before this one are kept"):
        journal.add(["unit"], {"x": 1})
    journal.close()


def test_a_cache_folder_that_cannot_be_written_still_gives_the_data(tmp_path, monkeypatch):
    import archrank.datasets as datasets

    monkeypatch.setenv("ARCHRANK_CACHE_DIR", str(tmp_path))

    def refuse(path):  # type: ignore[no-untyped-def]
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("archrank.cache.atomic_path", refuse)
    with pytest.warns(UserWarning, match="cannot cache the generated MNIST-1D \\(Read-only"):
        data = datasets.load_dataset("mnist1d:num_samples=100")
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 100


def test_a_run_directory_whose_creation_was_cut_short_is_created_again(tmp_path, cli,
                                                                          nb201_csv):
    run_dir = tmp_path / "rd"
    run_dir.mkdir()
    (run_dir / "run.sqlite").write_bytes(b"")  # killed between connect and the config
    code, _, err = cli("search", "--space", "nb201", "--bench", nb201_csv, "--metric",
                       "cifar10_test", "--strategy", "random", "--budget", "3",
                       "--run-dir", run_dir)
    assert code == 0, err
    code, _, err = cli("search", "--resume", run_dir)
    assert code == 0, err


def test_searches_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    from archrank.cli.search import _create_default

    monkeypatch.chdir(tmp_path)
    first, a = _create_default(Path("runs/x"), {"space": "nb201"}, None)
    second, b = _create_default(Path("runs/x"), {"space": "nb201", "metric": "m"}, None)
    first.close()
    second.close()
    assert (a, b) == (Path("runs/x"), Path("runs/x-2"))


def test_a_bench_holds_its_output_till_it_is_written(cli, tmp_path):
    """bench predictor / bench search / zc hold their output from the start to the writing,
    so that a second run on the same file is refused at once, not let in between the last
    unit and the writing (where the first one's journal went away under it)."""
    from archrank.files import hold_lock
    from conftest import one_line_error

    out = tmp_path / "out.json"
    held = hold_lock(out, "a test")
    for argv in (["bench", "predictor", "--space", "nb201", "--bench", tmp_path / "t.csv",
                  "--metric", "val_acc", "--predictors", "gates", "--json", out],
                 ["bench", "search", "--space", "nb201", "--bench", tmp_path / "t.csv",
                  "--metric", "val_acc", "--strategies", "random", "--json", out]):
        line = one_line_error(*cli(*argv)[::2])
        assert "out.json: this bench's --json is in use" in line, line
    line = one_line_error(*cli("zc", "--space", "nb201", "--dataset", "digits", "--n", "3",
                               "--out", out)[::2])
    assert "out.json: this score table (--out) is in use" in line, line
    held.close()


def test_a_model_save_cut_short_keeps_the_earlier_file(tmp_path, monkeypatch):
    """Predictors and auto-encoders save through an atomic rename: a save killed midway
    left a truncated model where a whole one was; a stream is no place for a model."""
    import numpy as np
    import torch

    from archrank.errors import ArchrankError
    from archrank.predictors.base import make_predictor
    from archrank.spaces import get_space

    space = get_space("nb201")
    cells = space.sample(20, np.random.default_rng(0))
    model = make_predictor("rf", space, seed=0).fit(cells, np.arange(20.0))
    path = tmp_path / "m.pt"
    model.save(path)
    before = path.read_bytes()

    def cut_short(obj, fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", cut_short)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    with pytest.raises(ArchrankError, match="not to a stream"):
        model.save("/dev/stdout")
    fifo = tmp_path / "fifo"  # a special file is written in place, never replaced (the
    os.mkfifo(fifo)  # first atomic version turned /dev/null into a regular file)
    reader = threading.Thread(target=lambda: fifo.read_bytes())
    reader.start()
    model.save(fifo)
    reader.join(10)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
