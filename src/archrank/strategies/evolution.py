"""Regularized evolution (Real et al., AAAI 2019): tournament selection with aging.

The population is the last ``population`` architectures told (oldest dies first, whatever its
score); a child is a random unseen mutation of the best of ``tournament`` members drawn at
random. The first ``population`` proposals are random cells.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar

from archrank.errors import InvalidOption
from archrank.strategies.base import Strategy

A = TypeVar("A")


class RegularizedEvolution(Strategy[A]):
    """Aging evolution; in a restricted search a mutation lands on a neighbour inside the
    candidate set, or else on the nearest unseen candidate."""

    name = "rea"

    def __init__(self, space: Any, *, population: int = 20, tournament: int = 10,
                 **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        if population < 1 or tournament < 1:
            raise InvalidOption("population and tournament must be positive")
        self.population_size = population
        self.tournament = tournament
        self.population: deque[tuple[Any, str, float]] = deque(maxlen=population)
        self._n_random = 0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "population": self.population_size,
                "tournament": self.tournament}

    def _observe(self, arch: Any, h: str, value: float | None) -> None:
        if value is not None:
            self.population.append((arch, h, value))

    def _propose(self, n: int) -> list[tuple[Any, str]]:
        out: list[tuple[Any, str]] = []
        for _ in range(n):
            if self._n_random < self.population_size or not self.population:
                self._n_random += 1
                pick = self._random_unseen(1)
            else:
                pick = self._child()
            if not pick:
                break
            out.append(self._claim(pick[0]))
        return out

    def _child(self) -> list[tuple[Any, str]]:
        size = min(self.tournament, len(self.population))
        members = self.rng.choice(len(self.population), size=size, replace=False)
        parent, ph, _ = max((self.population[i] for i in members), key=lambda t: t[2])
        options = self._unseen_neighbours(parent)
        if options:
            return [options[int(self.rng.integers(len(options)))]]
        if self.candidates is not None:
            return self._nearest_unseen(parent, ph)[:1]
        return self._random_unseen(1)
