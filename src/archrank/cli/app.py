"""The typer applications every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="archrank",
    help="Predictor-based neural architecture search: rank a search space from a few "
    "evaluated architectures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
space_app = typer.Typer(help="Inspect and enumerate one search space.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmark tables and benchmarks of archrank itself.",
                        no_args_is_help=True)
app.add_typer(space_app, name="space")
app.add_typer(bench_app, name="bench")
oneshot_app = typer.Typer(help="Weight-sharing NAS: train a supernet, fit its scores over the "
                          "space, select under hardware constraints.", no_args_is_help=True)
app.add_typer(oneshot_app, name="oneshot")
