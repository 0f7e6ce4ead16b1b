"""The report's plots, with matplotlib's object API (no pyplot, so no global backend state and
no display needed; rendering is Agg for PNG and matplotlib's own SVG writer).

Each function takes plain arrays and returns a ``matplotlib.figure.Figure``; the kind modules
(``runs``, ``predictor``, ``search``) decide what to plot, ``to_svg`` / ``write_figures`` turn
figures into the inline images of the HTML report or the files of ``--plot DIR``.
Text is written as paths in the SVG, so a figure looks the same in every browser without fonts.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from archrank.errors import ArchrankError
from archrank.metrics import kendall_tau

F = TypeVar("F", bound=Callable[..., Any])
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "svg.fonttype": "path",
    "svg.hashsalt": "archrank",  # stable ids: the same data gives the same SVG
}
# tab10, so a strategy or predictor keeps its colour across the figures of one report.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


_ASSIGNED: dict[str, str] = {}  # label -> colour for the report being built


def reset_colours() -> None:
    """Start a report: colours are handed out afresh, in the order labels first appear."""
    _ASSIGNED.clear()


def colours(labels: Sequence[str]) -> dict[str, str]:
    """One colour per label; a label keeps the colour it first got in this report, whichever
    figure (and order of labels) it appears in next."""
    here = {_ASSIGNED[label] for label in labels if label in _ASSIGNED}
    for label in labels:
        if label not in _ASSIGNED:
            # a colour no label has yet, else one no other label of this figure has (a report
            # of more than ten labels), else the palette cycles
            taken = set(_ASSIGNED.values())
            free = ([c for c in PALETTE if c not in taken and c not in here]
                    or [c for c in PALETTE if c not in here]
                    or [PALETTE[len(_ASSIGNED) % len(PALETTE)]])
            _ASSIGNED[label] = free[0]
            here.add(free[0])
    return {label: _ASSIGNED[label] for label in labels}


def styled(fn: F) -> F:
    """Build the figure under ``STYLE`` (matplotlib reads rcParams as artists are made)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(width: float = 5.6, height: float = 3.4, ncols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols)


# -- curves -------------------------------------------------------------------------------------
def pad_curves(curves: Sequence[Sequence[float | None]], length: int | None = None
               ) -> np.ndarray:
    """Best-so-far curves of different lengths as one [runs, length] array: a run that stopped
    early (at the optimum, or killed) carries its last value forward; missing values are NaN."""
    length = length or max((len(c) for c in curves), default=0)
    out = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        c = np.array([np.nan if v is None else v for v in curve[:length]], dtype=np.float64)
        c[~np.isfinite(c)] = np.nan
        if len(c):
            out[i, : len(c)] = c
            out[i, len(c):] = c[-1]
    return out


