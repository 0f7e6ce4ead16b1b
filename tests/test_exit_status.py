"""The CLI's exit statuses (README "Exit status"): each outcome has its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from archrank.cli.app import BROKEN_PIPE, CHECK_FAILED, INTERNAL_ERROR


def test_statuses_are_distinct() -> None:
    assert len({0, CHECK_FAILED, 2, 130, 143, BROKEN_PIPE, INTERNAL_ERROR}) == 7
    assert (CHECK_FAILED, BROKEN_PIPE, INTERNAL_ERROR) == (1, 141, 70)


def test_a_bug_exits_70_and_says_it_is_a_bug(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("archrank.cli.spaces.get_space", broken)
    monkeypatch.delenv("ARCHRANK_TRACEBACK", raising=False)
    status, _out, err = cli("spaces")
    assert status == 70, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("error: internal error (a bug in archrank")
    assert "RuntimeError: boom" in lines[0]


def test_a_failed_check_exits_1_not_2(cli, tmp_path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("arch,acc\n|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|"
                     "none~2|,1.0\nnot a cell,2.0\n")
    status, _out, err = cli("bench", "check", table, "--space", "nb201")
    assert status == 1, err


def test_a_reader_that_stops_reading_ends_quietly_with_141(tmp_path) -> None:
    """`archrank space enumerate nb201 -o - | head -1`: was exit 1, like a failed check."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "archrank", "space", "enumerate", "nb201", "-o", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as head does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert first.startswith(b"{")
    assert "Traceback" not in err and "error" not in err and "Exception" not in err


def test_a_command_started_with_standard_output_closed(cli, monkeypatch) -> None:
    """`archrank spaces >&-` (Python's sys.stdout is None): the final flush of standard
    output, which makes a reader that quit exit 141, must not turn this into a bug (70)."""
    monkeypatch.setattr("sys.stdout", None)
    status, _, err = cli("spaces")
    assert status == 0, err
