"""Resolve a predictor's named architecture-level signals to the matrices ``fit`` / ``predict``
take (see ``archrank.predictors.base``), for the bench harness and guided search alike.

An **arch input** name is a zero-cost proxy of ``archrank.zc`` (``params`` and ``flops``
exact and vectorised, the rest read from the per-space cache that ``archrank zc --fill``
writes, ``archrank.zccache``), at the benchmark setting or, as ``proxy@small``, on the
space's small networks (their own cache file); a structural signal of ``archrank.structure``
(path lengths, op counts: exact, from the cell's graph); or, failing those, a numeric column
of the benchmark table; it must be known for every cell. An **aux target** name is a numeric
column of the table; a missing value (empty cell) is NaN, which the predictor masks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import ArchrankError
from archrank.zc import PROXIES

# Names of table columns that hold what training a cell measured (an accuracy, a loss, a
# training time), not what is known of it beforehand.
TRAINING_RESULT = re.compile(r"acc|loss|err(or)?\b|test|valid|val_|train_time|epoch",
                             re.IGNORECASE)


def arch_matrix(space: Any, archs: Sequence[Any], names: Sequence[str], *,
                table: Any = None, rows: np.ndarray | None = None,
                zc_cache: str | Path | None = None) -> np.ndarray:
    """Arch inputs ``names`` of ``archs`` [len(archs), len(names)] (``structure`` stands
    for every structural signal of the space, as in a predictor's ``arch_inputs``).

    ``table`` / ``rows``: the benchmark the cells come from and their row numbers (for
    table columns); ``zc_cache``: another cache file than the space's default one.
    """
    from archrank.predictors.base import signal_names
    from archrank.zccache import ZCCache, ZCSetting, signal_matrix, split_signal

    names = signal_names(names, space)
    out = np.full((len(archs), len(names)), np.nan)
    parsed = [split_signal(n) for n in names]
    from archrank.zccache import EXACT

    for n, p in zip(names, parsed, strict=True):
        # archrank's own value is read, not the table's column of that name (published
        # proxies differ from these synthetic-batch ones, and published FLOPs count other
        # operations than archrank's multiply-accumulates: nb201_zc.csv's torchstat FLOPs
        # rank cells with tau 0.96 against them): said, not silent; parameter counts are
        # archrank's and the table's alike. (An error here refused GATES++'s default inputs
        # on such a table.)
        if p is not None and "@" not in n and p[0] != "params" and table is not None \
                and n in table.metrics:
            import warnings

            what = ("exact FLOPs (multiply-accumulates)" if p[0] in EXACT else
                    "zero-cost proxy (synthetic batch, the cache)")
            warnings.warn(f"arch input {n!r} is archrank's {what}, not the column of "
                          f"{table.source}; rename the column to use the table's values",
                          stacklevel=2)
    by_setting: dict[str, list[int]] = {}
    for k, p in enumerate(parsed):
        if p is not None:
            by_setting.setdefault(p[1], []).append(k)
    for setting_name, cols in by_setting.items():  # one cache file per setting
        setting = ZCSetting.named(space.name, setting_name)
        cache = ZCCache(space, setting, path=setting.cache_file(zc_cache))
        out[:, cols] = signal_matrix(space, archs, [parsed[k][0] for k in cols], cache=cache)
    from archrank.structure import has_structure, structure_matrix, structure_names

    structural = structure_names(space) if has_structure(space) else ()
    graph_cols = [k for k, n in enumerate(names) if parsed[k] is None and n in structural]
    for k in graph_cols:
        if table is not None and names[k] in table.metrics:
            raise ArchrankError(f"arch input {names[k]!r} is both a structural signal and a "
                                f"column of {table.source}; rename the column to use it")
    if graph_cols:
        out[:, graph_cols] = structure_matrix(space, archs, [names[k] for k in graph_cols])
    for k, n in enumerate(names):
        if parsed[k] is not None or k in graph_cols:
            continue
        col = _table_column(table, rows, n, "arch input", len(archs), structural=structural)
        if TRAINING_RESULT.search(n):
            import warnings

            warnings.warn(f"arch input {n!r} is the column of {table.source} for every cell, "
                          "the cells scored included; its name reads as a training result, "
                          "which would make the figures better than a search can see: use "
                          "values known without training (proxies, costs); a result of "
                          "other trainings belongs in --aux-targets", stacklevel=2)
        lack = np.flatnonzero(np.isnan(col))
        if lack.size:
            raise ArchrankError(f"arch-level signal {n!r} is missing for {lack.size:,} of "
                                f"{len(archs):,} cells of {table.source}")
        out[:, k] = col
    return out


def aux_matrix(table: Any, rows: np.ndarray | None, names: Sequence[str],
               n: int) -> np.ndarray:
    """Aux targets ``names`` of the table's ``rows`` [len(rows), len(names)], NaN = missing."""
    if not names:
        return np.zeros((n, 0))
    return np.stack([_table_column(table, rows, name, "aux target", n) for name in names],
                    axis=1)


def _table_column(table: Any, rows: np.ndarray | None, name: str, what: str,
                  n: int, structural: Sequence[str] = ()) -> np.ndarray:
    """A numeric column of the table (an arch input's last resort: ``structural`` names the
    space's structural signals for the error)."""
    also = (f"; zero-cost proxies: {', '.join(PROXIES)} (PROXY@small: of the small "
            f"networks); structural signals: {', '.join(structural) or 'none in this space'}"
            if what == "arch input" else "")
    if table is None or rows is None:
        raise ArchrankError(f"{what} {name!r} is neither a known signal nor a column of a "
                            f"table (table columns are read by bench predictor, and by a "
                            f"search among a table's cells: --space-from-bench){also}")
    if name not in table.metrics:
        raise ArchrankError(f"unknown {what} column {name!r} in {table.source}; numeric "
                            f"columns: {', '.join(table.metrics)}{also}")
    col = np.asarray(table.values(name), dtype=np.float64)[rows]
    assert len(col) == n
    bad = np.flatnonzero(np.isinf(col))
    if bad.size:  # a table's infinity is a broken value, not a rank (an empty cell: missing)
        where = table.row_name(int(np.asarray(rows)[bad[0]]))
        raise ArchrankError(f"{what} {name!r} of {table.source} is {col[bad[0]]} on {where} "
                            f"({bad.size:,} infinite values among the cells used); write an "
                            f"empty cell for a missing value")
    return col


def fit_signals(model: Any, archs: Sequence[Any], *, table: Any = None,
                rows: np.ndarray | None = None,
                zc_cache: str | Path | None = None) -> dict[str, np.ndarray | None]:
    """The ``arch_features`` / ``aux`` keywords of ``model.fit`` for ``archs`` (``None``
    for a kind of signal the model does not use)."""
    arch = aux = None
    if model.arch_inputs:
        arch = arch_matrix(model.space, archs, model.arch_inputs, table=table, rows=rows,
                           zc_cache=zc_cache)
    if model.aux_targets:
        aux = aux_matrix(table, rows, model.aux_targets, len(archs))
    return {"arch_features": arch, "aux": aux}