def quartiles(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column 25th, 50th and 75th percentiles over the finite entries (NaN where none)."""
    out = np.full((3, mat.shape[1]), np.nan)
    ok = np.isfinite(mat).any(axis=0)
    if ok.any():
        out[:, ok] = np.nanpercentile(mat[:, ok], [25, 50, 75], axis=0)
    return out[0], out[1], out[2]


@styled
def curves_figure(series: Mapping[str, np.ndarray], *, ylabel: str, title: str,
                  xlabel: str = "evaluations", x: Mapping[str, np.ndarray] | None = None,
                  seeds: Mapping[str, int] | None = None) -> Figure:
    """Median best-so-far (line) and quartile band over seeds per label. ``series[label]`` is
    [seeds, points]; ``x[label]`` (optional) the x of each point, default 1..points;
    ``seeds[label]`` the seed count of the legend where the rows are not seeds (a mean)."""
    fig, ax = new_figure()
    palette = colours(list(series))
    for label, mat in series.items():
        lo, mid, hi = quartiles(mat)
        xs = x[label] if x is not None else np.arange(1, mat.shape[1] + 1)
        rows = mat.shape[0]
        count = (seeds or {}).get(label, rows)
        ax.plot(xs, mid, color=palette[label], lw=1.8,
                label=f"{label} ({count} seed{'s' if count != 1 else ''})")
        if rows > 1:
            ax.fill_between(xs, lo, hi, color=palette[label], alpha=0.18, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig


@styled
def queries_figure(per_label: Mapping[str, Sequence[int | None]], budget: int, *,
                   title: str) -> Figure:
    """Queries each seed needed to find the optimum, per strategy: box over the seeds that
    found it, every seed as a dot, the seeds that did not as crosses above the budget."""
    fig, ax = new_figure(height=1.0 + 0.45 * max(2, len(per_label)))
    palette = colours(list(per_label))
    rng = np.random.default_rng(0)
    labels = list(per_label)
    for row, label in enumerate(labels):
        qs = per_label[label]
        hit = np.array([q for q in qs if q is not None], dtype=np.float64)
        missed = sum(q is None for q in qs)
        y = len(labels) - 1 - row
        if len(hit):
            ax.boxplot(hit, positions=[y], orientation="horizontal", widths=0.5, showfliers=False,
                       medianprops={"color": palette[label], "lw": 2},
                       boxprops={"color": "#555"}, whiskerprops={"color": "#555"},
                       capprops={"color": "#555"})
            ax.scatter(hit, y + rng.uniform(-0.15, 0.15, len(hit)), s=12,
                       color=palette[label], alpha=0.8, zorder=3)
        if missed:
            ax.scatter(np.full(missed, budget * 1.04), y + rng.uniform(-0.15, 0.15, missed),
                       marker="x", s=18, color="#d62728", zorder=3)
        ax.annotate(f"{len(hit)}/{len(qs)} found", (budget * 1.08, y), va="center",
                    fontsize=8, annotation_clip=False)
    ax.axvline(budget, color="#999", lw=1, ls="--")
    ax.set_yticks(range(len(labels)), labels[::-1])
    ax.set_xlim(0, budget * 1.2)
    ax.set_xlabel(f"queries until the optimum was found (x: not within the budget of {budget})")
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    return fig


@styled
def strip_figure(per_label: Mapping[str, Sequence[float]], *, xlabel: str, title: str,
                 xlim: tuple[float, float] | None = None, mark: float | None = None) -> Figure:
    """One row per label: every value as a dot, the mean as a bar (a few values per label,
    e.g. the picks of a few search seeds); ``mark`` draws a reference line."""
    fig, ax = new_figure(height=1.0 + 0.45 * max(2, len(per_label)))
    palette = colours(list(per_label))
    rng = np.random.default_rng(0)
    labels = list(per_label)
    for row, label in enumerate(labels):
        v = np.asarray(per_label[label], dtype=np.float64)
        v = v[np.isfinite(v)]
        y = len(labels) - 1 - row
        if len(v):
            ax.plot([v.mean()] * 2, [y - 0.3, y + 0.3], color=palette[label], lw=2.5)
            ax.scatter(v, y + rng.uniform(-0.15, 0.15, len(v)), s=16, color=palette[label],
                       alpha=0.85, zorder=3)
    if mark is not None:
        ax.axvline(mark, color="#999", lw=1, ls="--")
    ax.set_yticks(range(len(labels)), labels[::-1])
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    return fig


# -- predictors ---------------------------------------------------------------------------------
@styled
def quality_figure(results: Sequence[Mapping[str, Any]], metrics: Sequence[tuple[str, str]], *,
                   title: str) -> Figure:
    """Mean ± std (error bars) of each metric against training-set size, one line per
    predictor; ``results`` are ``bench predictor`` result entries."""
    fig, axes = new_figure(width=7.2, height=3.2, ncols=len(metrics))
    axes = np.atleast_1d(axes)
    names = list(dict.fromkeys(r["predictor"] for r in results))
    palette = colours(names)
    for ax, (key, label) in zip(axes, metrics, strict=True):
        for name in names:
            rows = sorted((r for r in results if r["predictor"] == name),
                          key=lambda r: r["train_size"])
            sizes = [r["train_size"] for r in rows]
            ax.errorbar(sizes, [r[key]["mean"] for r in rows], yerr=[r[key]["std"] for r in rows],
                        color=palette[name], marker="o", ms=4, capsize=3, lw=1.5, label=name)
        ax.set_xscale("log")
        sizes = sorted({r["train_size"] for r in results})
        ax.set_xticks(sizes, [str(v) for v in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training cells")
        ax.set_ylabel(label)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


@styled
def scatter_figure(truth: Sequence[float], predicted: Sequence[float], *, xlabel: str,
                   ylabel: str, title: str) -> Figure:
    """Predicted (or proxy) score against the true value, with Kendall tau in the title."""
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    fig, ax = new_figure(width=4.6, height=3.8)
    ax.scatter(t[ok], p[ok], s=7, alpha=0.45, color=PALETTE[0], lw=0)
    tau = kendall_tau(t[ok], p[ok]) if ok.sum() > 1 else float("nan")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\nKendall tau {tau:.3f} on {int(ok.sum())} cells")
    return fig


@styled
def truth_panels_figure(truth: Sequence[float], panels: Mapping[str, Sequence[Sequence[float]]],
                        *, xlabel: str, title: str,
                        seeds: Sequence[int] | None = None) -> Figure:
    """One panel per score (e.g. supernet and fitted): each seed's scores of the truth's cells
    against the truth, a colour per seed (labelled with ``seeds``, else by position), the
    mean Kendall tau over seeds in the panel title."""
    t = np.asarray(truth, dtype=np.float64)
    fig, axes = new_figure(width=3.3 * max(1, len(panels)), height=3.5, ncols=len(panels))
    axes = np.atleast_1d(axes)
    for ax, (label, per_seed) in zip(axes, panels.items(), strict=True):
        taus = []
        for k, values in enumerate(per_seed):
            v = np.asarray(values, dtype=np.float64)
            ok = np.isfinite(t) & np.isfinite(v)
            ax.scatter(t[ok], v[ok], s=8, alpha=0.5, lw=0, color=PALETTE[k % len(PALETTE)],
                       label=f"seed {seeds[k] if seeds is not None else k}"
                       if len(per_seed) > 1 else None)
            if ok.sum() > 1:
                taus.append(kendall_tau(t[ok], v[ok]))
        tau = float(np.mean(taus)) if taus else float("nan")
        ax.set_title(f"{label}\nKendall tau {tau:.3f}"
                     + (f" (mean of {len(taus)} seeds)" if len(taus) > 1 else ""))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{label} score")
        if len(per_seed) > 1:
            ax.legend(fontsize=7, markerscale=1.5)
    fig.suptitle(title)
    return fig


def pareto_front(cost: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats (lower or equal cost and higher value, one
    strictly), sorted by cost: ``oneshot select``'s front (``oneshot.hardware``)."""
    from archrank.oneshot.hardware import pareto_front as front

    return front(np.asarray(value, dtype=np.float64), np.asarray(cost, dtype=np.float64))


@styled
def pareto_figure(cost: Sequence[float], value: Sequence[float], *, xlabel: str, ylabel: str,
                  title: str, selected: Sequence[int] = (), log_x: bool = False) -> Figure:
    """Every cell (grey), its Pareto front (line) and the ``selected`` cells (stars)."""
    c = np.asarray(cost, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64)
    front = pareto_front(c, v)
    fig, ax = new_figure(width=5.6, height=3.8)
    ax.scatter(c, v, s=5, color="#bbb", lw=0, label=f"cells ({len(c)})")
    ax.step(c[front], v[front], where="post", color=PALETTE[3], lw=1.5,
            label=f"Pareto front ({len(front)})")
    ax.scatter(c[front], v[front], s=14, color=PALETTE[3], zorder=3)
    if len(selected):
        sel = np.asarray(selected, dtype=np.int64)
        ax.scatter(c[sel], v[sel], s=90, marker="*", color=PALETTE[1], edgecolor="black",
                   lw=0.5, zorder=4, label=f"selected ({len(sel)})")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig


# -- output -------------------------------------------------------------------------------------
def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    with rc_context(STYLE):
        fig.savefig(buf, format="svg")
    return buf.getvalue()


def to_png(fig: Figure, dpi: int = 130) -> bytes:
    buf = io.BytesIO()
    with rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def write_figures(figures: Sequence[Any], directory: str | Path) -> list[Path]:
    """NAME.svg and NAME.png of each ``kinds.Figure`` in ``directory`` (``--plot DIR``)."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for fig in figures:
            svg, png = out / f"{fig.name}.svg", out / f"{fig.name}.png"
            svg.write_text(to_svg(fig.figure))
            png.write_bytes(to_png(fig.figure))
            written += [svg, png]
    except OSError as exc:
        raise ArchrankError(f"{out}: cannot write plots ({exc.strerror or exc})") from None
    return written
