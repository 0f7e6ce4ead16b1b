"""``archrank spaces`` and ``archrank space ...``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.table import Table

from archrank.cli.app import app, console, space_app
from archrank.cli.app import err as _err
from archrank.errors import ArchrankError
from archrank.files import check_output, open_output
from archrank.spaces import SPACES, SearchSpace, get_space


@app.command("spaces")
def list_spaces() -> None:
    """List the search spaces with their sizes.

    Example: archrank spaces
    """
    table = Table(title="search spaces")
    table.add_column("name")
    table.add_column("op on")
    table.add_column("cells", justify="right")
    table.add_column("description")
    for name in SPACES:
        space = get_space(name)
        size = space.size
        shown = f"{size:,}" if size else getattr(space, "approx_size", "?")
        table.add_row(name, space.op_on, shown, space.description)
    console.print(table)


def _json_lines(space: SearchSpace) -> Iterator[str]:
    """One JSON object per cell: the space's fast path when it has one, else ``to_record``."""
    fast = getattr(space, "enumerate_json_lines", None)
    if fast is not None:
        return fast()
    return (json.dumps(space.to_record(arch)) for arch in space.enumerate())


@space_app.command("enumerate")
def enumerate_space(
    space_name: str = typer.Argument(..., metavar="SPACE", help="Search space (archrank spaces)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="JSON Lines file to write (default: SPACE.jsonl here)."
    ),
) -> None:
    """Write every cell of SPACE to a JSON Lines file, one object per cell.

    Each line holds the cell's canonical `hash` and its fields: `adjacency` and `ops` for
    nb101, `arch` for nb201, `links` and `ops` for nbgraph (darts, about 10^18 genotypes,
    cannot be enumerated: sample it).
    The first nb101 enumeration takes about 20 s on 2 cores and is cached
    in the user cache dir (ARCHRANK_CACHE_DIR overrides it); later runs reuse it.

    Example: archrank space enumerate nb101 --out nb101.jsonl
    """
    space = get_space(space_name)
    target = check_output(Path(out) if out is not None else Path(f"{space_name}.jsonl"))
    cache = getattr(space, "cache_path", None)
    cached = isinstance(cache, Path) and cache.is_file()
    start = time.perf_counter()
    try:
        with _err.status(f"enumerating {space_name}..."):
            lines = _json_lines(space)
            count = 0
            with open_output(target, "w", encoding="utf-8") as fh:
                for line in lines:
                    fh.write(line)
                    fh.write("\n")
                    count += 1
    except NotImplementedError:
        raise ArchrankError(f"space {space_name!r} cannot be enumerated") from None
    seconds = time.perf_counter() - start
    if isinstance(cache, Path):
        state = "reused" if cached else "written" if cache.is_file() else (
            "not written: its folder cannot be written, so the next run enumerates again")
        source = f"enumeration cache {cache} ({state})"
        _err.print(source, soft_wrap=True)
    console.print(f"wrote {count} cells of {space_name} to {target} in {seconds:.1f} s",
                  soft_wrap=True)
