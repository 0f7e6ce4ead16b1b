"""Search strategies behind one ask/tell interface (``Strategy``), looked up by name.

Names: ``random``, ``rea`` (regularized evolution), ``ls`` (local search), ``guided``
(predictor-guided, with ``predictor=NAME``), and every registered predictor name as a shorthand
for guided search with that predictor (``gates``, ``ssa``, ...).
"""

from __future__ import annotations

from typing import Any

from archrank.errors import ArchrankError
from archrank.spaces.base import SearchSpace
from archrank.strategies.base import CandidateSet, Strategy, derive_seed
from archrank.strategies.evolution import RegularizedEvolution
from archrank.strategies.guided import GuidedSearch
from archrank.strategies.local import LocalSearch
from archrank.strategies.random import RandomSearch

STRATEGIES: dict[str, type[Strategy]] = {
    "random": RandomSearch,
    "rea": RegularizedEvolution,
    "ls": LocalSearch,
    "guided": GuidedSearch,
}
DEFAULT_PREDICTOR = "gates"


def predictor_names() -> list[str]:
    import archrank.predictors  # noqa: F401  (registers the predictors)
    from archrank.predictors.base import PREDICTORS

    return sorted(set(PREDICTORS) | {DEFAULT_PREDICTOR})


def resolve_strategy(name: str, predictor: str | None = None) -> tuple[str, str | None]:
    """Canonical ``(strategy, predictor)`` for a user's ``--strategy`` / ``--predictor``.

    ``gates`` (any predictor name) means guided search with that predictor; a predictor given
    with a strategy that uses none is an error.
    """
    name = name.strip().lower()
    if name in STRATEGIES and name != "guided":
        if predictor is not None:
            raise ArchrankError(
                f"--predictor applies to guided search only, not to --strategy {name}"
            )
        return name, None
    if name == "guided":
        return "guided", predictor or DEFAULT_PREDICTOR
    if name in predictor_names():
        if predictor is not None and predictor != name:
            raise ArchrankError(
                f"--strategy {name} already names a predictor; got --predictor {predictor} too"
            )
        return "guided", name
    raise ArchrankError(
        f"unknown strategy {name!r}; choose from: "
        f"{', '.join([*STRATEGIES, *predictor_names()])}"
    )


def strategy_label(strategy: str, predictor: str | None) -> str:
    """Short display name: the predictor's name for guided search."""
    return predictor if strategy == "guided" and predictor else strategy


def make_strategy(name: str, space: SearchSpace, *, predictor: str | None = None,
                  **kwargs: Any) -> Strategy:
    """Build a strategy by (user-facing) name; ``kwargs`` go to its constructor."""
    strategy, predictor = resolve_strategy(name, predictor)
    if strategy == "guided":
        kwargs["predictor"] = predictor
    return STRATEGIES[strategy](space, **kwargs)


__all__ = [
    "STRATEGIES",
    "CandidateSet",
    "GuidedSearch",
    "LocalSearch",
    "RandomSearch",
    "RegularizedEvolution",
    "Strategy",
    "derive_seed",
    "make_strategy",
    "resolve_strategy",
    "strategy_label",
]
