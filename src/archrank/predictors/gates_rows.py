"""GATES inference on op-on-node cells, each distinct node state computed once per batch.

On an op-on-node cell, a node's state in every GATES pass depends only on its op and on the
states of its predecessors (with their edge weights); the input nodes hold the same learned
states in every cell. So every node that reads only input nodes (darts: both op nodes of the
first intermediate node and any op node reading a cell input, about half the graph) has one of
a few states across the whole batch, and so has any node reading only such nodes. This module
hash-conses the nodes of a batch: a key (op, ids of at most two predecessors) seen in two or
more cells names a *shared* row, computed once per prediction by each ensemble member; every
other node is a *private* row of its cell. A node with more than two predecessors, an edge
weight other than 1 or a private predecessor is private without a key (concat and output
nodes: unique to their cell anyway). Private rows are scored in chunks of cells and batched by
level (the longest chain of private rows above them), so a pass costs one gather, one gate
product and one matrix product per level instead of per node position.

The plan is built from the graph tensors alone (no model), once per ``predict`` call, and read
by every ensemble member (``GatesNet.embed`` accepts a ``CellRows`` chunk). Scores equal the
node-by-node pass up to float rounding (summation order).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from archrank.spaces.base import GraphBatch

_ID_BITS = 25                      # predecessor ids in a packed key (op above them)
_ID_MASK = (1 << _ID_BITS) - 1


@dataclass
class Block:
    """Rows ``a:b`` of a program, one level, the same number of predecessors: each sums the
    messages of rows ``own`` [b - a, k] of its program and ``ext`` [b - a, k'] of the shared
    table (row 0 pads; ``None``: no such predecessor), times the edge weights ``own_w`` /
    ``ext_w`` when the batch has weighted edges. Rows ``a:stop`` send messages; the rest have
    no successor (darts: the output node), so their messages are never computed."""

    a: int
    b: int
    stop: int
    own: torch.Tensor | None
    ext: torch.Tensor | None
    own_w: torch.Tensor | None = None
    ext_w: torch.Tensor | None = None


@dataclass
class RowProgram:
    """Rows of one pass, computed block by block. Row 0 is all zeros (the padding of the
    predecessor lists), rows ``1 .. inputs`` are the input nodes (shared program only), the
    rest (from ``first`` on) are computed in block order, blocks in level order."""

    inputs: int
    ops: torch.Tensor              # [rows - first] op of each computed row
    blocks: list[Block]

    @property
    def first(self) -> int:
        return 1 + self.inputs

    @property
    def rows(self) -> int:
        return self.first + len(self.ops)


@dataclass
class SharedRows:
    """The rows shared by several cells of a batch, and per model their states and messages
    in every pass (computed on first use, once, whichever chunk asks first)."""

    program: RowProgram
    _tables: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tables(self, key: Any,
               compute: Callable[[], list[tuple[torch.Tensor, torch.Tensor]]]
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        with self._lock:
            if id(key) not in self._tables:
                self._tables[id(key)] = compute()
            return self._tables[id(key)]


@dataclass
class CellRows:
    """A chunk of cells as rows: its private rows' program, the shared rows, and for the
    readouts each cell's output row [B] and node rows [B, N] in the program (``*_own``, 0
    where shared) and in the shared table (``*_ext``, 0 where private), with the weights of
    the node mean [B, N] (mask / number of real nodes)."""

    program: RowProgram
    shared: SharedRows
    out_own: torch.Tensor
    out_ext: torch.Tensor
    nodes_own: torch.Tensor
    nodes_ext: torch.Tensor
    node_weights: torch.Tensor

    def __len__(self) -> int:
        return int(self.out_own.shape[0])

    def to(self, device: torch.device | str) -> CellRows:
        """Itself: a plan is built on the device that scores it (``GatesPredictor``)."""
        assert torch.device(device).type == self.out_own.device.type, "plan on another device"
        return self


@dataclass
class _Edges:
    """Every node's predecessors, valid ones first in node order: positions ``src`` and
    edge weights ``coef`` [B, N, K] (0 = padding; K the largest in-degree), ``degree`` and
    ``fanout`` (number of successors) [B, N]. Edges into input nodes are ignored, as by the
    passes (an input node holds its learned state)."""

    src: torch.Tensor
    coef: torch.Tensor
    degree: torch.Tensor
    fanout: torch.Tensor
    weighted: bool  # some edge weight is not 1


def _edges(adj: torch.Tensor, m: int) -> _Edges:
    """One ``nonzero`` over the transposed adjacency lists the edges sorted by (cell,
    target, source); a node's k-th predecessor is then its k-th edge in that order."""
    batch, n = adj.shape[0], adj.shape[1]
    cell, dst, src = torch.nonzero(adj.transpose(1, 2)).unbind(1)
    if bool((dst < m).any()):
        keep = dst >= m
        cell, dst, src = cell[keep], dst[keep], src[keep]
    coef = adj[cell, src, dst]
    node = cell * n + dst
    degree = torch.bincount(node, minlength=batch * n)
    rank = torch.arange(len(node), device=adj.device) - (torch.cumsum(degree, 0) - degree)[node]
    k = max(1, int(degree.max()) if len(degree) else 0)
    table = torch.zeros(batch * n, k, dtype=torch.long, device=adj.device)
    table[node, rank] = src
    weights = adj.new_zeros(batch * n, k)
    weights[node, rank] = coef
    fanout = torch.bincount(cell * n + src, minlength=batch * n)
    return _Edges(table.view(batch, n, k), weights.view(batch, n, k), degree.view(batch, n),
                  fanout.view(batch, n), bool((coef != 1).any()))


