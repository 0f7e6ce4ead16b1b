"""LSTM baseline: a recurrent network reading the cell as a sequence of tokens.

- Op-on-node cells: one token per node in topological order, the one-hot of its op plus its
  incoming adjacency (which earlier nodes feed it); the score is read from the hidden state at
  the output node (padding comes after it, so it never influences the score).
- Op-on-edge cells: one token per possible edge ``i -> j`` (ordered by target, then source, the
  NAS-Bench-201 string order), the one-hot of its op plus one-hots of ``i`` and ``j`` and
  whether it passes information; the score is read after the last token.

Tokens are projected to an embedding, fed through the LSTM, and a small head scores the state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from archrank.predictors.neural import NeuralPredictor
from archrank.spaces.base import GraphBatch, SearchSpace


def token_width(space: SearchSpace) -> int:
    n = space.max_nodes
    if space.op_on == "node":
        return len(space.node_op_names) + n + 1
    return len(space.edge_op_names) + 2 * n + 1


def tokens(graphs: GraphBatch, space: SearchSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """Token features [B, T, token_width(space)] and the position to read the score at [B]."""
    batch, n = graphs.ops.shape
    device = graphs.ops.device
    one_hot = nn.functional.one_hot
    if space.op_on == "node":
        mask = graphs.mask.float()[..., None]
        feats = torch.cat([
            one_hot(graphs.ops, len(space.node_op_names)).float() * mask,
            graphs.adj.transpose(1, 2).float(),  # row v: which nodes feed v
            mask,
        ], dim=2)
        return feats, (graphs.mask.sum(1) - 1).clamp(min=0)
    assert graphs.edge_ops is not None
    # Edges by target, then source: (0,1), (0,2), (1,2), (0,3), ...
    dst, src = torch.tril_indices(n, n, offset=-1, device=device)
    live = graphs.adj[:, src, dst].float()[..., None]
    ends = torch.cat([one_hot(src, n), one_hot(dst, n)], dim=1).float()
    feats = torch.cat([
        one_hot(graphs.edge_ops[:, src, dst], len(space.edge_op_names)).float(),
        ends[None].expand(batch, -1, -1),
        live,
    ], dim=2)
    return feats, torch.full((batch,), src.shape[0] - 1, dtype=torch.long, device=device)


class CellLSTM(nn.Module):
    def __init__(self, space: SearchSpace, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.space = space
        self.embed = nn.Linear(token_width(space), embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, graphs: GraphBatch) -> torch.Tensor:
        feats, read_at = tokens(graphs, self.space)
        states, _ = self.lstm(self.embed(feats))  # [B, T, H]
        last = states[torch.arange(states.shape[0], device=states.device), read_at]
        return self.head(last).squeeze(-1)


class LSTMPredictor(NeuralPredictor):
    """LSTM over the op sequence (see module doc)."""

    name = "lstm"
    # No L2 penalty: with Adam, coupled weight decay drives the weights of dead ReLU units
    # geometrically to zero, into subnormal floats that made fitting and scoring ~10x slower on CPU
    # (measured on the GCN baseline: its fit on 1,000 nb201 cells 106 s -> 19 s, same or
    # better Kendall tau).
    positive_params: ClassVar[tuple[str, ...]] = ("embed", "hidden", "lstm_layers")
    defaults: ClassVar[dict[str, Any]] = {"embed": 64, "hidden": 128, "lstm_layers": 1,
                                          "weight_decay": 0.0}

    def build_model(self) -> nn.Module:
        return CellLSTM(self.space, int(self.hp["embed"]), int(self.hp["hidden"]),
                        int(self.hp["lstm_layers"]))
