"""The tabular oracle: answers from a benchmark table instead of training.

Evaluating a cell looks up its row (by canonical hash, see ``TabularBenchmark``) and returns
every number the table has for it, with the recorded training time as the cost, so a search
on a table reports the compute it would have spent.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from archrank.errors import InvalidOption
from archrank.oracles.base import Evaluation, Oracle
from archrank.spaces.base import SearchSpace
from archrank.tables import check_one_table
from archrank.tables.table import TabularBenchmark


class TabularOracle(Oracle):
    """Look architectures up in ``bench``; the objective is the column ``metric``.

    ``missing="raise"`` (default) raises ``NotInBenchmark`` for a cell the table lacks;
    ``missing="fail"`` returns a failed ``Evaluation`` instead, so a search over a partial
    table can carry on. A row without a value for ``metric`` is a failed evaluation.
    """

    def __init__(self, bench: TabularBenchmark, metric: str,
                 missing: Literal["raise", "fail"] = "raise") -> None:
        bench.scores(metric)  # a known column of finite scores (one-line error otherwise)
        check_one_table(bench, bench.source)  # a cell of two datasets is no repeat to fix
        bench.check_repeats_agree(metric)
        if missing not in ("raise", "fail"):
            raise InvalidOption(f"TabularOracle: missing must be 'raise' or 'fail', "
                                f"not {missing!r}")
        self.bench = bench
        self.objective = metric
        self.missing = missing

    @property
    def space(self) -> SearchSpace:  # type: ignore[override]
        """The benchmark's space (not stored twice, so pickles ship it once, by name)."""
        return self.bench.space

    def __repr__(self) -> str:
        return f"TabularOracle({self.bench.source!r}, metric={self.objective!r})"

    def evaluate(self, arch: Any) -> Evaluation:
        if self.missing == "raise":
            index = self.bench.index_of(arch)
        else:
            found = self.bench.find(arch)
            if found is None:
                return Evaluation(status="failed",
                                  error=f"not in the benchmark table {self.bench.source}")
            index = found
        metrics = self.bench.row(index)
        cost = 0.0
        if self.bench.cost_column is not None:
            cost = metrics.get(self.bench.cost_column, 0.0)
        if self.objective not in metrics:
            return Evaluation(metrics, cost, status="failed",
                              error=f"the table has no {self.objective} for this architecture")
        return Evaluation(metrics, cost)

    def optimum(self) -> float:
        """The best value of the objective that a query can get (for regret and
        queries-to-optimum): over the rows that answer, the first of each exact text (a
        later row repeating a cell's text is never returned, so its value is no target)."""
        values = self.bench.values(self.objective)[self.bench.answering_rows()]
        values = values[~np.isnan(values)]
        return float(values.max()) if len(values) else -math.inf

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({"source": self.bench.source, "metric": self.objective,
                     "rows": len(self.bench), "cost_column": self.bench.cost_column,
                     "fingerprint": self.bench.fingerprint()})
        return info
