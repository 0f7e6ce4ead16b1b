"""MLP baseline: a plain multi-layer perceptron on the one-hot adjacency+ops encoding.

The "adjacency encoding + MLP" predictor that White et al. (2020, 2021) found to be a strong,
simple baseline. The encoding is computed inside ``forward`` from the ``GraphBatch`` (cheap,
vectorised), so training and saving go through the shared ``NeuralPredictor`` loop.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from archrank.encodings import onehot, onehot_size
from archrank.predictors.neural import NeuralPredictor
from archrank.spaces.base import GraphBatch, SearchSpace


class OneHotMLP(nn.Module):
    """onehot(cell) -> [Linear, ReLU, Dropout] x layers -> Linear -> score."""

    def __init__(self, space: SearchSpace, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.space = space
        blocks: list[nn.Module] = []
        width = onehot_size(space)
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, graphs: GraphBatch) -> torch.Tensor:
        return self.net(onehot(graphs, self.space)).squeeze(-1)


class MLPPredictor(NeuralPredictor):
    """MLP on the one-hot encoding (``archrank.encodings.onehot``)."""

    name = "mlp"
    # No L2 penalty: with Adam, coupled weight decay drives the weights of dead ReLU units
    # geometrically to zero, into subnormal floats that made fitting and scoring ~10x slower on CPU
    # (measured on the GCN baseline: its fit on 1,000 nb201 cells 106 s -> 19 s, same or
    # better Kendall tau).
    positive_params: ClassVar[tuple[str, ...]] = ("hidden",)
    defaults: ClassVar[dict[str, Any]] = {"hidden": 128, "layers": 3, "dropout": 0.1,
                                          "weight_decay": 0.0}

    def build_model(self) -> nn.Module:
        return OneHotMLP(self.space, int(self.hp["hidden"]), int(self.hp["layers"]),
                         float(self.hp["dropout"]))
