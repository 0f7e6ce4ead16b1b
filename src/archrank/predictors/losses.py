"""Training losses for score predictors.

Ranking is what predictor-based NAS needs, so the pairwise hinge loss of GATES (Ning et al.,
2020) only asks that the better cell of each pair scores at least ``margin`` higher; the MSE
loss regresses standardised targets; ``combined`` adds both. All take ``scores`` [B] and
standardised targets ``y`` [B] and return a scalar.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from archrank.errors import ArchrankError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES = ("hinge", "mse", "combined")


def hinge_ranking_loss(scores: torch.Tensor, y: torch.Tensor, margin: float = 0.1,
                       max_pairs: int | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean of ``relu(margin - (s_i - s_j))`` over the pairs with ``y_i > y_j`` (ties skipped).

    Every ordered pair of the batch is used (a batch of 128 has ~8k pairs, cheap as one dense
    [B, B] matrix); ``max_pairs`` subsamples them when batches are very large.
    """
    diff_y = y[:, None] - y[None, :]
    better = diff_y > 0
    if max_pairs is not None and int(better.sum()) > max_pairs:
        i, j = better.nonzero(as_tuple=True)
        keep = torch.randperm(len(i), generator=generator, device=i.device)[:max_pairs]
        return F.relu(margin - (scores[i[keep]] - scores[j[keep]])).mean()
    # Masked mean with fixed shapes (no data-dependent indexing): cheaper per step.
    weight = better.to(scores.dtype)
    diff_s = scores[:, None] - scores[None, :]
    return (F.relu(margin - diff_s) * weight).sum() / weight.sum().clamp(min=1.0)


def mse_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error against the (standardised) targets."""
    return F.mse_loss(scores, y)


def make_loss(kind: str, margin: float = 0.1, mse_weight: float = 1.0) -> LossFn:
    """The loss called ``kind``: ``hinge``, ``mse`` or ``combined`` (hinge + mse_weight * mse)."""
    if kind == "hinge":
        return lambda s, y: hinge_ranking_loss(s, y, margin)
    if kind == "mse":
        return mse_loss
    if kind == "combined":
        return lambda s, y: hinge_ranking_loss(s, y, margin) + mse_weight * mse_loss(s, y)
    raise ArchrankError(f"unknown loss {kind!r}; choose one of: {', '.join(LOSSES)}")
