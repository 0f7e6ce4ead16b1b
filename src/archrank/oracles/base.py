"""The oracle abstraction: answer "how good is architecture A" and say what it cost.

Oracles are shipped to worker processes (process pools, Dask), so they must be picklable and
must not rely on state mutated by ``evaluate``; counting queries is the caller's job (the
search run records every evaluation), although oracles may keep a local count for convenience.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from archrank.spaces.base import SearchSpace


@dataclass(frozen=True)
class Evaluation:
    """Result of evaluating one architecture.

    ``metrics`` holds every number the oracle knows (the objective among them); ``cost`` is
    the training time in seconds this evaluation stands for (recorded in the table, or
    measured); a failed evaluation has ``status="failed"`` and an ``error`` message.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Oracle(ABC):
    """Evaluates architectures of ``space``; ``objective`` names the metric to maximise."""

    space: SearchSpace
    objective: str

    @abstractmethod
    def evaluate(self, arch: Any) -> Evaluation:
        """Evaluate one architecture; never raises for a failed training (status="failed")."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description, recorded in run directories so a resume cannot change it."""
        return {"oracle": type(self).__name__, "space": self.space.name,
                "objective": self.objective}
