"""``python -m archrank`` (and ``torchrun -m archrank``), and the ``archrank`` script: the
command-line interface.

``run`` imports the interface inside a guard: importing typer, rich and every command takes
seconds on a loaded machine, and a Ctrl-C in that window is an interruption like any other
(exit 130, one line), not a traceback.
"""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from archrank.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    run()
