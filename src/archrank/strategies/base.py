"""The ask/tell interface every search strategy follows, and what they share.

A strategy proposes architectures (``ask(n)``) and is told their results (``tell``), in the
spirit of Optuna's ask/tell API, so one strategy can drive a benchmark table, real training or
many parallel workers: it never waits for an evaluation itself. Strategies are deterministic
functions of their seed and of the sequence of ask/tell calls, which is what lets a run be
resumed by replaying those calls (see ``archrank.runs.loop``).

A strategy never proposes an architecture whose canonical hash it has already proposed or been
told about. It may be restricted to a ``CandidateSet`` (the cells of a table, or a whole
enumerable space): it then proposes only candidates.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from archrank.errors import ArchrankError
from archrank.oracles.base import Evaluation
from archrank.params import check_seed
from archrank.spaces.base import GraphBatch, SearchSpace

A = TypeVar("A")

# After this many consecutive samples that were all seen, sampling falls back to enumeration.
_MAX_REJECTIONS = 2_000


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed derived from ``seed`` and ``keys`` (independent streams per purpose)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *keys]).generate_state(1)[0])


class CandidateSet(Generic[A]):
    """A fixed, finite set of distinct architectures (by canonical hash) a search may propose.

    Built once and shared by every strategy of a process (it holds the cells' graph tensors,
    which guided search scores at every step).
    """

    def __init__(self, space: SearchSpace[A], archs: Sequence[A],
                 hashes: Sequence[str] | None = None, *, table: Any = None,
                 rows: Sequence[int] | None = None) -> None:
        """``table`` / ``rows``: the benchmark table the cells come from and each one's row,
        so that a predictor's arch inputs may be columns of that table."""
        if hashes is None:
            hashes = [space.hash(a) for a in archs]
        if len(hashes) != len(archs):
            raise ValueError("archs and hashes differ in length")
        index: dict[str, int] = {}
        keep: list[int] = []
        for i, h in enumerate(hashes):
            if h not in index:
                index[h] = len(keep)
                keep.append(i)
        self.space = space
        self.archs: list[A] = [archs[i] for i in keep]
        self.hashes: list[str] = [hashes[i] for i in keep]
        self.index = index
        self.table = table
        self.rows = None if rows is None else np.asarray(rows)[keep]
        self._graphs: GraphBatch | None = None
        self._codes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.archs)

    def table_rows(self, archs: Sequence[A]) -> np.ndarray | None:
        """The table rows of ``archs`` (candidates of this set; ``None`` without a table)."""
        if self.rows is None:
            return None
        if len(archs) == len(self.archs) and all(
                a is b for a, b in zip(archs, self.archs, strict=True)):
            return self.rows  # every candidate, in order: no hashing
        return self.rows[[self.index[self.space.hash(a)] for a in archs]]

    @property
    def graphs(self) -> GraphBatch:
        """Graph tensors of every candidate (built on first use)."""
        if self._graphs is None:
            self._graphs = self.space.to_graphs(self.archs)
        return self._graphs

    @property
    def codes(self) -> np.ndarray:
        """A flat 0/1 encoding per candidate (adjacency and one-hot ops) for Hamming distances."""
        if self._codes is None:
            self._codes = encode_flat(self.space, self.graphs)
        return self._codes

    @staticmethod
    @cache
    def of_space(space: SearchSpace) -> CandidateSet:
        """Every cell of an enumerable ``space`` (cached per space)."""
        return CandidateSet(space, space.enumerate())


def encode_flat(space: SearchSpace, graphs: GraphBatch) -> np.ndarray:
    """Adjacency bits plus one-hot node (and edge) ops, as a uint8 matrix [B, D]."""
    b = len(graphs)
    parts = [graphs.adj.reshape(b, -1).numpy() > 0]
    n_ops = max(1, len(space.node_op_names))
    parts.append(np.eye(n_ops, dtype=bool)[graphs.ops.numpy()].reshape(b, -1)
                 & graphs.mask.numpy()[:, :, None].repeat(n_ops, 2).reshape(b, -1))
    if graphs.edge_ops is not None:
        n_edge = max(1, len(space.edge_op_names))
        parts.append(np.eye(n_edge, dtype=bool)[graphs.edge_ops.numpy()].reshape(b, -1))
    return np.concatenate(parts, axis=1).astype(np.uint8)


