"""What every ``bench`` harness shares: seeds, the JSON envelope, statistics, tables, and
what an interruption keeps.

Every bench JSON starts with the same envelope (``envelope``): ``kind`` and ``schema`` (what
``archrank report`` reads it as), ``command``, ``seeds`` (the list of seeds run), ``machine``
(where it ran) and ``interrupted`` (false unless Ctrl-C / SIGTERM cut the job short: then the
report holds what finished, and the seed cut short is never counted). A figure over seeds is
``{"mean", "std"}`` (``stat``); results per seed are listed as records with a ``seed`` field.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Any

import numpy as np

from archrank.errors import ArchrankError, Interrupted


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: enough to compare timings across machines."""
    import torch

    from archrank.executors import available_cores

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def envelope(kind: str, schema: int, command: str, seeds: Sequence[int],
             **fields: Any) -> dict[str, Any]:
    """The head every bench JSON shares (module docstring), then ``fields`` in order."""
    return {"kind": kind, "schema": schema, "command": command,
            "seeds": [int(s) for s in seeds], "machine": machine_info(),
            "interrupted": False, **fields}


def interrupted(report: dict[str, Any] | None, message: str) -> Interrupted:
    """The exception a harness raises on Ctrl-C / SIGTERM: ``report`` (what finished, marked
    ``"interrupted": true``) travels with it for the CLI to write to ``--json``."""
    if report is not None:
        report["interrupted"] = True
    return Interrupted(message, partial=report)


def check_seeds(seeds: int, first: int = 0) -> list[int]:
    """Seeds ``first .. first + seeds - 1``; a one-line error for a count below one."""
    if seeds < 1:
        raise ArchrankError(f"--seeds must be at least 1, got {seeds}")
    if first < 0:
        raise ArchrankError(f"--first-seed must be at least 0, got {first}")
    if first + seeds - 1 >= 2**32:
        raise ArchrankError(f"--first-seed {first} with --seeds {seeds} goes past the largest "
                            f"seed, {2**32 - 1}")
    return list(range(first, first + seeds))


def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ArchrankError(f"--{what} is empty; give a comma-separated list")
    return items


def stat(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std"}`` over seeds (NaN entries ignored; NaN when there is none). The
    std is the population std (``ddof=0``, the figures published since the first bench; 0
    for a single value: the printed tables then show the mean alone)."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).any():
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(np.nanmean(arr)), "std": float(np.nanstd(arr))}


def percentile(values: np.ndarray, x: float) -> float:
    """Percent of ``values`` below ``x`` (ties count half): where ``x`` lands in a truth; NaN
    when ``x`` is not a number (a pick whose every training failed), never a 0th percentile."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values) or not np.isfinite(x):
        return float("nan")
    return float(100.0 * ((values < x).sum() + 0.5 * (values == x).sum()) / len(values))


def format_stat(value: Any, digits: int = 3, seeds: Any = None) -> str:
    """A table cell: ``mean ± std`` for a stat (the mean alone over ``seeds == 1`` or without
    a std: no spread was measured), the number for a number, ``-`` for nothing."""
    if isinstance(value, dict) and "mean" in value:
        if value["mean"] is None or not np.isfinite(value["mean"]):
            return "-"
        if seeds == 1 or value.get("std") is None or not np.isfinite(value["std"]):
            return f"{value['mean']:.{digits}f}"
        return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def results_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                  digits: int = 3, seeds: int | None = None) -> Any:
    """The printed table of a harness: first column left, the others right-aligned, every
    cell through ``format_stat`` (a rich ``Table``; over ``seeds == 1`` the means alone, not
    a "± 0.000" that no spread measured)."""
    from rich.table import Table

    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(format_stat(v, digits, seeds) for v in row))
    return table
