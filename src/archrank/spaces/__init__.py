"""Search spaces: one abstraction (``SearchSpace``), several spaces, looked up by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from archrank.errors import ArchrankError
from archrank.spaces.base import GraphBatch, SearchSpace


def _nb101() -> SearchSpace:
    from archrank.spaces.nb101 import NB101Space

    return NB101Space()


def _nb201() -> SearchSpace:
    from archrank.spaces.nb201 import NB201Space

    return NB201Space()


def _darts() -> SearchSpace:
    from archrank.spaces.darts import DartsSpace

    return DartsSpace()


def _nbgraph() -> SearchSpace:
    from archrank.spaces.nbgraph import NBGraphSpace

    return NBGraphSpace()


SPACES: dict[str, Callable[[], SearchSpace]] = {
    "nb101": _nb101,
    "nb201": _nb201,
    "nbgraph": _nbgraph,
    "darts": _darts,
}


@cache
def get_space(name: str) -> SearchSpace:
    """The search space called ``name`` (one shared instance per name)."""
    try:
        factory = SPACES[name]
    except KeyError:
        raise ArchrankError(
            f"unknown search space {name!r}; choose one of: {', '.join(SPACES)}"
        ) from None
    return factory()


__all__ = ["SPACES", "GraphBatch", "SearchSpace", "get_space"]
