"""Fixed-length feature vectors of cells, for the baseline predictors (MLP, trees).

Both encodings are computed from a ``GraphBatch`` with dense tensor operations over the whole
batch (no Python loop per architecture), so a whole space can be encoded in seconds.

- ``onehot``: the flattened upper triangle of the adjacency matrix plus one-hot node ops (and
  one-hot edge ops on op-on-edge spaces), the "adjacency" encoding of White et al. (2020).
  Cells smaller than ``space.max_nodes`` (NB101) are padded by this convention: the output
  node is moved to the last slot and the padding slots sit between the last interior node and
  the output, with all-zero rows, columns and op one-hots. The input, the output and the
  edges into the output therefore always occupy the same columns whatever the cell's size.
  (Like every adjacency encoding it depends on the node order, so two isomorphic cells
  written in different orders may encode differently.)
- ``path_encoding``: the BANANAS path encoding (White et al., AAAI 2021): one indicator per
  possible op sequence, set when some input-to-output path of the cell carries that sequence.
  On op-on-node spaces a path's sequence is the ops of its interior nodes (length 0 to
  ``max_nodes - 2``: 364 features for nb101); on op-on-edge spaces it is the ops of its edges
  (length 1 to ``max_nodes - 1``, ``none`` edges carry nothing: 84 features for nb201).
  Nodes are in topological order, so every path is an increasing node sequence: the
  ``2**(max_nodes - 2)`` candidate paths are fixed per space, and for a whole batch at once
  tensor gathers tell which exist (all their edges do) and which op sequence each carries.
  This replaced a dynamic programme over the topological order (counts of paths per sequence,
  node by node), which carried a [B, N, features] tensor and was several times slower (423,624
  nb101 cells: 104 s against 16 s on a busy 2-core machine); both give the same counts as
  listing the paths one by one (tests/test_encodings.py). Mind the output's size: the path
  encoding of all of nb101 is 423,624 x 364 floats (600 MB); encode big sets in chunks.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from archrank.errors import ArchrankError
from archrank.spaces.base import GraphBatch, SearchSpace

#: Node ops that mark a cell's ends rather than an operation (never part of a path).
TERMINAL_NODE_OPS = ("input", "output")
#: Edge ops that block information (never part of a path).
BLOCKING_EDGE_OPS = ("none",)

# Cells per chunk of ``path_encoding`` (bounds the [B, paths, hops] index tensors).
_CHUNK_CELLS = 16384


# -- one-hot ----------------------------------------------------------------------------------
def _output_last(graphs: GraphBatch) -> torch.Tensor:
    """For each cell, the source node of each slot once the output is moved to the last slot.

    ``perm[b, s]`` is ``s`` for real non-output nodes, the output node for ``s = N - 1``, and a
    padding node (masked out) for the slots in between.
    """
    batch, n = graphs.ops.shape
    size = graphs.mask.sum(1, keepdim=True)  # [B, 1]
    slot = torch.arange(n, device=graphs.ops.device).expand(batch, n)
    perm = torch.where(slot < size - 1, slot, (slot + 1).clamp(max=n - 1))
    perm[:, n - 1] = (size[:, 0] - 1).clamp(min=0)
    return perm


def onehot_size(space: SearchSpace) -> int:
    """Length of ``onehot(graphs, space)``."""
    n = space.max_nodes
    size = n * (n - 1) // 2 + n * len(space.node_op_names)
    if space.op_on == "edge":
        size += n * (n - 1) // 2 * len(space.edge_op_names)
    return size


def onehot(graphs: GraphBatch, space: SearchSpace) -> torch.Tensor:
    """float32 [B, onehot_size(space)]: upper-triangular adjacency, node ops, edge ops."""
    batch, n = graphs.ops.shape
    if n != space.max_nodes:
        graphs = _pad_to(graphs, space.max_nodes)
        batch, n = graphs.ops.shape
    perm = _output_last(graphs)
    rows = perm[:, :, None].expand(batch, n, n)
    cols = perm[:, None, :].expand(batch, n, n)
    bidx = torch.arange(batch, device=perm.device)[:, None, None]
    mask = torch.gather(graphs.mask, 1, perm)  # padding slots point at padding nodes
    pair = mask[:, :, None] & mask[:, None, :]
    adj = graphs.adj[bidx, rows, cols] * pair
    iu, ju = torch.triu_indices(n, n, offset=1, device=perm.device)
    parts = [adj[:, iu, ju].float()]
    ops = torch.gather(graphs.ops, 1, perm)
    node_hot = torch.nn.functional.one_hot(ops, len(space.node_op_names)) * mask[..., None]
    parts.append(node_hot.reshape(batch, n * len(space.node_op_names)).float())
    if space.op_on == "edge":
        if graphs.edge_ops is None:
            raise ValueError(f"space {space.name!r} is op-on-edge but the batch has no edge_ops")
        edge = graphs.edge_ops[bidx, rows, cols][:, iu, ju]
        edge_hot = torch.nn.functional.one_hot(edge, len(space.edge_op_names))
        edge_hot = edge_hot * pair[:, iu, ju][..., None]
        parts.append(edge_hot.reshape(batch, iu.shape[0] * len(space.edge_op_names)).float())
    return torch.cat(parts, dim=1)


def _pad_to(graphs: GraphBatch, n: int) -> GraphBatch:
    """Pad a batch narrower than ``n`` nodes with masked-out nodes at the end."""
    extra = n - graphs.num_nodes
    if extra < 0:
        raise ValueError(f"batch has {graphs.num_nodes} nodes, more than the space's {n}")
    pad = torch.nn.functional.pad
    return GraphBatch(
        pad(graphs.ops, (0, extra)),
        pad(graphs.adj, (0, extra, 0, extra)),
        pad(graphs.mask, (0, extra)),
        None if graphs.edge_ops is None else pad(graphs.edge_ops, (0, extra, 0, extra)),
    )


# -- path encoding ----------------------------------------------------------------------------
def path_vocabulary(space: SearchSpace) -> tuple[tuple[str, ...], int, int]:
    """(ops a path is written in, shortest and longest path length) for ``space``.

    Refused (one-line error) where paths are not a usable encoding: cells with several
    inputs (darts) or so many nodes that the 2**(nodes-2) candidate paths cannot be listed.
    """
    if space.num_inputs > 1 or space.max_nodes > _MAX_PATH_NODES:
        raise ArchrankError(
            f"the path encoding is not available for space {space.name!r} (cells of "
            f"{space.max_nodes} nodes with {space.num_inputs} inputs); use a graph predictor "
            "or the one-hot encoding (xgb, rf)"
        )
    if space.op_on == "node":
        ops = tuple(o for o in space.node_op_names if o not in TERMINAL_NODE_OPS)
        return ops, 0, space.max_nodes - 2
    ops = tuple(o for o in space.edge_op_names if o not in BLOCKING_EDGE_OPS)
    return ops, 1, space.max_nodes - 1


def _offsets(k: int, longest: int) -> list[int]:
    """Start of each length's block when sequences of length 0..longest are listed in order."""
    offsets = [0]
    for length in range(longest + 1):
        offsets.append(offsets[-1] + k**length)
    return offsets


