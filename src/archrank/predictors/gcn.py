"""GCN baseline in the style of Wen et al. (ECCV 2020, "Neural Predictor for Neural
Architecture Search").

Nodes carry the one-hot of their op; messages flow both ways along the cell's edges through the
symmetric normalised adjacency ``D^-1/2 (A + A^T + I) D^-1/2``; a few graph-convolution layers
are followed by a mean over the cell's nodes and an MLP head.

Op-on-edge cells (nb201) are first rewritten in op-on-node form (``edge_to_node_form``): every
edge that passes information becomes a node carrying its op, the input and output nodes are
kept, and edge-node ``(i, j)`` feeds edge-node ``(j, k)``. The rewrite is a few tensor
operations over the whole batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from archrank.encodings import BLOCKING_EDGE_OPS
from archrank.predictors.neural import NeuralPredictor
from archrank.spaces.base import GraphBatch, SearchSpace


def node_form_vocabulary(space: SearchSpace) -> tuple[str, ...]:
    """Op names of the node-form graph's nodes (``feature`` indices of ``node_form``)."""
    if space.op_on == "node":
        return tuple(space.node_op_names)
    return ("input", "output", *(o for o in space.edge_op_names if o not in BLOCKING_EDGE_OPS))


def edge_to_node_form(graphs: GraphBatch, space: SearchSpace) -> GraphBatch:
    """The op-on-node (line-graph) form of op-on-edge cells.

    Nodes: 0 the input, then one node per possible edge ``i -> j`` (``i < j``, ordered by
    ``i`` then ``j``, which is a topological order), then the output. An edge-node exists when
    its edge passes information (``adj = 1``); ops index ``node_form_vocabulary(space)``.
    """
    assert graphs.edge_ops is not None
    batch, n = graphs.ops.shape
    device = graphs.ops.device
    src, dst = torch.triu_indices(n, n, offset=1, device=device)
    n_edges = src.shape[0]
    live = graphs.adj[:, src, dst] > 0  # [B, E]
    out_node = (graphs.mask.sum(1) - 1).clamp(min=0)  # [B]
    chain = (dst[:, None] == src[None, :]).float()  # [E, E]: edge e ends where e' starts
    livef = live.float()
    m = n_edges + 2
    adj = torch.zeros(batch, m, m, device=device)
    adj[:, 0, 1:-1] = livef * (src == 0).float()
    adj[:, 1:-1, 1:-1] = livef[:, :, None] * livef[:, None, :] * chain
    adj[:, 1:-1, -1] = livef * (dst[None, :] == out_node[:, None]).float()
    # Edge op index -> node-form index (blocking ops map anywhere: those nodes are masked out).
    vocab = node_form_vocabulary(space)
    lookup = torch.tensor([vocab.index(o) if o in vocab else 0 for o in space.edge_op_names],
                          dtype=torch.long, device=device)
    ops = torch.zeros(batch, m, dtype=torch.long, device=device)
    ops[:, 1:-1] = lookup[graphs.edge_ops[:, src, dst]] * live
    ops[:, -1] = 1
    mask = torch.ones(batch, m, dtype=torch.bool, device=device)
    mask[:, 1:-1] = live
    return GraphBatch(ops, adj, mask)


class GCN(nn.Module):
    """Graph convolutions over the bidirectional cell graph, mean readout, MLP head."""

    def __init__(self, space: SearchSpace, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.space = space
        self.n_ops = len(node_form_vocabulary(space))
        self.convs = nn.ModuleList(
            nn.Linear(self.n_ops if i == 0 else hidden, hidden) for i in range(layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, graphs: GraphBatch) -> torch.Tensor:
        if self.space.op_on == "edge":
            graphs = edge_to_node_form(graphs, self.space)
        mask = graphs.mask.float()
        n = graphs.num_nodes
        eye = torch.eye(n, device=mask.device) * mask[:, :, None]
        pair = mask[:, :, None] * mask[:, None, :]
        a = (graphs.adj + graphs.adj.transpose(1, 2)).clamp(max=1.0) * pair + eye
        inv_sqrt = a.sum(2).clamp(min=1.0).rsqrt()
        a = inv_sqrt[:, :, None] * a * inv_sqrt[:, None, :]
        h = nn.functional.one_hot(graphs.ops, self.n_ops).float() * mask[..., None]
        for conv in self.convs:
            h = self.dropout(torch.relu(a @ conv(h)))
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


class GCNPredictor(NeuralPredictor):
    """Wen et al.-style GCN predictor (see module doc)."""

    name = "gcn"
    # No L2 penalty: with Adam, coupled weight decay drives the weights of dead ReLU units
    # geometrically to zero, into subnormal floats that made fitting and scoring ~10x slower on CPU
    # (measured: GCN fit on 1,000 nb201 cells 106 s -> 19 s, same or better Kendall tau).
    positive_params: ClassVar[tuple[str, ...]] = ("hidden", "layers")
    defaults: ClassVar[dict[str, Any]] = {"hidden": 128, "layers": 3, "dropout": 0.0,
                                          "weight_decay": 0.0}

    def build_model(self) -> nn.Module:
        return GCN(self.space, int(self.hp["hidden"]), int(self.hp["layers"]),
                   float(self.hp["dropout"]))
