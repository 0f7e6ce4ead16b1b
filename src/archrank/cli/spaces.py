"""``archrank spaces`` and ``archrank space ...``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from archrank.cli.app import app
from archrank.spaces import SPACES, get_space

console = Console()


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
        table.add_row(name, space.op_on, f"{size:,}" if size else "?", space.description)
    console.print(table)
