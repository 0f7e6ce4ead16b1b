"""Command-line interface: ``archrank --help``.

User errors (``ArchrankError``) are printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import sys

from rich.console import Console

# Importing the command modules registers their commands on the apps.
from archrank.cli import bench as _bench  # noqa: F401  (registration)
from archrank.cli import oneshot as _oneshot  # noqa: F401
from archrank.cli import predictor as _predictor  # noqa: F401
from archrank.cli import search as _search  # noqa: F401
from archrank.cli import spaces as _spaces  # noqa: F401
from archrank.cli import truth as _truth  # noqa: F401
from archrank.cli import zc as _zc  # noqa: F401
from archrank.cli.app import app
from archrank.errors import ArchrankError

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``archrank`` script."""
    try:
        app(args=argv, standalone_mode=True)
    except ArchrankError as exc:
        _err.print(f"[bold red]error:[/] {exc}", markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _err.print("interrupted")
        sys.exit(130)
