"""``archrank spaces`` and ``archrank space enumerate``, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archrank.cache import ENV_VAR
from archrank.cli import main
from archrank.cli.app import app
from archrank.spaces import get_space


def _archrank(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV_VAR: str(cache)}
    return subprocess.run(
        [sys.executable, "-c", "from archrank.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_spaces_lists_nb101_with_its_size() -> None:
    result = CliRunner().invoke(app, ["spaces"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "nb101" in x)
    assert "423,624" in line and "node" in line


def test_enumerate_help_has_an_example() -> None:
    result = CliRunner().invoke(app, ["space", "enumerate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example: archrank space enumerate nb101 --out nb101.jsonl" in result.output


def test_enumerate_nb101_writes_every_cell_then_reuses_the_cache(
    tmp_path: Path, shared_cache: Path, nb101_csv: Path
) -> None:
    out = tmp_path / "nb101.jsonl"
    first = _archrank(["space", "enumerate", "nb101", "--out", str(out)], shared_cache)
    assert first.returncode == 0, first.stderr
    assert "wrote 423624 cells of nb101" in first.stdout
    with open(out) as fh:
        lines = fh.readlines()
    assert len(lines) == 423_624
    assert all(line.startswith('{"hash": "') for line in lines)
    hashes = [line[10:42] for line in lines]  # '{"hash": "<32 hex>", ...'
    assert len(set(hashes)) == 423_624
    with open(nb101_csv) as fh:
        next(fh)
        table = {row.split(",", 1)[0] for row in fh}
    assert table <= set(hashes)
    space = get_space("nb101")
    for line in lines[:: 423_624 // 500]:
        record = json.loads(line)
        assert set(record) == {"hash", "adjacency", "ops"}
        assert isinstance(record["adjacency"], list) and isinstance(record["ops"], list)
        cell = space.from_record(record)
        assert space.hash(cell) == record["hash"]
        assert json.dumps(space.to_record(cell)) == line.rstrip("\n")

    again = _archrank(["space", "enumerate", "nb101", "-o", str(out)], shared_cache)
    assert again.returncode == 0, again.stderr
    assert "(reused)" in again.stderr and "wrote 423624 cells" in again.stdout
    assert len(out.read_bytes().splitlines()) == 423_624
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_enumerate_other_spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command is generic: any space whose enumerate() works (nb201 when present)."""
    try:
        space = get_space("nb201")
    except ImportError:
        pytest.skip("nb201 space not available yet")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["space", "enumerate", "nb201"])
    assert result.exit_code == 0, result.output
    assert f"wrote {space.size} cells of nb201 to nb201.jsonl" in result.output
    rows = [json.loads(x) for x in (tmp_path / "nb201.jsonl").read_text().splitlines()]
    assert len(rows) == space.size and "arch" in rows[0] and "hash" in rows[0]
    # one line per cell; equivalent nb201 cells share a canonical hash
    assert len({r["arch"] for r in rows}) == len(rows)
    assert all(len(r["hash"]) == 32 for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["space", "enumerate", "nb999"], "unknown search space 'nb999'"),
        (["space", "enumerate", "nb101", "--out", "/nonexistent/dir/x.jsonl"], "does not exist"),
    ],
)
def test_enumerate_errors_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_space_that_cannot_enumerate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from archrank import spaces
    from archrank.spaces.node_cell import NodeCellSpace

    big = NodeCellSpace(ops=("a", "b"), max_vertices=9, max_edges=12, name="big")
    monkeypatch.setitem(spaces.SPACES, "big", lambda: big)
    out = tmp_path / "big.jsonl"
    try:
        with pytest.raises(SystemExit) as info:
            main(["space", "enumerate", "big", "--out", str(out)])
    finally:
        get_space.cache_clear()
    assert info.value.code == 2
    assert "too large to enumerate" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
