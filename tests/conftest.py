"""Shared fixtures: the real benchmark tables under ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import pytest

# One cache directory for the whole test session (and the subprocesses it starts), so tests
# never read or write the user's cache and pay a cold NB101 enumeration at most once.
os.environ.setdefault("ARCHRANK_CACHE_DIR", tempfile.mkdtemp(prefix="archrank-test-cache-"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """Path of a shared benchmark table, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"benchmark table {name} not found under {SHARED_DATA} (../shared absent)")
    return path


@pytest.fixture
def nb201_csv() -> Path:
    return shared_file("nb201.csv")


@pytest.fixture
def nb101_csv() -> Path:
    return shared_file("nb101_10k.csv")


@pytest.fixture
def nb201_zc_csv() -> Path:
    return shared_file("nb201_zc.csv")


@pytest.fixture(scope="session")
def nb201():
    from archrank.spaces import get_space

    return get_space("nb201")


@pytest.fixture(scope="session")
def nb101():
    from archrank.spaces import get_space

    return get_space("nb101")


@pytest.fixture(scope="session")
def nb201_all(nb201):
    """Dense graph tensors of all 15,625 NAS-Bench-201 cells."""
    return nb201.to_graphs(nb201.enumerate())


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    """The test session's archrank cache directory (NB101 enumeration, NB201 hashes)."""
    return Path(os.environ["ARCHRANK_CACHE_DIR"])


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: a second intra-op thread only adds synchronisation (and on a busy machine
    makes these tests many times slower). Use with ``pytest.mark.usefixtures``."""
    from archrank.predictors.neural import torch_threads

    with torch_threads(1):
        yield


def finished_count(db: Path) -> int:
    """Evaluations of a live run database that are no longer pending, read without a lock
    (0 while the file is not readable yet)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM evaluations WHERE status != 'pending'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the CLI in-process through its entry function: ``cli(*argv) -> (status, out, err)``
    (what the ``archrank`` script prints and the exit status it would end with); wide
    terminal, so tables are not wrapped."""
    from archrank.cli import run

    monkeypatch.setenv("COLUMNS", "200")

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = run([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return call


def assert_refuses_foreign_cells(space, calls, good) -> None:
    """Each of ``calls`` refuses the text of ``good`` (with a pointer to ``space.parse``) and
    an nb201 cell with one ``InvalidArchitecture`` naming the cell type it expected."""
    import re

    import numpy as np

    from archrank.errors import InvalidArchitecture
    from archrank.spaces import get_space

    kind = type(good).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    nb201_cell = get_space("nb201").sample(1, np.random.default_rng(0))[0]
    for call in calls:
        with pytest.raises(InvalidArchitecture, match=re.escape(
                f"expected {article} {kind} of space {space.name}, got str (read text with "
                f"get_space('{space.name}').parse)")):
            call(space.format(good))
        with pytest.raises(InvalidArchitecture, match=r"got EdgeCell$"):
            call(nb201_cell)


def one_line_error(status: int, err: str) -> str:
    """Assert a user error as the CLI must report it (exit 2, one ``error:`` line, no
    traceback) and return the line."""
    assert status == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in lines[0], err
    return lines[0]