def plan_rows(g: GraphBatch, num_inputs: int, chunk: int,
              chunk_rows: int | None = None) -> list[CellRows]:
    """Hash-cons the nodes of ``g`` and cut its cells into chunks of at most ``chunk`` cells
    and, when ``chunk_rows`` is given, about that many private rows (cache-sized: at least
    256 cells a chunk)."""
    ops = g.ops
    batch, n = ops.shape
    m = num_inputs
    dev = ops.device
    e = _edges(g.adj, m)
    kid = torch.full((batch, n), -1, dtype=torch.long, device=dev)  # shared id, -1: private
    kid[:, :m] = torch.arange(m, device=dev)
    level = torch.zeros(batch, n, dtype=torch.long, device=dev)
    shared_ops, shared_preds, groups = [], [], []
    next_id = m
    keyed = batch * n < _ID_MASK and (not batch or int(ops.max()) < 1 << (63 - 2 * _ID_BITS))
    # (ids and ops fit the packed key; otherwise every node is private)
    widths = e.degree.max(0).values.tolist() if batch else [0] * n
    none = torch.full((batch,), -1, dtype=torch.long, device=dev)
    for j in range(m, n):
        k = widths[j]
        src, coef = e.src[:, j, :k], e.coef[:, j, :k]
        valid = coef != 0
        pk = kid.gather(1, src)
        private_pred = valid & (pk < 0)
        if keyed:
            ok = ~private_pred.any(1) & (e.degree[:, j] <= 2)
            if e.weighted:
                ok &= ((coef == 1) | ~valid).all(1)
            a = torch.where(valid[:, 0], pk[:, 0], none) if k > 0 else none
            b = torch.where(valid[:, 1], pk[:, 1], none) if k > 1 else none
            key = ((ops[:, j] << (2 * _ID_BITS)) | ((torch.minimum(a, b) + 1) << _ID_BITS)
                   | (torch.maximum(a, b) + 1))
            cells = ok.nonzero().squeeze(1)
            uniq, inv, count = torch.unique(key[cells], return_inverse=True,
                                            return_counts=True)
            keep = count >= 2
            ids = torch.cumsum(keep, 0) - 1 + next_id
            kid[cells, j] = torch.where(keep, ids, -1)[inv]
            u = uniq[keep]
            shared_ops.append(u >> (2 * _ID_BITS))
            shared_preds.append(torch.stack([(u >> _ID_BITS) & _ID_MASK, u & _ID_MASK], 1))
            groups.append(len(u))
            next_id += len(u)
        if k:
            above = torch.where(private_pred, level.gather(1, src), 0).max(1).values
            level[:, j] = torch.where(kid[:, j] >= 0, 0, above + 1)
        else:
            level[:, j] = torch.where(kid[:, j] >= 0, 0, 1)
    shared = SharedRows(_shared_program(m, shared_ops, shared_preds, groups, dev))
    if chunk_rows is not None and batch:
        per_cell = max(1.0, float((kid < 0).sum()) / batch)
        chunk = min(chunk, max(256, int(chunk_rows / per_cell)))
    return [_chunk_rows(g, kid, level, e, start, min(batch, start + chunk), shared)
            for start in range(0, batch, chunk)]


