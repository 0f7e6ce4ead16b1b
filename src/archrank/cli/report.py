"""``archrank report``: one self-contained HTML page from runs and bench results."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from archrank.cli.app import app, err
from archrank.files import check_output


@app.command("report")
def report(
    paths: list[Path] = typer.Argument(..., help="Run directories, JSON files of the bench "
                                       "commands (--json) and oneshot fit score tables."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    title: str | None = typer.Option(None, "--title", help="Page title."),
    scatter: str | None = typer.Option(
        None, "--scatter", help="Predicted-vs-true scatter for PREDICTOR:SIZE (default: the "
        "best mean Kendall tau at the largest training size)."),
    top: int = typer.Option(10, "--top", min=1, help="Rows of the top-cells table of runs."),
) -> None:
    """Write one HTML report (plots, tables, cells drawn) that opens offline in any browser.

    Takes any mix of run directories (also while a search is still writing them: they are
    read from a consistent snapshot, without a lock), the JSON files of `bench predictor`,
    `bench search`, `bench oneshot` and `bench oneshot-search`, and the score tables of
    `oneshot fit` (CSV); the kinds are listed in docs/report.md.

    Example:
      archrank report runs/rea-0 runs/rea-1 search.json predictors.json --out report.html
    """
    from archrank.report import build_report

    check_output(out, "--out", paths)
    start = time.perf_counter()
    written = build_report(paths, out, title=title, scatter=scatter, top=top)
    size = "" if str(written) == "-" else f"{written.stat().st_size / 1024:.0f} KiB, "
    err.print(f"wrote {'standard output' if str(written) == '-' else written} ({size}"
              f"{time.perf_counter() - start:.1f} s)")
