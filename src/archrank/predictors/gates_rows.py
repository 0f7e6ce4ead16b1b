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
Level = tuple[int, int, torch.Tensor, torch.Tensor | None]  # rows a:b, pred rows, weights


@dataclass
class RowProgram:
    """Rows of one pass, computed level by level. Row 0 is all zeros (the padding of the
    predecessor lists); rows ``1 .. inputs`` are the input nodes (shared program) or rows
    ``1 .. len(extern)`` are copied from the shared table (chunk programs); rows from
    ``first`` on are computed, in level order: level ``(a, b, preds, weights)`` sums the
    ``preds`` [b - a, k] rows' messages (times ``weights`` when edges are weighted)."""

    inputs: int
    extern: torch.Tensor | None
    ops: torch.Tensor              # [rows - first] op of each computed row
    levels: list[Level]

    @property
    def first(self) -> int:
        return 1 + (self.inputs if self.extern is None else len(self.extern))

    @property
    def rows(self) -> int:
        return self.first + len(self.ops)

    @property
    def own(self) -> int:
        """First row whose residual this program computes (inputs included)."""
        return self.first - self.inputs


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
    """A chunk of cells as rows: its private rows' program, the shared rows it reads, and
    for the readouts each cell's output row [B] and node rows [B, N] with the weights of the
    node mean [B, N] (mask / number of real nodes)."""

    program: RowProgram
    shared: SharedRows
    out: torch.Tensor
    nodes: torch.Tensor
    node_weights: torch.Tensor

    def __len__(self) -> int:
        return int(self.out.shape[0])

    def to(self, device: torch.device | str) -> CellRows:
        assert self.out.device == torch.device(device), "plan rows on the scoring device"
        return self


def _predecessors(adj: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node ``j``'s predecessors in every cell, valid ones first: positions [B, k] and edge
    weights [B, k] (0 = padding), k the largest in-degree of ``j`` in the batch."""
    col = adj[:, :j, j]
    k = int((col != 0).sum(1).max()) if len(col) else 0
    if k == 0:
        empty = col.new_zeros(len(col), 0)
        return empty.long(), empty
    _, src = torch.topk(col.abs(), k, dim=1)
    return src, torch.gather(col, 1, src)


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
    for j in range(m, n):
        src, coef = _predecessors(adj, j)
        preds.append((src, coef))
        valid = coef != 0
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
    return [_chunk_rows(g, kid, level, preds, m, start, min(batch, start + chunk), shared,
                        weighted)
            for start in range(0, batch, chunk)]


def _shared_program(m: int, ops: list[torch.Tensor], preds: list[torch.Tensor],
                    groups: list[int], dev: torch.device) -> RowProgram:
    """The shared rows, one level per node position (a packed id ``i`` is row ``i + 1``;
    ids stored ``+ 1`` in the key, so a missing predecessor is row 0)."""
    first = 1 + m
    levels: list[Level] = []
    start = first
    for p, size in zip(preds, groups, strict=True):
        if size:
            levels.append((start, start + size, p, None))
        start += size
    op_rows = torch.cat(ops) if ops else torch.zeros(0, dtype=torch.long, device=dev)
    return RowProgram(inputs=m, extern=None, ops=op_rows, levels=levels)


def _chunk_rows(g: GraphBatch, kid_all: torch.Tensor, level_all: torch.Tensor,
                preds: list[tuple[torch.Tensor, torch.Tensor]], m: int, lo: int, hi: int,
                shared: SharedRows, weighted: bool) -> CellRows:
    """Cells ``lo:hi``: their private rows by level, the shared rows they read."""
    kid, level = kid_all[lo:hi], level_all[lo:hi]
    cells, n = kid.shape
    dev = kid.device
    is_shared = kid >= 0
    used = torch.unique(kid[is_shared])             # shared ids read by this chunk, sorted
    first = 1 + len(used)
    # node-major flat index f = j * cells + b of every private node, ordered by level
    private = (~is_shared).t().reshape(-1).nonzero().squeeze(1)
    order = torch.sort(level.t().reshape(-1)[private], stable=True)
    rows = private[order.indices]
    loc = torch.empty(n * cells, dtype=torch.long, device=dev)  # row of each node
    loc[rows] = first + torch.arange(len(rows), device=dev)
    flat_kid = kid.t().reshape(-1)
    sel = flat_kid >= 0
    loc[sel] = 1 + torch.searchsorted(used, flat_kid[sel])
    loc_nodes = loc.view(n, cells).t()              # [cells, N]
    width = max([s.shape[1] for s, _ in preds] + [1])
    pred_rows = torch.zeros(n, cells, width, dtype=torch.long, device=dev)
    pred_w = torch.zeros(n, cells, width, device=dev) if weighted else None
    for j, (src, coef) in enumerate(preds, start=m):
        k = src.shape[1]
        if k:
            c = coef[lo:hi]
            pred_rows[j, :, :k] = torch.where(c != 0, loc_nodes.gather(1, src[lo:hi]), 0)
            if pred_w is not None:
                pred_w[j, :, :k] = c
    pred_rows = pred_rows.view(n * cells, width)[rows]
    if pred_w is not None:
        pred_w = pred_w.view(n * cells, width)[rows]
    counts = torch.bincount(order.values).tolist()
    levels: list[Level] = []
    start = first
    for size in counts:
        if not size:
            continue
        a = start - first
        block = pred_rows[a:a + size]
        k = max(1, int((block != 0).sum(1).max()))
        w = None if pred_w is None else pred_w[a:a + size, :k].contiguous()
        levels.append((start, start + size, block[:, :k].contiguous(), w))
        start += size
    program = RowProgram(inputs=0, extern=used + 1, ops=g.ops[lo:hi].t().reshape(-1)[rows],
                         levels=levels)
    mask = g.mask[lo:hi]
    real = mask.sum(1)
    out = loc_nodes.gather(1, (real - 1).clamp(min=0)[:, None]).squeeze(1)
    node_weights = mask.to(torch.float32) / real.clamp(min=1)[:, None]
    return CellRows(program, shared, out, loc_nodes.contiguous(), node_weights)