def _shared_program(m: int, ops: list[torch.Tensor], preds: list[torch.Tensor],
                    groups: list[int], dev: torch.device) -> RowProgram:
    """The shared rows, one block per node position (a packed id ``i`` is row ``i + 1``;
    ids stored ``+ 1`` in the key, so a missing predecessor is row 0)."""
    blocks: list[Block] = []
    start = 1 + m
    for p, size in zip(preds, groups, strict=True):
        if size:
            blocks.append(Block(start, start + size, start + size, p, None))
        start += size
    op_rows = torch.cat(ops) if ops else torch.zeros(0, dtype=torch.long, device=dev)
    return RowProgram(inputs=m, ops=op_rows, blocks=blocks)


def _valid_first(rows: torch.Tensor, weights: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each row's nonzero entries first (row 0 pads), weights permuted alike."""
    order = torch.argsort((rows == 0).to(torch.int8), dim=1, stable=True)
    rows = torch.gather(rows, 1, order)
    return rows, None if weights is None else torch.gather(weights, 1, order)


def _narrow(rows: torch.Tensor, weights: torch.Tensor | None
            ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The columns up to the widest row's last nonzero entry (``None`` if all padding)."""
    k = int((rows != 0).sum(1).max()) if len(rows) else 0
    if k == 0:
        return None, None
    return (rows[:, :k].contiguous(),
            None if weights is None else weights[:, :k].contiguous())


def _chunk_rows(g: GraphBatch, kid_all: torch.Tensor, level_all: torch.Tensor, e: _Edges,
                lo: int, hi: int, shared: SharedRows) -> CellRows:
    """Cells ``lo:hi``: their private rows in blocks of (level, in-degree), sinks last."""
    kid = kid_all[lo:hi]
    cells, n = kid.shape
    dev = kid.device
    is_shared = kid >= 0
    width = e.src.shape[2]
    # private nodes, node-major (f = j * cells + b), by level, in-degree, sink last
    private = (~is_shared).t().reshape(-1).nonzero().squeeze(1)
    cell, node = private % cells, private // cells
    group = level_all[lo:hi][cell, node] * (width + 1) + e.degree[lo + cell, node]
    sink = e.fanout[lo + cell, node] == 0
    order = torch.sort(group * 2 + sink.long(), stable=True).indices
    rows, cell, node, group, sink = (private[order], cell[order], node[order], group[order],
                                     sink[order])
    loc = torch.zeros(n * cells, dtype=torch.long, device=dev)  # program row of private nodes
    loc[rows] = 1 + torch.arange(len(rows), device=dev)
    src, coef = e.src[lo + cell, node], e.coef[lo + cell, node]   # [R, K]
    valid = coef != 0
    pk = kid[cell[:, None], src]
    own_rows = torch.where(valid & (pk < 0), loc[src * cells + cell[:, None]], 0)
    ext_rows = torch.where(valid & (pk >= 0), pk + 1, 0)
    own_w = ext_w = None
    if e.weighted:
        own_w, ext_w = torch.where(own_rows > 0, coef, 0.0), torch.where(ext_rows > 0, coef, 0.0)
    own_rows, own_w = _valid_first(own_rows, own_w)
    ext_rows, ext_w = _valid_first(ext_rows, ext_w)
    _, sizes = torch.unique_consecutive(group, return_counts=True)
    sinks = torch.zeros(len(sizes), dtype=torch.long, device=dev)
    sinks.index_add_(0, torch.repeat_interleave(torch.arange(len(sizes), device=dev), sizes),
                     sink.long())
    blocks: list[Block] = []
    a = 0
    for size, tail in zip(sizes.tolist(), sinks.tolist(), strict=True):
        b = a + size
        o, ow = _narrow(own_rows[a:b], None if own_w is None else own_w[a:b])
        x, xw = _narrow(ext_rows[a:b], None if ext_w is None else ext_w[a:b])
        if o is None and x is None:  # no predecessor at all: the zero row
            o = own_rows[a:b, :1].contiguous()
        blocks.append(Block(1 + a, 1 + b, 1 + b - tail, o, x, ow, xw))
        a = b
    program = RowProgram(inputs=0, ops=g.ops[lo + cell, node], blocks=blocks)
    nodes_own = loc.view(n, cells).t().contiguous()
    nodes_ext = torch.where(is_shared, kid + 1, 0)
    mask = g.mask[lo:hi]
    real = mask.sum(1)
    last = (real - 1).clamp(min=0)[:, None]
    return CellRows(program, shared, nodes_own.gather(1, last).squeeze(1),
                    nodes_ext.gather(1, last).squeeze(1), nodes_own, nodes_ext,
                    mask.to(torch.float32) / real.clamp(min=1)[:, None])
