"""The typer applications every command module registers on, and the consoles they print to.

Both consoles have rich markup switched off: text from the user (paths, column names, run
directories) is printed as given, never read as ``[style]`` markup. Styles are given with
``style=`` instead.
"""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)


def _version(value: bool) -> None:
    if value:
        from archrank import __version__

        typer.echo(f"archrank {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="archrank",
    help="Predictor-based neural architecture search: rank a search space from a few "
    "evaluated architectures.\n\n"
    "Examples:\n\n"
    "  archrank search --space nb201 --bench ../shared/data/nb201.csv --metric cifar10_test\n\n"
    "  archrank search --resume runs/demo\n\n"
    "  archrank bench predictor --space nb201 --bench ../shared/data/nb201.csv "
    "--metric cifar10_test",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print archrank's version and exit."),
) -> None:
    """Predictor-based neural architecture search."""


space_app = typer.Typer(
    help="Inspect and enumerate one search space.\n\n"
    "Example:\n\n  archrank space enumerate nb201 --out nb201.jsonl",
    no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmark tables and benchmarks of archrank itself.\n\n"
    "Examples:\n\n"
    "  archrank bench check ../shared/data/nb201.csv --space nb201\n\n"
    "  archrank bench search --space nb201 --bench ../shared/data/nb201.csv "
    "--metric cifar10_test --seeds 5\n\n"
    "  archrank bench predictor --space nb201 --bench ../shared/data/nb201_zc.csv "
    "--filter dataset=cifar10 --metric val_acc",
    no_args_is_help=True)
app.add_typer(space_app, name="space")
app.add_typer(bench_app, name="bench")
