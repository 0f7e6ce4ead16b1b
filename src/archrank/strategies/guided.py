"""Predictor-guided search, the seed method of GATES (Ning et al., ECCV 2020).

Start with ``n_init`` random cells (``init="arch"``, the default for predictors with FLOPs,
parameters, synflow or nwot among their arch-level inputs: drawn at random from the
``init_top`` fraction of the candidates ranked by those inputs, a zero-cost warm start);
then, each time the proposals run out, fit the predictor on every result told so far, score
the candidates and queue the ``batch`` best unseen ones, each slot replaced, with probability
``explore``, by a random unseen cell from the predicted top ``explore_top`` fraction
(exploration that stays where the predictor sees promise), or with ``explore_near`` = k by the
unseen neighbour of the k best cells told so far that the predictor ranks highest.

The candidates are the whole space when it is small enough to enumerate (nb201, nbgraph) or
the cells of a table (``--space-from-bench``); otherwise a fresh pool of ``pool_size`` sampled
cells plus every neighbour of the ``top_mutate`` best cells so far (nb101). Fits dominate the
cost, so the predictor is refitted only once per ``batch`` proposals (a number that grows by
``batch_growth`` of the data once that exceeds ``batch / batch_growth`` cells), and torch
predictors train for about ``max_fit_steps`` steps (at least 10 epochs, which exceeds it above
some 10,000 cells). Each fit starts from scratch with a seed
derived from the strategy's seed and the fit's number, so a replayed run refits identically
(a warm start from the previous fit would save little at these sizes and tie every fit to
the whole history).

Predictors that take arch-level inputs (``arch_inputs``: FLOPs, parameters, zero-cost
proxies, ``archrank.signals``) get them for the cells told and for the candidates (computed
once per search when the candidates are the whole space); auxiliary targets are not available
here (a search measures only its objective), so a predictor set up with ``aux_targets`` is
refused. Those inputs also choose where the search starts: with ``init="arch"`` each of them
among ``WARM_SIGNALS`` (FLOPs, parameters, synflow, nwot: higher = more accurate on every
table measured) becomes its mid-quantile over the candidates (over ``pool_size`` sampled
cells when the space is not enumerated), and the first ``n_init`` cells are drawn uniformly
from the ``init_top`` fraction with the highest mean (ties at the cut included). Zero-cost
proxies as a warm start follow Abdelfattah et al. (ICLR 2021); the measurement that made it
the default of predictors with such inputs (``init="auto"``) is in docs/benchmarks.md
("A zero-cost warm start").

The keyword defaults below are those of a search that starts at random (GATES's, measured);
a predictor may declare others it searches best with (``Predictor.guided_defaults``, applied
by ``make_strategy`` where the user sets none, per space: GATES++ on nb201 refits every 5
evaluations and explores next to the best cells, ``explore_near=3``; docs/benchmarks.md
"Guided search defaults per predictor").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from archrank.errors import InvalidOption
from archrank.predictors.base import Predictor, make_predictor
from archrank.strategies.base import CandidateSet, Strategy, derive_seed

A = TypeVar("A")

# Torch predictors train for a modest number of epochs here instead of their default schedule
# (sized for one-off fits on up to thousands of cells): a search refits on 10-200 cells over
# and over, and 100 epochs rank those as well at a fraction of the cost. On more cells the
# epochs shrink so that a fit stays under ``max_fit_steps`` optimiser steps. One ensemble
# member: the search refits every ``batch`` evaluations, and several members would multiply
# the cost that dominates a tabular search.
NEURAL_EPOCHS = 100
NEURAL_ENSEMBLE = 1
# where the first n_init cells come from; "auto": "arch" when the predictor takes one of the
# WARM_SIGNALS as an arch-level input, else "random"
INIT_CHOICES = ("auto", "random", "arch")
# arch-level signals that rank cells the right way up (higher = more accurate) on every table
# measured here (nb201 CIFAR-10, nb101 val_acc_108 at both settings, the MNIST-1D truth);
# snip and grad_norm of nb101's small network rank against accuracy (docs/benchmarks.md), so
# only these, whatever their setting suffix, choose a warm start
WARM_SIGNALS = ("flops", "params", "synflow", "nwot")


class GuidedSearch(Strategy[A]):
    """Predictor-guided search with any registered predictor (default ``gates``)."""

    name = "guided"

    def __init__(self, space: Any, *, predictor: str = "gates",
                 predictor_params: dict[str, Any] | None = None, n_init: int = 10,
                 batch: int = 10, explore: float = 0.3, explore_top: float = 0.05,
                 explore_near: int = 0,
                 pool_size: int = 10_000,
                 top_mutate: int = 10, max_enumerate: int = 50_000,
                 batch_growth: float = 0.05, max_fit_steps: int | None = 400,
                 init: str = "auto", init_top: float = 0.05,
                 **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        if n_init < 1 or batch < 1 or pool_size < 1:
            raise InvalidOption(f"n_init, batch and pool_size must be at least 1, got {n_init}, "
                                f"{batch} and {pool_size}")
        if init not in INIT_CHOICES:
            raise InvalidOption(f"init must be one of {', '.join(INIT_CHOICES)}, not {init!r}")
        if not 0.0 < init_top <= 1.0:
            raise InvalidOption("init_top must lie in (0, 1]")
        if not 0.0 <= explore <= 1.0:
            raise InvalidOption("explore must lie in [0, 1]")
        if not 0.0 < explore_top <= 1.0:
            raise InvalidOption("explore_top must lie in (0, 1]")
        if explore_near < 0:
            raise InvalidOption("explore_near must be 0 or positive")
        self.explore_top = explore_top
        self.explore_near = explore_near
        self.predictor_name = predictor
        self.predictor_params = dict(predictor_params or {})
        self._neural = _is_neural(predictor)
        self.batch_growth = batch_growth
        self.max_fit_steps = max_fit_steps
        self.n_init = n_init
        self.batch = batch
        self.explore = explore
        self.pool_size = pool_size
        self.top_mutate = top_mutate
        if (self.candidates is None and space.enumerable and space.size is not None
                and space.size <= max_enumerate):
            self.candidates = CandidateSet.of_space(space)
            self._seen_mask = np.zeros(len(self.candidates), dtype=bool)
        self._queue: list[tuple[Any, str]] = []
        self._n_random = 0
        self.model: Predictor | None = None
        self.n_fits = 0
        self.fit_seconds = 0.0
        self.score_seconds = 0.0
        self._candidate_arch: np.ndarray | None = None
        probe = make_predictor(predictor, space, **self.fit_params(10))
        if probe.aux_targets:
            raise InvalidOption(f"guided search measures only its objective: predictor "
                                f"{predictor!r} cannot use aux_targets "
                                f"{', '.join(probe.aux_targets)} here")
        self.arch_inputs = probe.arch_inputs
        if self.arch_inputs:  # fail early on a signal that is missing for a cell the
            # search may propose: every candidate (milliseconds: cache reads, exact counts),
            # or one sampled cell where the space is not enumerated
            if self.candidates is not None and len(self.candidates):
                self._candidate_features()
            else:
                self._arch_features(space.sample(1, np.random.default_rng(0)))
        self._warm_cols = warm_columns(self.arch_inputs)
        if init == "arch" and not self._warm_cols:
            raise InvalidOption(f"init=arch ranks cells by the predictor's arch-level inputs among "
                             f"{', '.join(WARM_SIGNALS)}, and predictor {predictor!r} is set "
                             f"up with none of them")
        self.init = resolved_init(init, self.arch_inputs)
        self.init_top = init_top
        self._init_from: np.ndarray | list[tuple[Any, str]] | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "predictor": self.predictor_name,
                "predictor_params": self.predictor_params, "n_init": self.n_init,
                "batch": self.batch, "explore": self.explore, "explore_top": self.explore_top,
                "explore_near": self.explore_near,
                "batch_growth": self.batch_growth, "max_fit_steps": self.max_fit_steps,
                "init": self.init, "init_top": self.init_top}

    def _propose(self, n: int) -> list[tuple[Any, str]]:
        out: list[tuple[Any, str]] = []
        while len(out) < n:
            if self._n_random < self.n_init or not self._rankable():
                self._n_random += 1
                pick = self._initial_pick()
                if not pick:
                    break
                out.append(self._claim(pick[0]))
                continue
            if not self._queue:
                self._refill()
                if not self._queue:
                    break
            arch, h = self._queue.pop(0)
            if not self._taken(h):
                out.append(self._claim((arch, h)))
        return out

    def _rankable(self) -> bool:
        """Whether the values told so far can teach a ranking: two different ones at least
        (cells that all failed alike, or all scored chance, keep the search random)."""
        values = [v for _, _, v in self.observed]
        return len(values) >= 2 and any(v != values[0] for v in values)

    # -- the predictor step -----------------------------------------------------------------
    def fit_params(self, n: int) -> dict[str, Any]:
        """Constructor keywords of the predictor for a fit on ``n`` cells."""
        params = dict(self.predictor_params)
        if self._neural and "epochs" not in params:
            from archrank.predictors.neural import auto_batch_size

            epochs = NEURAL_EPOCHS
            if self.max_fit_steps:
                bs = auto_batch_size(n, params.get("batch_size"))
                per_epoch = max(1, -(-n // bs))
                epochs = max(10, min(epochs, self.max_fit_steps // per_epoch))
            params["epochs"] = epochs
        if self._neural:
            params.setdefault("ensemble", NEURAL_ENSEMBLE)
        return params

    def _arch_features(self, archs: Any) -> np.ndarray | None:
        """The predictor's arch-level inputs of ``archs`` (``None`` when it takes none; every
        fit of a search has the same ones). Cells of a table's candidate set may also take
        columns of that table."""
        if not self.arch_inputs:
            return None
        from archrank.signals import arch_matrix

        archs = list(archs)
        table = rows = None
        if self.candidates is not None and self.candidates.table is not None:
            table, rows = self.candidates.table, self.candidates.table_rows(archs)
        return arch_matrix(self.space, archs, self.arch_inputs, table=table, rows=rows)

    def _candidate_features(self) -> np.ndarray | None:
        """The arch-level inputs of every candidate, computed once per search."""
        if self.arch_inputs and self._candidate_arch is None:
            self._candidate_arch = self._arch_features(self.candidates.archs)  # type: ignore[union-attr]
        return self._candidate_arch

    def _batch_size(self) -> int:
        """Proposals per fit: ``batch``, growing with the data (fits get rarer, not cheaper)."""
        return max(self.batch, int(np.ceil(self.batch_growth * len(self.observed))))

    def _fit(self, unlabeled: Any) -> Predictor:
        t0 = time.perf_counter()
        model = make_predictor(self.predictor_name, self.space,
                               seed=derive_seed(self.seed, 1, self.n_fits),
                               **self.fit_params(len(self.observed)))
        archs = [a for a, _, _ in self.observed]
        y = np.array([v for _, _, v in self.observed])
        model.fit(archs, y, unlabeled=unlabeled, arch_features=self._arch_features(archs))
        self.n_fits += 1
        self.fit_seconds += time.perf_counter() - t0
        self.model = model
        return model

    def _refill(self) -> None:
        """Fit on everything told, then queue the next ``batch`` proposals."""
        if self.candidates is not None:
            if self._seen_mask.all():  # type: ignore[union-attr]
                return
            graphs = self.candidates.graphs
            model = self._fit(graphs)
            t0 = time.perf_counter()
            scores = model.predict(graphs, self._candidate_features())
            scores[self._seen_mask] = -np.inf  # type: ignore[index]
            for h in self._claimed:
                if h in self.candidates.index:
                    scores[self.candidates.index[h]] = -np.inf
            k = min(self._batch_size(), int(np.isfinite(scores).sum()))
            if k == 0:
                return
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
            ranked = [(self.candidates.archs[i], self.candidates.hashes[i]) for i in top]
            free = np.flatnonzero(np.isfinite(scores))
            n_top = max(k, int(np.ceil(self.explore_top * len(free))))
            if n_top < len(free):
                free = free[np.argpartition(-scores[free], n_top - 1)[:n_top]]
            explore_from: list[tuple[Any, str | None]] = [
                (self.candidates.archs[i], self.candidates.hashes[i]) for i in free]
            self.score_seconds += time.perf_counter() - t0
        else:
            pool = self._pool()
            graphs = self.space.to_graphs(pool)
            model = self._fit(graphs)
            t0 = time.perf_counter()
            scores = model.predict(graphs, self._arch_features(pool))
            ranked = []
            taken: set[str] = set()
            for i in np.argsort(-scores, kind="stable"):
                h = self.space.hash(pool[i])
                if self._taken(h) or h in taken:
                    continue
                taken.add(h)
                ranked.append((pool[i], h))
                if len(ranked) == self._batch_size():
                    break
            n_top = max(len(ranked), int(np.ceil(self.explore_top * len(pool))))
            top = np.argsort(-scores, kind="stable")[:n_top]
            explore_from = [(pool[i], None) for i in top]
            self.score_seconds += time.perf_counter() - t0
        queue: list[tuple[Any, str]] = []
        taken = {h for _, h in ranked}
        for item in ranked:
            if self.explore > 0 and self.rng.random() < self.explore:
                pick = self._explore_pick(explore_from, taken)
                if pick:
                    taken.add(pick[0][1])
                    queue.append(pick[0])
                    continue
            queue.append(item)
        self._queue = queue

    def _initial_pick(self) -> list[tuple[Any, str]]:
        """One of the first ``n_init`` cells: uniform, or (``init="arch"``) uniform among the
        ``init_top`` fraction ranked best by the arch-level inputs (uniform once those run
        out)."""
        if self.init == "random":
            return self._random_unseen(1)
        from archrank.predictors.neural import rank_reference, rank_transform

        if self._init_from is None:
            if self.candidates is not None:
                feats = self._candidate_features()
            else:
                pool = list(self.space.sample(self.pool_size, self.rng))
                feats = self._arch_features(pool)
            assert feats is not None
            feats = feats[:, self._warm_cols]
            promise = rank_transform(feats, rank_reference(feats)).mean(axis=1)
            k = max(1, int(np.ceil(self.init_top * len(promise))))
            top = np.flatnonzero(promise >= np.partition(promise, len(promise) - k)[-k])
            if self.candidates is not None:
                self._init_from = top
            else:
                cells = [pool[i] for i in top]
                self._init_from = list(zip(cells, self.space.hash_many(cells), strict=True))
        if isinstance(self._init_from, np.ndarray):  # candidate indices (enumerated space)
            idx = self._init_from
            free = idx[~self._seen_mask[idx]]  # type: ignore[index]
            cands = [(self.candidates.archs[i], self.candidates.hashes[i]) for i in free]
        else:
            cands = list(self._init_from)  # type: ignore[arg-type]
        cands = [(a, h) for a, h in cands if not self._taken(h)]
        if not cands:
            return self._random_unseen(1)
        return [cands[int(self.rng.integers(len(cands)))]]

    def _explore_pick(self, options: list[tuple[Any, str | None]],
                      taken: set[str]) -> list[tuple[Any, str]]:
        """An exploration proposal: a random unseen cell among the predicted top
        ``explore_top`` fraction of the candidates (uniform over all when that is 1), or with
        ``explore_near`` the predicted-best unseen neighbour of the best cells told so far."""
        if self.explore_near:
            near = self._near_pick(taken)
            if near:
                return near
        if self.explore_top >= 1.0:
            return self._random_unseen(1, taken)
        for i in self.rng.permutation(len(options)):
            arch, h = options[int(i)]
            h = h if h is not None else self.space.hash(arch)
            if h not in taken and not self._taken(h):
                return [(arch, h)]
        return self._random_unseen(1, taken)

    def _near_pick(self, taken: set[str]) -> list[tuple[Any, str]]:
        """The unseen neighbour (one op or edge changed) of the ``explore_near`` best cells
        told so far that the current model ranks highest: exploration next to what is known
        to be good rather than anywhere in the predicted top (docs/benchmarks.md)."""
        if self.model is None:
            return []
        best = sorted(self.observed, key=lambda t: -t[2])[: self.explore_near]
        index = None if self.candidates is None else self.candidates.index
        near: dict[str, Any] = {}
        for arch, _, _ in best:
            for cell in self.space.neighbours(arch):
                h = self.space.hash(cell)
                if (h not in near and h not in taken and not self._taken(h)
                        and (index is None or h in index)):  # a table's cells only
                    # the candidates' own string of the cell (the one scored, featured and
                    # answered elsewhere), not whichever twin the neighbourhood produced
                    near[h] = cell if index is None else self.candidates.archs[index[h]]
        if not near:
            return []
        cells = list(near.values())
        scores = self.model.predict(cells, self._arch_features(cells))
        i = int(np.argmax(scores))
        return [(cells[i], list(near)[i])]

    def _pool(self) -> list[Any]:
        """Sampled cells plus all neighbours of the best cells told so far."""
        pool = list(self.space.sample(self.pool_size, self.rng))
        best = sorted(self.observed, key=lambda t: -t[2])[: self.top_mutate]
        for arch, _, _ in best:
            pool.extend(self.space.neighbours(arch))
        return pool


def warm_columns(arch_inputs: Sequence[str]) -> list[int]:
    """Positions of the ``WARM_SIGNALS`` among ``arch_inputs`` (any setting suffix)."""
    return [k for k, name in enumerate(arch_inputs) if name.split("@")[0] in WARM_SIGNALS]


def resolved_init(init: str, arch_inputs: Sequence[str]) -> str:
    """How a guided search whose predictor takes ``arch_inputs`` picks its first cells:
    "random" or "arch" ("auto" resolved)."""
    if init != "auto":
        return init
    return "arch" if warm_columns(arch_inputs) else "random"


def _is_neural(name: str) -> bool:
    """Whether predictor ``name`` trains with the shared torch loop (takes ``epochs``)."""
    from archrank.predictors.base import predictor_class
    from archrank.predictors.neural import NeuralPredictor

    return issubclass(predictor_class(name), NeuralPredictor)
