"""Search strategies behind one ask/tell interface (``Strategy``), looked up by name.

Names: ``random``, ``rea`` (regularized evolution), ``ls`` (local search), ``guided``
(predictor-guided, with ``predictor=NAME``), and every registered predictor name as a shorthand
for guided search with that predictor (``gates``, ``ssa``, ...).
"""

from __future__ import annotations

from typing import Any

from archrank.errors import ArchrankError, InvalidOption
from archrank.params import check_kwargs, declared_kwargs
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
                  predictor_defaults: bool = True, **kwargs: Any) -> Strategy:
    """Build a strategy by (user-facing) name; ``kwargs`` go to its constructor. For guided
    search, ``predictor_defaults`` fills the options the predictor declares for the space
    (``Predictor.guided_defaults``) where ``kwargs`` sets none."""
    strategy, predictor = resolve_strategy(name, predictor)
    cls = STRATEGIES[strategy]
    owner = f"strategy {strategy_label(strategy, predictor)!r}"
    options = {k: v for k, v in kwargs.items() if k not in _INTERNAL}
    checked = check_kwargs(owner, options, *declared_kwargs(cls, ("space", *_INTERNAL)))
    kwargs.update({k: checked[k] for k in options})
    if strategy == "guided":
        kwargs["predictor"] = predictor
        _check_predictor(predictor, space, kwargs.get("predictor_params"))
        if predictor_defaults:
            for key, value in guided_defaults(predictor, space.name).items():
                kwargs.setdefault(key, value)  # the predictor's measured setting, unless set
    try:
        return cls(space, **kwargs)
    except (ValueError, TypeError) as exc:  # a range the strategy checks itself
        raise InvalidOption(f"{owner}: {exc}") from None


# Constructor keywords that are the search's, not options a user sets, and what sets them.
SEARCH_SETTINGS = {"seed": "--seed", "objective": "--metric", "candidates":
                   "--space-from-bench / the space", "predictor": "--predictor"}
_INTERNAL = tuple(SEARCH_SETTINGS)


def guided_defaults(predictor: str | None, space: str) -> dict[str, Any]:
    """The guided-search options ``predictor`` declares for ``space``
    (``Predictor.guided_defaults``; none for most)."""
    from archrank.predictors.base import predictor_class

    return dict(predictor_class(predictor or DEFAULT_PREDICTOR).guided_defaults.get(space, {}))


def _check_predictor(name: str | None, space: SearchSpace,
                     params: dict[str, Any] | None) -> None:
    """Build (not fit) the guided search's predictor once, so a bad ``predictor.X`` option
    fails before the first evaluation rather than at the first fit."""
    from archrank.predictors.base import make_predictor

    try:
        make_predictor(name or DEFAULT_PREDICTOR, space, **(params or {}))
    except (ValueError, TypeError) as exc:
        text = str(exc)  # an InvalidOption of the predictor already names it
        raise InvalidOption(text if text.startswith("predictor ") else
                            f"predictor {name!r}: {text}") from None


__all__ = [
    "STRATEGIES",
    "CandidateSet",
    "GuidedSearch",
    "LocalSearch",
    "RandomSearch",
    "RegularizedEvolution",
    "Strategy",
    "derive_seed",
    "guided_defaults",
    "make_strategy",
    "resolve_strategy",
    "strategy_label",
]
