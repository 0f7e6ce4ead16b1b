"""Which sub-network a supernet training step trains: pluggable architecture samplers.

The trainer asks ``sampler.sample(step)`` for the path codes of global step ``step``; the
built-in samplers derive them from ``(seed, step)`` alone, so a resumed training, or every rank
of a data-parallel one, draws the same paths as an uninterrupted single-process run. A
sampler that learns as it goes (proxy-guided sampling, the next method) keeps its state in
``state_dict``/``load_state_dict``, which the checkpoint stores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from archrank.errors import ArchrankError
from archrank.spaces.base import SearchSpace


class ArchSampler(ABC):
    """Proposes the path of each training step for a supernet over ``space``."""

    name: str = "custom"
    # whether it may run under DDP (every rank proposes the same path from the same state);
    # one that runs the model outside DDP's forward must say no
    distributed: bool = True

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = int(seed)

    @abstractmethod
    def sample(self, step: int) -> np.ndarray:
        """Path codes (one op index per edge, ``space.codes`` order) of global step ``step``."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed training needs to continue identically (nothing for stateless ones)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore ``state_dict``'s output (nothing to do for stateless samplers)."""

    def info(self) -> dict[str, Any]:
        """What a finished search reports about the sampler (a learned distribution's
        entropy, ...); nothing for the built-in ones."""
        return {}

    def forward(self, model: Any, x: Any, codes: tuple[int, ...], step: int) -> Any:
        """The logits the trainer's step ``step`` learns from: the path ``codes`` of ``model``
        on the batch ``x``. A relaxation (DARTS: mixed ops) overrides this."""
        return model(x, codes)

    def after_step(self, step: int, codes: tuple[int, ...], net: Any) -> None:  # noqa: B027
        """Called by the trainer after global step ``step`` trained path ``codes`` of ``net``
        (the unwrapped supernet, train mode): a learning sampler observes here (proxy
        validation scores the path on a validation batch). Nothing for the built-in ones."""


class UniformSampler(ArchSampler):
    """SPOS: a cell drawn uniformly from the space at each step (op-on-edge spaces: every
    edge's op independently), through the space's ``random_codes``."""

    name = "uniform"

    def sample(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(step)])
        try:
            return self.space.random_codes(1, rng)[0]
        except NotImplementedError:
            raise ArchrankError(f"space {self.space.name!r} has no supernet paths to sample"
                                ) from None


class FairSampler(ArchSampler):
    """Strict fairness (FairNAS style): in every block of K steps (K ops), each op slot runs
    each op exactly once, so all ops get the same number of updates. The space makes the
    rounds (``fair_codes``: on nb201 a random order per edge; on darts per (op, input)
    slot, with uniform inputs)."""

    name = "fair"

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.round_len = 0
        if space is not None:  # fail at construction, not at the first training step
            try:
                self.round_len = len(space.fair_codes(np.random.default_rng(0)))
            except NotImplementedError:
                raise ArchrankError(f"space {space.name!r} has no fair sampling") from None

    def sample(self, step: int) -> np.ndarray:
        block, pos = divmod(int(step), self.round_len)
        return self.space.fair_codes(np.random.default_rng([self.seed, block, 1]))[pos]


SAMPLERS: dict[str, type[ArchSampler]] = {"uniform": UniformSampler, "fair": FairSampler}


def make_sampler(name: str, space: SearchSpace, seed: int = 0) -> ArchSampler:
    try:
        return SAMPLERS[name](space, seed)
    except KeyError:
        raise ArchrankError(
            f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}"
        ) from None


def alpha_info(alpha: torch.Tensor) -> dict[str, Any]:
    """Entropy (nats, mean over edges; uniform over K ops: log K) and the largest probability
    per edge of the distribution ``softmax(alpha)`` [E, K]: how far it has collapsed."""
    p = torch.softmax(alpha.detach().double(), -1)
    entropy = -(p * p.clamp_min(1e-300).log()).sum(1)
    return {"alpha_entropy": round(float(entropy.mean()), 4),
            "alpha_max_prob": [round(float(v), 4) for v in p.max(1).values]}
