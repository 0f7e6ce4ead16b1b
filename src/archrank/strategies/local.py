"""Local search over ``space.neighbours`` with random restarts (White et al., 2020).

From a random start, evaluate its unseen neighbours; ``mode="best"`` moves to the best
neighbour once the whole neighbourhood is known (best improvement), ``mode="first"`` moves as
soon as one neighbour beats the centre (first improvement). With no improving neighbour (a
local optimum) the search restarts from a random unseen cell. A neighbourhood does not depend on
the centre's value, so it is proposed at once and parallel workers stay busy; the strategy
returns fewer proposals than asked only while it waits for the results that decide the move.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from archrank.errors import InvalidOption
from archrank.strategies.base import Strategy

A = TypeVar("A")


class LocalSearch(Strategy[A]):
    """Hill climbing with restarts; in a restricted search the neighbourhood is the
    neighbours that are candidates."""

    name = "ls"

    def __init__(self, space: Any, *, mode: Literal["best", "first"] = "best",
                 **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        if mode not in ("best", "first"):
            raise InvalidOption(f"local search mode must be 'best' or 'first', not {mode!r}")
        self.mode = mode
        self.center: tuple[Any, str] | None = None
        self._queue: list[tuple[Any, str]] = []   # neighbourhood not yet proposed
        self._pending: set[str] = set()           # proposed from it, not yet told
        self._hood: set[str] = set()              # hashes of the current neighbourhood
        self.restarts = 0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mode": self.mode}

    # -- moves ------------------------------------------------------------------------------
    def _move(self, arch: Any, h: str) -> None:
        """Make ``arch`` the centre and queue its unseen neighbours (in random order)."""
        self.center = (arch, h)
        hood = self._unseen_neighbours(arch)
        order = self.rng.permutation(len(hood))
        self._queue = [hood[i] for i in order]
        self._hood = {nh for _, nh in hood}
        self._pending = set()

    def _restart(self) -> bool:
        start = self._random_unseen(1)
        if not start:
            self.center, self._queue, self._hood, self._pending = None, [], set(), set()
            return False
        self.restarts += 1
        arch, h = start[0]
        self._move(arch, h)
        self._queue.insert(0, (arch, h))  # the start itself is evaluated first
        self._hood.add(h)
        return True

    def _best_known_neighbour(self) -> tuple[Any, str, float] | None:
        assert self.center is not None
        best = None
        for arch in self.space.neighbours(self.center[0]):
            h = self.space.hash(arch)
            value = self.values.get(h)
            if value is not None and (best is None or value > best[2]):
                best = (arch, h, value)
        return best

    def _advance(self) -> bool:
        """With the neighbourhood exhausted, move or restart; False when nothing is left."""
        while not self._queue and not self._pending:
            if self.center is None:
                if not self._restart():
                    return False
                continue
            center_value = self.values.get(self.center[1])
            best = self._best_known_neighbour()
            if best is not None and (center_value is None or best[2] > center_value):
                arch, h, _ = best
                if self.candidates is not None and h in self.candidates.index:
                    arch = self.candidates.archs[self.candidates.index[h]]
                self._move(arch, h)
            elif not self._restart():
                return False
        return True

    # -- ask/tell hooks ---------------------------------------------------------------------
    def _propose(self, n: int) -> list[tuple[Any, str]]:
        out: list[tuple[Any, str]] = []
        while len(out) < n:
            if not self._queue and not self._advance():
                break
            if not self._queue:  # waiting for results that decide the next move
                break
            arch, h = self._queue.pop(0)
            if self._taken(h):
                continue
            self._pending.add(h)
            out.append(self._claim((arch, h)))
        return out

    def _retract(self, arch: Any, h: str) -> None:
        self._pending.discard(h)  # else the move would wait for it forever
        if h in self._hood:  # still a neighbour of the centre: proposed again before moving
            self._queue.insert(0, (arch, h))

    def _observe(self, arch: Any, h: str, value: float | None) -> None:
        self._pending.discard(h)
        if self.mode != "first" or self.center is None or h not in self._hood:
            return
        center_value = self.values.get(self.center[1])
        if h == self.center[1]:
            # the start's value arrived: a neighbour told earlier may already beat it
            best = self._best_known_neighbour()
            if best is not None and center_value is not None and best[2] > center_value:
                self._move(best[0], best[1])
            return
        if value is not None and center_value is not None and value > center_value:
            self._move(arch, h)