def path_encoding_size(space: SearchSpace) -> int:
    """Length of ``path_encoding(graphs, space)``."""
    ops, shortest, longest = path_vocabulary(space)
    offsets = _offsets(len(ops), longest)
    return offsets[-1] - offsets[shortest]


def path_index(sequence: list[int], k: int, shortest: int) -> int:
    """Feature index of an op sequence (indices into the path vocabulary).

    Sequences are grouped by length, shortest first; within a length they are ordered as
    base-``k`` numbers with the first op most significant.
    """
    offsets = _offsets(k, len(sequence))
    code = 0
    for op in sequence:
        code = code * k + op
    return offsets[len(sequence)] + code - offsets[shortest]


_MAX_PATH_NODES = 12  # 2**10 candidate paths; nb101 (7 nodes) and nbgraph (6) are far below


@lru_cache(maxsize=16)
def _candidate_paths(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every input-to-output path a DAG of ``n`` topologically ordered nodes can have.

    A path is an increasing sequence of interior nodes (a subset of 1..n-2), so there are
    ``2**(n-2)`` candidates whatever the cell. Returns ``nodes`` [P, n-2] (the path's interior
    nodes, padded with 0), ``hop_src`` [P, n-1] (source node of each edge of the path, padded
    with -1; the last edge of a path goes to the output) and ``length`` [P] (interior nodes).
    """
    inner = n - 2
    subsets = [[v + 1 for v in range(inner) if m >> v & 1] for m in range(2**inner)]
    nodes = torch.zeros(len(subsets), max(inner, 1), dtype=torch.long)
    hop_src = torch.full((len(subsets), inner + 1), -1, dtype=torch.long)
    for p, sub in enumerate(subsets):
        nodes[p, :len(sub)] = torch.tensor(sub, dtype=torch.long)
        hop_src[p, :len(sub) + 1] = torch.tensor([0, *sub], dtype=torch.long)
    length = torch.tensor([len(sub) for sub in subsets], dtype=torch.long)
    return nodes, hop_src, length


def path_encoding(graphs: GraphBatch, space: SearchSpace, counts: bool = False) -> torch.Tensor:
    """float32 [B, path_encoding_size(space)]: 1 where the cell has a path with that op sequence.

    With ``counts=True`` the number of such paths instead of an indicator. The candidate paths
    (increasing node sequences, fixed per width, see ``_candidate_paths``) are checked for all
    cells at once: a path exists when every one of its edges does, and its feature index is
    its op sequence read as a base-k number; both are tensor gathers over [B, paths, hops].
    """
    if graphs.num_nodes > space.max_nodes:
        raise ValueError(f"batch has {graphs.num_nodes} nodes, more than the space's "
                         f"{space.max_nodes}")
    if space.op_on == "edge" and graphs.edge_ops is None:
        raise ValueError(f"space {space.name!r} is op-on-edge but the batch has no edge_ops")
    size = path_encoding_size(space)
    out = [_paths_chunk(graphs[start:start + _CHUNK_CELLS], space)
           for start in range(0, len(graphs), _CHUNK_CELLS)]
    enc = torch.cat(out) if out else torch.zeros(0, size)
    return enc if counts else (enc > 0).float()


def _vocab_lookup(names: tuple[str, ...], ops: tuple[str, ...], device: torch.device
                  ) -> torch.Tensor:
    """Map space op indices to path-vocabulary indices (-1 for ops outside the vocabulary)."""
    return torch.tensor([ops.index(o) if o in ops else -1 for o in names],
                        dtype=torch.long, device=device)


def _paths_chunk(graphs: GraphBatch, space: SearchSpace) -> torch.Tensor:
    ops, shortest, longest = path_vocabulary(space)
    k = len(ops)
    offsets = _offsets(k, longest)
    batch, n = graphs.ops.shape
    device = graphs.ops.device
    nodes, hop_src, length = (t.to(device) for t in _candidate_paths(n))
    n_paths, n_hops = hop_src.shape
    out_node = (graphs.mask.sum(1) - 1).clamp(min=0)  # [B]
    # Destination of each hop: the next interior node, or the cell's output for the last hop.
    hop_dst = torch.cat([nodes, nodes[:, :1]], dim=1)[None].expand(batch, -1, -1).clone()
    last = (torch.arange(n_hops, device=device) == length[:, None])  # [P, H]
    hop_dst = torch.where(last[None], out_node[:, None, None], hop_dst)
    used = (torch.arange(n_hops, device=device) <= length[:, None])[None]  # [1, P, H]
    src = hop_src.clamp(min=0)[None].expand(batch, -1, -1)
    flat = (src * n + hop_dst).reshape(batch, -1)  # [B, P*H]
    adj = graphs.adj.reshape(batch, n * n) > 0
    edge_ok = torch.gather(adj, 1, flat).reshape(batch, n_paths, n_hops) | ~used
    # A path fits the cell when its interior nodes all come before the output.
    fits = nodes.max(dim=1).values[None] < out_node[:, None]
    fits |= (length == 0)[None]
    exists = edge_ok.all(dim=2) & fits & graphs.mask.any(1, keepdim=True)  # [B, P]

    if space.op_on == "node":
        lookup = _vocab_lookup(space.node_op_names, ops, device)
        steps = torch.gather(lookup[graphs.ops], 1, nodes.reshape(1, -1).expand(batch, -1))
        steps = steps.reshape(batch, n_paths, -1)
        steps_len = length
    else:
        lookup = _vocab_lookup(space.edge_op_names, ops, device)
        edge = lookup[graphs.edge_ops].reshape(batch, n * n)  # type: ignore[index]
        steps = torch.gather(edge, 1, flat).reshape(batch, n_paths, n_hops)
        steps_len = length + 1
    # Base-k code of each sequence (first op most significant) plus its length block offset.
    width = steps.shape[2]
    pos = torch.arange(width, device=device)
    power = (steps_len[:, None] - 1 - pos).clamp(min=0)
    weight = torch.where(pos < steps_len[:, None], k ** power, torch.zeros_like(power))
    exists &= ((steps >= 0) | (weight[None] == 0)).all(dim=2)
    code = (steps.clamp(min=0) * weight[None]).sum(dim=2)
    start = torch.tensor(offsets, device=device)[steps_len] - offsets[shortest]
    index = (code + start[None]).clamp(0, path_encoding_size(space) - 1)
    enc = torch.zeros(batch, path_encoding_size(space), device=device)
    return enc.scatter_add_(1, index, exists.float())
