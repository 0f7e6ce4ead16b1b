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
        assert self.out_own.device == torch.device(device), "plan rows on the scoring device"
        return self


def _predecessors(incoming: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node ``j``'s predecessors in every cell, valid ones first in node order: positions
    [B, k] and edge weights [B, k] (0 = padding), k the largest in-degree of ``j`` in the
    batch. ``incoming`` is the adjacency transposed ([B, target, source]): one contiguous
    run per cell. Ranks by a running count, no sort (k is small)."""
    col = incoming[:, j, :j]
    nz = col != 0
    count = nz.sum(1)
    batch = len(col)
    k = int(count.max()) if batch else 0
    src = torch.zeros(batch, k + 1, dtype=torch.long, device=col.device)
    if k == 0:
        return src[:, :0], col.new_zeros(batch, 0)
    rank = torch.where(nz, nz.cumsum(1) - 1, k)  # invalid ones land in the spare column
    src.scatter_(1, rank, torch.arange(j, device=col.device).expand(batch, j))
    src = src[:, :k]
    keep = torch.arange(k, device=col.device) < count[:, None]
    return src, torch.where(keep, torch.gather(col, 1, src), 0.0)


def plan_rows(g: GraphBatch, num_inputs: int, chunk: int,
              chunk_rows: int | None = None) -> list[CellRows]:
    """Hash-cons the nodes of ``g`` and cut its cells into chunks of at most ``chunk`` cells
    and, when ``chunk_rows`` is given, about that many private rows (cache-sized: at least
    256 cells a chunk)."""
    ops, adj = g.ops, g.adj
    batch, n = ops.shape
    m = num_inputs
    dev = ops.device
    kid = torch.full((batch, n), -1, dtype=torch.long, device=dev)  # shared id, -1: private
    kid[:, :m] = torch.arange(m, device=dev)
    level = torch.zeros(batch, n, dtype=torch.long, device=dev)
    preds: list[tuple[torch.Tensor, torch.Tensor]] = []
    shared_ops, shared_preds, groups = [], [], []
    next_id = m
    keyed = batch * n < _ID_MASK  # ids fit the packed key
    weighted = False
    fanout = torch.zeros(batch, n, dtype=torch.long, device=dev)  # successors of each node
    incoming = adj.transpose(1, 2)
    for j in range(m, n):
        src, coef = _predecessors(incoming, j)
        preds.append((src, coef))
        valid = coef != 0
        fanout.scatter_add_(1, src, valid.long())
        weighted = weighted or bool(((coef != 1) & valid).any())
        pk = kid.gather(1, src)
        private_pred = valid & (pk < 0)
        if keyed:
            ok = ~private_pred.any(1) & (valid.sum(1) <= 2) & ((coef == 1) | ~valid).all(1)
            none = torch.full((batch,), -1, dtype=torch.long, device=dev)
            a = torch.where(valid[:, 0], pk[:, 0], none) if src.shape[1] > 0 else none
            b = torch.where(valid[:, 1], pk[:, 1], none) if src.shape[1] > 1 else none
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
        if src.shape[1]:
            above = torch.where(private_pred, level.gather(1, src), 0).max(1).values
        else:
            above = torch.zeros(batch, dtype=torch.long, device=dev)
        level[:, j] = torch.where(kid[:, j] >= 0, 0, above + 1)
    shared = SharedRows(_shared_program(m, shared_ops, shared_preds, groups, dev))
    if chunk_rows is not None and batch:
        per_cell = max(1.0, float((kid < 0).sum()) / batch)
        chunk = min(chunk, max(256, int(chunk_rows / per_cell)))
    return [_chunk_rows(g, kid, level, fanout == 0, preds, m, start, min(batch, start + chunk),
                        shared, weighted)
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


def _chunk_rows(g: GraphBatch, kid_all: torch.Tensor, level_all: torch.Tensor,
                sink_all: torch.Tensor, preds: list[tuple[torch.Tensor, torch.Tensor]],
                m: int, lo: int, hi: int, shared: SharedRows, weighted: bool) -> CellRows:
    """Cells ``lo:hi``: their private rows in blocks of (level, in-degree), sinks last."""
    kid, level = kid_all[lo:hi], level_all[lo:hi]
    cells, n = kid.shape
    dev = kid.device
    is_shared = kid >= 0
    width = max([s.shape[1] for s, _ in preds] + [1])
    # per node (node-major: f = j * cells + b) its predecessors: table rows of shared ones,
    # flat indices of private ones (-1: none), their count and edge weights
    ext = torch.zeros(n, cells, width, dtype=torch.long, device=dev)
    own = torch.full((n, cells, width), -1, dtype=torch.long, device=dev)
    degree = torch.zeros(n, cells, dtype=torch.long, device=dev)
    coefs = torch.zeros(n, cells, width, device=dev) if weighted else None
    lane = torch.arange(cells, device=dev)[:, None]
    for j, (src, coef) in enumerate(preds, start=m):
        k = src.shape[1]
        if not k:
            continue
        s, valid = src[lo:hi], coef[lo:hi] != 0
        pk = kid.gather(1, s)
        ext[j, :, :k] = torch.where(valid & (pk >= 0), pk + 1, 0)
        own[j, :, :k] = torch.where(valid & (pk < 0), s * cells + lane, -1)
        degree[j] = valid.sum(1)
        if coefs is not None:
            coefs[j, :, :k] = coef[lo:hi]
    private = (~is_shared).t().reshape(-1).nonzero().squeeze(1)
    group = level.t().reshape(-1)[private] * (width + 1) + degree.view(-1)[private]
    sink = sink_all[lo:hi].t().reshape(-1)[private]
    order = torch.sort(group * 2 + sink.long(), stable=True).indices
    rows, group, sink = private[order], group[order], sink[order]
    loc = torch.zeros(n * cells, dtype=torch.long, device=dev)  # program row of private nodes
    loc[rows] = 1 + torch.arange(len(rows), device=dev)
    own_f = own.view(-1, width)[rows]
    own_rows = torch.where(own_f >= 0, loc[own_f.clamp(min=0)], 0)
    ext_rows = ext.view(-1, width)[rows]
    own_w = ext_w = None
    if coefs is not None:
        c = coefs.view(-1, width)[rows]
        own_w, ext_w = torch.where(own_rows > 0, c, 0.0), torch.where(ext_rows > 0, c, 0.0)
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
        e, ew = _narrow(ext_rows[a:b], None if ext_w is None else ext_w[a:b])
        if o is None and e is None:  # no predecessor at all: the zero row
            o = own_rows[a:b, :1].contiguous()
        blocks.append(Block(1 + a, 1 + b, 1 + b - tail, o, e, ow, ew))
        a = b
    program = RowProgram(inputs=0, ops=g.ops[lo:hi].t().reshape(-1)[rows], blocks=blocks)
    nodes_own = loc.view(n, cells).t().contiguous()
    nodes_ext = torch.where(is_shared, kid + 1, 0)
    mask = g.mask[lo:hi]
    real = mask.sum(1)
    last = (real - 1).clamp(min=0)[:, None]
    return CellRows(program, shared, nodes_own.gather(1, last).squeeze(1),
                    nodes_ext.gather(1, last).squeeze(1), nodes_own, nodes_ext,
                    mask.to(torch.float32) / real.clamp(min=1)[:, None])