class Strategy(ABC, Generic[A]):
    """Base class: bookkeeping of what was asked and told, unseen sampling, neighbourhoods.

    Subclasses implement ``_propose(n)`` (return up to ``n`` new ``(arch, hash)`` pairs, all
    unseen and distinct) and may override ``_observe`` to learn from a told result.
    ``objective`` names the metric of an ``Evaluation`` to maximise.
    """

    name: ClassVar[str]

    def __init__(self, space: SearchSpace[A], *, seed: int = 0, objective: str | None = None,
                 candidates: CandidateSet[A] | Sequence[A] | None = None) -> None:
        self.space = space
        self.seed = check_seed(f"strategy {getattr(self, 'name', type(self).__name__)!r}", seed)
        self.objective = objective
        self.rng = np.random.default_rng(derive_seed(self.seed, 0))
        if candidates is not None and not isinstance(candidates, CandidateSet):
            candidates = CandidateSet(space, list(candidates))
        self.candidates: CandidateSet[A] | None = candidates
        self._seen_mask = (None if candidates is None
                           else np.zeros(len(candidates), dtype=bool))
        self.seen: set[str] = set()
        self.values: dict[str, float] = {}
        self.observed: list[tuple[A, str, float]] = []  # told, status ok, in tell order
        self.n_asked = 0
        self.n_told = 0
        self._told: set[str] = set()  # hashes told (failed ones included)
        self._claimed: set[str] = set()  # proposals of the ask() call in progress

    # -- public API -------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[A]:
        """Up to ``n`` architectures to evaluate next, none seen before (fewer when the space
        is exhausted or the strategy waits for results it needs)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise ArchrankError(f"ask(n): n must be an integer, got {n!r}")
        if n < 0:
            raise ArchrankError(f"ask(n): n must be at least 0, got {n}")
        # never more than the unseen cells (strategies sample n cells up front)
        if self._seen_mask is not None:
            n = min(n, int((~self._seen_mask).sum()))
        elif (total := self.space.distinct_cells()) is not None:
            n = min(n, max(total - len(self.seen), 0))
        if n < 1:
            return []
        out: list[A] = []
        self._claimed = set()
        try:
            proposals = self._propose(n)[:n]
        finally:
            self._claimed = set()
        for arch, h in proposals:
            if h in self.seen:  # a subclass bug must never cause a repeated evaluation
                raise RuntimeError(f"strategy {self.name!r} proposed a seen architecture {h}")
            self._mark(h)
            out.append(arch)
        self.n_asked += len(out)
        return out

    def tell(self, arch: A, result: Evaluation | float | None) -> None:
        """Record the result of ``arch``: an ``Evaluation``, an objective value, or ``None``
        for a failed evaluation (a NaN or infinite value counts as failed). Each cell is told
        once: a second result would count it twice (in evolution's population, say)."""
        h = self.space.hash(arch)
        if h in self._told:
            raise ArchrankError(f"{self.space.format(arch)} was told already (cells that hash "
                                f"alike are one cell); tell each cell once")
        value = self._value(result)  # before marking: a bad result must not lose the cell
        self._mark(h)
        self._told.add(h)
        self.n_told += 1
        if value is not None:
            self.values[h] = value
            self.observed.append((arch, h, value))
        self._observe(arch, h, value)

    def adopt(self, archs: Sequence[A]) -> None:
        """Treat ``archs`` as asked (a resumed run whose recorded proposals differ)."""
        for arch in archs:
            self._mark(self.space.hash(arch))
        self.n_asked += len(archs)

    def retract(self, archs: Sequence[A]) -> None:
        """Undo the ask of ``archs`` (proposals a resumed run did not record): they become
        unseen again, and the strategy stops waiting for their results (``_retract``)."""
        for arch in reversed(list(archs)):  # last first: a queue put back keeps its order
            h = self.space.hash(arch)
            if h in self._told or h not in self.seen:
                continue  # told already, or never asked
            self.seen.discard(h)
            if self.candidates is not None:
                i = self.candidates.index.get(h)
                if i is not None:
                    self._seen_mask[i] = False  # type: ignore[index]
            self.n_asked -= 1
            self._retract(arch, h)

    def describe(self) -> dict[str, Any]:
        """The strategy's settings, JSON-able."""
        return {"strategy": self.name, "seed": self.seed}

    @property
    def best(self) -> tuple[A, float] | None:
        if not self.observed:
            return None
        arch, _, value = max(self.observed, key=lambda t: t[2])
        return arch, value

    # -- subclass hooks ---------------------------------------------------------------------
    @abstractmethod
    def _propose(self, n: int) -> list[tuple[A, str]]:
        ...

    def _observe(self, arch: A, h: str, value: float | None) -> None:
        """Learn from a told result (``value`` is ``None`` for a failed evaluation)."""

    def _retract(self, arch: A, h: str) -> None:
        """Forget a proposal ``retract`` undid (state kept for proposals awaiting results)."""

    # -- helpers ----------------------------------------------------------------------------
    def _claim(self, item: tuple[A, str]) -> tuple[A, str]:
        """Reserve a proposal of the current ``ask`` (helpers then exclude it)."""
        self._claimed.add(item[1])
        return item

    def _taken(self, h: str) -> bool:
        return h in self.seen or h in self._claimed
    def _value(self, result: Evaluation | float | None) -> float | None:
        """The objective value of ``result`` (``None``: failed); a one-line error for a result
        that names no single value or holds something other than a number."""
        if result is None:
            return None
        if isinstance(result, Evaluation):
            if not result.ok:
                return None
            if self.objective is not None:
                try:
                    value = result.metrics[self.objective]
                except KeyError:
                    raise ArchrankError(
                        f"evaluation has no metric {self.objective!r} "
                        f"(it has {', '.join(result.metrics) or 'none'})"
                    ) from None
            elif len(result.metrics) == 1:
                value = next(iter(result.metrics.values()))
            else:
                raise ArchrankError(
                    f"evaluation has metrics {', '.join(result.metrics) or 'none'}: pass "
                    f"objective=... to the strategy to name the one to maximise")
        else:
            value = result
        try:
            if isinstance(value, (str, bytes, bool)):
                raise TypeError
            value = float(value)  # numpy and torch scalars too
        except (TypeError, ValueError):
            text = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ArchrankError(
                f"tell: the objective value must be a number, got {text}") from None
        return value if np.isfinite(value) else None

    def _mark(self, h: str) -> None:
        self.seen.add(h)
        if self.candidates is not None:
            i = self.candidates.index.get(h)
            if i is not None:
                self._seen_mask[i] = True  # type: ignore[index]

    def _use_whole_space(self) -> None:
        """Switch to proposing from the enumeration of the space (sampling stopped finding
        unseen cells)."""
        self.candidates = CandidateSet.of_space(self.space)
        self._seen_mask = np.zeros(len(self.candidates), dtype=bool)
        for h in self.seen:
            self._mark(h)

    def _random_unseen(self, n: int, exclude: set[str] | None = None) -> list[tuple[A, str]]:
        """Up to ``n`` distinct unseen, unclaimed architectures drawn uniformly (from the
        candidates, or the space)."""
        exclude = set(exclude or ()) | self._claimed
        if self.candidates is not None:
            free = np.flatnonzero(~self._seen_mask)  # type: ignore[operator]
            if exclude:
                idx = self.candidates.index
                free = free[~np.isin(free, [idx[h] for h in exclude if h in idx])]
            if len(free) == 0:
                return []
            pick = self.rng.choice(free, size=min(n, len(free)), replace=False)
            return [(self.candidates.archs[i], self.candidates.hashes[i]) for i in pick]
        out: list[tuple[A, str]] = []
        taken = set(exclude)
        misses = 0
        while len(out) < n:
            batch = self.space.sample(n - len(out), self.rng)
            for arch, h in zip(batch, self.space.hash_many(batch), strict=True):
                if h in self.seen or h in taken:
                    misses += 1
                    continue
                misses = 0
                taken.add(h)
                out.append((arch, h))
            if misses > _MAX_REJECTIONS:
                if not self.space.enumerable:
                    break
                self._use_whole_space()
                return out + self._random_unseen(n - len(out), taken)
        return out

    def _unseen_neighbours(self, arch: A, exclude: set[str] | None = None
                           ) -> list[tuple[A, str]]:
        """Distinct unseen, unclaimed neighbours of ``arch`` (candidates only, when
        restricted)."""
        out: list[tuple[A, str]] = []
        taken = set(exclude or ()) | self._claimed
        nbs = self.space.neighbours(arch)
        for nb, h in zip(nbs, self.space.hash_many(nbs), strict=True):
            if h in self.seen or h in taken:
                continue
            if self.candidates is not None:
                i = self.candidates.index.get(h)
                if i is None:
                    continue
                nb = self.candidates.archs[i]
            taken.add(h)
            out.append((nb, h))
        return out

    def _nearest_unseen(self, arch: A, h: str, exclude: set[str] | None = None
                        ) -> list[tuple[A, str]]:
        """Restricted searches: the unseen candidates closest to ``arch`` (Hamming distance of
        the flat encoding), ties in random order; a stand-in for a mutation when no neighbour
        of ``arch`` is in the candidate set."""
        assert self.candidates is not None
        free = ~self._seen_mask  # type: ignore[operator]
        for e in set(exclude or ()) | self._claimed:
            i = self.candidates.index.get(e)
            if i is not None:
                free[i] = False
        if not free.any():
            return []
        i = self.candidates.index.get(h)
        codes = self.candidates.codes
        code = (codes[i] if i is not None
                else encode_flat(self.space, self.space.to_graphs([arch]))[0])
        dist = np.count_nonzero(codes[free] != code, axis=1)
        idx = np.flatnonzero(free)
        ties = idx[dist == dist.min()]
        order = self.rng.permutation(ties)
        return [(self.candidates.archs[j], self.candidates.hashes[j]) for j in order]
