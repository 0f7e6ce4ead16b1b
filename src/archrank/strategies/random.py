"""Random search: uniform over the unseen cells (the baseline every method must beat)."""

from __future__ import annotations

from typing import Any, TypeVar

from archrank.strategies.base import Strategy

A = TypeVar("A")


class RandomSearch(Strategy[A]):
    """Proposes distinct unseen architectures uniformly at random."""

    name = "random"

    def _propose(self, n: int) -> list[tuple[Any, str]]:
        return self._random_unseen(n)
