"""GATES++ training variants measured on nb101 at 100 labels (session 10) and not kept.

Runs ``archrank`` with two extra loss names and one extra predictor registered, so that
``bench predictor`` measures them exactly as the figures in docs/benchmarks.md were taken:

* ``--set gates++.loss=hinge_gap``: the pairwise hinge loss with each pair weighted by its
  target gap (pairs closer than the labels' noise count little);
* ``--set gates++.loss=listmle``: ListMLE, the Plackett-Luce likelihood of the batch's order;
* ``--predictors gates++pt``: GATES++ whose graph encoder is first trained to predict the
  exact, cheap signals (FLOPs, parameters, structural signals, rank-transformed) of 4,000
  cells sampled from the space (``--set gates++pt.pt_steps=N``, default 300).

    python benchmarks/training_variants.py bench predictor --space nb101 \\
        --bench ../shared/data/nb101_10k.csv --metric val_acc_108 --predictors gates++ \\
        --train-sizes 100 --seeds 10 --aux-targets val_acc_4,val_acc_12,val_acc_36 \\
        --set gates++.loss=listmle --json out.json
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import archrank.predictors.neural as neural
from archrank.predictors.base import register, signal_names
from archrank.predictors.gates_pp import GatesPPPredictor
from archrank.signals import arch_matrix


def gap_hinge_loss(scores: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """The hinge loss with each pair weighted by its target gap ``y_i - y_j``."""
    weight = (y[:, None] - y[None, :]).clamp(min=0.0)
    diff_s = scores[:, None] - scores[None, :]
    return (F.relu(margin - diff_s) * weight).sum() / weight.sum().clamp(min=1e-12)


def listmle_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of the batch's true order under Plackett-Luce."""
    s = scores[torch.argsort(y, descending=True)]
    return (torch.logcumsumexp(s.flip(0), dim=0).flip(0) - s).mean()


_make_loss = neural.make_loss


def make_loss(kind: str, margin: float = 0.1, mse_weight: float = 1.0) -> Any:
    if kind == "hinge_gap":
        return lambda s, y: gap_hinge_loss(s, y, margin)
    if kind == "listmle":
        return listmle_loss
    return _make_loss(kind, margin, mse_weight)


class PretrainedGatesPP(GatesPPPredictor):
    """GATES++ whose encoder first regresses cheap signals of sampled cells (see above)."""

    name: ClassVar[str] = "gates++pt"
    defaults: ClassVar[dict[str, Any]] = {
        **GatesPPPredictor.defaults, "pt_cells": 4000, "pt_steps": 300,
        "pt_signals": "flops,params,structure", "pt_lr": 1e-3}

    def build_model(self) -> nn.Module:
        net = super().build_model()
        steps = int(self.hp["pt_steps"])
        if steps <= 0:
            return net
        if not hasattr(self, "_pool"):
            cells = self.space.sample(int(self.hp["pt_cells"]), np.random.default_rng(12345))
            sig = arch_matrix(self.space, cells,
                              signal_names(self.hp["pt_signals"], self.space))
            sig = neural.rank_transform(sig, neural.rank_reference(sig))
            keep = sig.std(0) > 1e-6
            self._pool = (self.space.to_graphs(cells),
                          torch.as_tensor(sig[:, keep], dtype=torch.float32))
        graphs, targets = self._pool
        head = nn.Linear(net.gates.embed_width, targets.shape[1])
        opt = torch.optim.Adam([*net.gates.parameters(), *head.parameters()],
                               lr=float(self.hp["pt_lr"]))
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
        for _ in range(steps):
            idx = torch.randint(0, len(graphs), (128,), generator=gen)
            loss = ((head(net.gates.embed(graphs[idx])) - targets[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return net


if __name__ == "__main__":
    neural.make_loss = make_loss
    neural.LOSSES = (*neural.LOSSES, "hinge_gap", "listmle")
    register("gates++pt", f"{__name__}:PretrainedGatesPP")
    from archrank.cli import run

    sys.exit(run(sys.argv[1:]))
