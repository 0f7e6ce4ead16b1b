"""Structural signals: exact statistics of a cell's graph, for a whole batch of cells at once.

Arch-level inputs of predictors (GATES++'s ``arch_inputs``, ``archrank.signals``) known for
every cell without building or training its network, so they cost nothing on the 423,624
cells of NAS-Bench-101 where per-cell zero-cost proxies take seconds. A graph network can in
principle learn them from the cell; with 100 labels it learns them only roughly, and on
nb101 several rank the cells on their own (Kendall tau against val_acc_108 over the 10,000
table cells: ``n_conv3x3-bn-relu`` 0.41, ``shortest`` -0.36, ``n_maxpool3x3`` -0.38,
``fanout`` 0.36, parameters 0.32; docs/benchmarks.md).

depth     longest input-to-output path, in edges (-1 when the output is unreachable)
shortest  shortest input-to-output path, in edges (-1 when unreachable): a short one is a
          shortcut past the cell's ops
wdepth    most ops with weights (convolutions, ``archrank.opinfo``'s ``has_params``) on one
          input-to-output path (-1 when unreachable)
fanout    live edges leaving the cell's input node
fanin     live edges entering its output node
n_OP      live nodes (op-on-node spaces) or live edges (op-on-edge spaces) that carry op
          ``OP`` of the space's vocabulary, e.g. ``n_conv3x3-bn-relu`` on nb101,
          ``n_nor_conv_3x3`` on nb201

Edges are those that carry information (``GraphBatch.adj``: a ``none`` edge carries none), and
live ones lie on some input-to-output path: an edge into a dead end changes nothing the cell
computes, so two cells the space hashes alike get the same signals. Op-on-edge spaces have no
``n_none``. The signals describe one cell with one input node (nb101, nb201, nbgraph); darts
genotypes, a normal and a reduction cell with two inputs each, have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from archrank.errors import ArchrankError

PATH_SIGNALS = ("depth", "shortest", "wdepth", "fanout", "fanin")
_UNREACHABLE = -1.0
# node ops every cell has exactly one of
_FIXED_NODES = ("input", "output")


def structure_names(space: Any) -> tuple[str, ...]:
    """Every structural signal of ``space``: the path statistics (``wdepth`` only where
    ``archrank.opinfo`` says which ops have weights) and one count per op."""
    if not has_structure(space):
        raise ArchrankError(
            f"structural signals describe one cell with one input node (nb101, nb201, "
            f"nbgraph); a {space.name} genotype joins cells with {space.num_inputs} inputs "
            f"each, whose paths and op counts these signals would pool")
    paths = PATH_SIGNALS if _weighted_ops(space) is not None else tuple(
        p for p in PATH_SIGNALS if p != "wdepth")
    return (*paths, *(f"n_{op}" for op in _vocabulary(space)))


def has_structure(space: Any) -> bool:
    """Whether ``space`` has structural signals (single-cell spaces with one input)."""
    return int(getattr(space, "num_inputs", 1)) == 1


def structure_matrix(space: Any, archs: Sequence[Any], names: Sequence[str]) -> np.ndarray:
    """Structural signals ``names`` of ``archs`` [len(archs), len(names)] (float64)."""
    valid = structure_names(space)
    for n in names:
        if n not in valid:
            raise ArchrankError(f"unknown structural signal {n!r} for space {space.name}; "
                                f"choose from {', '.join(valid)}")
    if not len(archs):
        return np.zeros((0, len(names)))
    stats = _statistics(space, space.to_graphs(list(archs)))
    return np.stack([stats[n] for n in names], axis=1)


def _vocabulary(space: Any) -> tuple[str, ...]:
    """Ops worth counting: those of a cell's nodes but its input and output (one each in
    every cell), or of its information-carrying edges (``none`` blocks information, so it is
    on no such edge)."""
    if space.op_on == "edge":
        return tuple(op for op in space.edge_op_names if op != "none")
    return tuple(op for op in space.node_op_names if op not in _FIXED_NODES)


def _weighted_ops(space: Any) -> torch.Tensor | None:
    """bool [ops of the vocabulary GATES gates with]: which ops have weights (``None`` for a
    space ``archrank.opinfo`` does not describe)."""
    from archrank.opinfo import op_features

    try:
        table = op_features(space, "linear")
    except ArchrankError:
        return None
    return torch.as_tensor(table.matrix[:, table.columns.index("has_params")] > 0)


def _statistics(space: Any, g: Any) -> dict[str, np.ndarray]:
    """All structural signals of the batch ``g``, one vector [B] each (loops over the few
    node positions, never over cells)."""
    adj = g.adj > 0  # [B, N, N]
    bsz, n = adj.shape[0], adj.shape[1]
    n_in = int(getattr(space, "num_inputs", 1))
    weighted = _weighted_ops(space)
    if weighted is None:  # no wdepth here (structure_names leaves it out)
        w_edge = torch.zeros_like(adj)
    elif space.op_on == "edge":
        assert g.edge_ops is not None
        w_edge = weighted[g.edge_ops] & adj  # [B, N, N] edge i -> j carries weights
    else:
        w_edge = weighted[g.ops].unsqueeze(1) & adj  # the op sits on the edge's end node j
    neg = torch.full((bsz,), float("-inf"), dtype=torch.float64)
    longest = torch.full((bsz, n), float("-inf"), dtype=torch.float64)
    most_w = longest.clone()
    short = torch.full((bsz, n), float("inf"), dtype=torch.float64)
    longest[:, :n_in] = most_w[:, :n_in] = short[:, :n_in] = 0.0
    for j in range(n_in, n):
        into = adj[:, :j, j]  # [B, j]
        steps = w_edge[:, :j, j].double()
        longest[:, j] = torch.where(into, longest[:, :j] + 1, neg[:, None]).amax(dim=1)
        most_w[:, j] = torch.where(into, most_w[:, :j] + steps, neg[:, None]).amax(dim=1)
        short[:, j] = torch.where(into, short[:, :j] + 1, -neg[:, None]).amin(dim=1)
    out_idx = (g.mask.sum(dim=1) - 1).long()  # the output is the last real node
    rows = torch.arange(bsz)
    # live edges: on some input-to-output path (an edge into a dead end, or out of a node no
    # input reaches, changes nothing the cell computes; the spaces' hashes prune them too)
    from_input = torch.isfinite(longest)  # [B, N]
    to_output = torch.zeros(bsz, n, dtype=torch.bool)
    to_output[rows, out_idx] = True
    for i in range(n - 2, -1, -1):
        to_output[:, i] |= (adj[:, i, i + 1:] & to_output[:, i + 1:]).any(dim=1)
    live = adj & from_input.unsqueeze(2) & to_output.unsqueeze(1)
    live_nodes = from_input & to_output & g.mask

    def at_output(x: torch.Tensor) -> np.ndarray:
        v = x[rows, out_idx]
        return torch.where(torch.isfinite(v), v, torch.full_like(v, _UNREACHABLE)).numpy()

    stats = {"depth": at_output(longest), "shortest": at_output(short),
             "wdepth": at_output(most_w),
             "fanout": live[:, :n_in, :].sum(dim=(1, 2)).double().numpy(),
             "fanin": live[rows, :, out_idx].sum(dim=1).double().numpy()}
    for op in _vocabulary(space):
        if space.op_on == "edge":
            k = space.edge_op_names.index(op)
            stats[f"n_{op}"] = ((g.edge_ops == k) & live).sum(dim=(1, 2)).double().numpy()
        else:
            k = space.node_op_names.index(op)
            stats[f"n_{op}"] = ((g.ops == k) & live_nodes).sum(dim=1).double().numpy()
    return stats


__all__ = ["PATH_SIGNALS", "has_structure", "structure_matrix", "structure_names"]
