"""A trained supernet as an oracle: any strategy or predictor of archrank can query it.

``SupernetOracle(checkpoint)`` answers with the inherited-weight validation accuracy (the
objective, percent) and loss of a cell's sub-network, plus its exact params and FLOPs at the
supernet's setting; the cost is the seconds scoring took. It lives in the engine package
(``archrank.oracles`` does not import the engine).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from archrank.errors import ArchrankError
from archrank.oneshot.checkpoint import load_checkpoint
from archrank.oneshot.scoring import ScoreOptions, SubnetScorer
from archrank.oracles.base import Evaluation, Oracle
from archrank.tables.table import content_fingerprint


class SupernetOracle(Oracle):
    """Scores cells with a trained supernet's shared weights (see the module docstring)."""

    objective = "val_acc"

    def __init__(self, checkpoint: str | Path, *, space: str | None = None,
                 options: ScoreOptions | None = None, dataset: Any = None) -> None:
        self.path = Path(checkpoint).expanduser().resolve()
        ckpt = load_checkpoint(self.path, space=space)
        if not ckpt.finished:
            raise ArchrankError(f"{self.path}: the supernet trained {ckpt.epoch} of "
                                f"{ckpt.recipe.epochs} epochs; finish it with archrank "
                                "oneshot train --resume")
        self.scorer = SubnetScorer.from_checkpoint(ckpt, dataset, options=options)
        self.space = self.scorer.supernet.space
        # the content fingerprint makes a resume on a retrained checkpoint a clear error
        self._describe = {"checkpoint": str(self.path),
                          "fingerprint": content_fingerprint(self.path),
                          "setting": ckpt.setting.to_dict(),
                          "data": ckpt.data, "epochs": ckpt.epoch, "seed": ckpt.seed,
                          "scoring": asdict(self.scorer.options)}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._describe}

    def evaluate(self, arch: Any) -> Evaluation:
        start = time.perf_counter()
        try:
            codes = self.scorer.encode([arch])
            scores = self.scorer.score_codes(codes)
            costs = self.scorer.supernet.costs(codes)
        except Exception as exc:  # a bad arch is a failed evaluation, not a crash
            return Evaluation(status="failed", cost=time.perf_counter() - start,
                              error=f"{type(exc).__name__}: {exc}"[:500])
        metrics = {"val_acc": float(scores["val_acc"][0]), "val_loss": float(scores["val_loss"][0]),
                   "params": float(costs["params"][0]), "flops": float(costs["flops"][0])}
        return Evaluation(metrics=metrics, cost=time.perf_counter() - start)
