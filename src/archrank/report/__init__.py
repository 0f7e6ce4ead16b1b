"""Reports: one self-contained HTML page (``archrank report``) or plot files (``--plot DIR``)
from run directories and the JSON the bench commands write.

- ``kinds``: the registry of input kinds (``run``, ``bench-predictor``, ``bench-search``, and
  any later kind) and reading a path by its kind;
- ``runs``, ``predictor``, ``search``: one module per kind, reading and rendering it;
- ``figures``: the matplotlib plots; ``cells``: cells drawn as SVG; ``html``: the page;
- ``browser``: a headless Chromium driven over the DevTools protocol (tests, screenshots).

Importing this package does not import matplotlib or torch; the functions below do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archrank.errors import ArchrankError
from archrank.files import write_output


def build_report(paths: Sequence[str | Path], out: str | Path, *, title: str | None = None,
                 scatter: str | None = None, top: int = 10) -> Path:
    """Read every path, render its sections and write one HTML file to ``out``."""
    from archrank.report.html import render_html
    from archrank.report.kinds import ReportOptions, read_input, render

    if not paths:
        raise ArchrankError("give at least one run directory or bench JSON file")
    from archrank.report.figures import reset_colours

    paths = _distinct(paths)
    inputs = [read_input(p) for p in paths]
    if scatter is not None and not any(i.kind == "bench-predictor" for i in inputs):
        raise ArchrankError("--scatter draws a bench predictor JSON's samples; none is given")
    reset_colours()
    sections = render(inputs, ReportOptions(scatter=scatter, top=top))
    text = render_html(sections, title or "archrank report", [Path(p).name for p in paths])
    out = Path(out)
    write_output(out, text, "--out")  # atomic for regular files, in place for devices
    return out


def _distinct(paths: Sequence[str | Path]) -> list[str | Path]:
    """Each input once: a run named twice (``run``, ``run/``, ``run/run.sqlite``) would count
    as two seeds of its strategy."""
    import warnings

    seen: set[Path] = set()
    keep: list[str | Path] = []
    for p in paths:
        real = Path(p).resolve()
        key = real.parent if real.name.startswith("run.sqlite") else real
        if key not in seen:
            seen.add(key)
            keep.append(p)
    if len(keep) < len(paths):
        warnings.warn(f"{len(paths) - len(keep)} input(s) named a run or file already given; "
                      "each is read once", stacklevel=2)
    return keep


def write_plots(data: dict[str, Any], directory: str | Path, source: str | Path = "-"
                ) -> list[Path]:
    """The figures of one bench JSON (as written, with its ``kind``) as NAME.svg and NAME.png
    in ``directory``: what ``--plot DIR`` of the bench commands does."""
    from archrank.report.figures import reset_colours, write_figures
    from archrank.report.kinds import ReportOptions, load_plugins

    kind = load_plugins()[data["kind"]]
    item = kind.read(Path(source), data)
    reset_colours()
    figs = [f for sec in kind.render([item], ReportOptions()) for f in sec.figures()]
    return write_figures(figs, directory)


__all__ = ["build_report", "write_plots"]
