"""The similarity graph over architectures used by the semi-supervised assessor (SSA).

Every cell, labelled or not, is a node; each node is joined to its ``k`` nearest neighbours in
an embedding space (the graph auto-encoder's), the relation is symmetrised (an edge exists when
either end lists the other), weighted by a Gaussian kernel ``exp(-d^2 / sigma^2)`` of the
distance, given self-loops and normalised symmetrically, ``D^-1/2 (A + I) D^-1/2``, as in a
GCN (Kipf & Welling, 2017).

Why kNN rather than a distance threshold (Tang et al. 2020 threshold a kernel): a threshold
leaves isolated nodes in sparse regions and dense cliques in crowded ones; kNN gives every
node at least ``k`` neighbours and bounds the edges to ``N * (2k + 1)``.

Memory is O(N k): neighbours are found by chunked exact search (``torch.cdist`` + ``topk`` on
at most ``chunk_elements`` distances at a time), never an N x N matrix, so the graph scales to
the 423,624 cells of NAS-Bench-101. New cells are attached to a built graph by the same rule
(``ArchGraph.attach``) for inductive prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from archrank.errors import ArchrankError

Metric = Literal["euclidean", "cosine"]
METRICS = ("euclidean", "cosine")

#: Largest number of distances held at once while searching neighbours (64M floats = 256 MB).
CHUNK_ELEMENTS = 2**26


def _prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    if metric not in METRICS:
        raise ArchrankError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    x = x.detach().float()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    return x


def _distances(q: torch.Tensor, base: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":  # rows are unit vectors: 1 - cos in [0, 2]
        return (1.0 - q @ base.T).clamp_(min=0.0)
    return torch.cdist(q, base)


def _sparse_base(base: torch.Tensor) -> torch.Tensor | None:
    """``base`` as a sparse matrix when it is wide and almost all zeros (path encodings
    of NAS-Bench-Graph: 7,381 columns, 0.03% non-zero), else ``None``. Distances then come
    from sparse products, minutes faster than dense ones over the same columns."""
    if base.shape[1] < 1024 or base.numel() == 0:
        return None
    if torch.count_nonzero(base).item() > 0.01 * base.numel():
        return None
    import warnings

    with warnings.catch_warnings():  # torch calls its CSR support beta; products are exact
        warnings.simplefilter("ignore", UserWarning)
        return base.to_sparse_csr()


def _sparse_distances(q: torch.Tensor, base: torch.Tensor, base_sq: torch.Tensor,
                      metric: str) -> torch.Tensor:
    """``_distances(q, base)`` for a sparse ``base`` (``base_sq``: its rows' squared norms)."""
    dots = (base @ q.T).T  # [Q, N] (CSR: COO's product is twenty times slower)
    if metric == "cosine":
        return (1.0 - dots).clamp_(min=0.0)
    d2 = (q * q).sum(1, keepdim=True) + base_sq[None, :] - 2.0 * dots
    return d2.clamp_(min=0.0).sqrt_()


def knn_query(queries: torch.Tensor, base: torch.Tensor, k: int, *,
              metric: Metric = "euclidean", exclude_self: bool = False,
              chunk_elements: int = CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest rows of ``base`` for each row of ``queries``: (distances, indices).

    Both [Q, k], nearest first. ``exclude_self`` (queries are ``base`` itself) skips the
    query's own row. Exact search in chunks of rows so that at most ``chunk_elements``
    distances exist at once.
    """
    if queries.ndim != 2 or base.ndim != 2 or queries.shape[1] != base.shape[1]:
        raise ArchrankError(
            f"kNN needs two 2-D embedding tables of equal width, got {tuple(queries.shape)} "
            f"and {tuple(base.shape)}"
        )
    n_base = base.shape[0] - (1 if exclude_self else 0)
    if k < 1:
        raise ArchrankError(f"k must be at least 1, got {k}")
    if n_base < k:
        raise ArchrankError(f"cannot find {k} neighbours among {n_base} other cells")
    q_all = _prepare(queries, metric)
    b = _prepare(base, metric)
    rows = max(1, min(4096, chunk_elements // max(1, base.shape[0])))
    sparse = _sparse_base(b)
    b_sq = (b * b).sum(1) if sparse is not None else None
    dists, idx = [], []
    for start in range(0, q_all.shape[0], rows):
        q = q_all[start:start + rows]
        d = (_distances(q, b, metric) if sparse is None
             else _sparse_distances(q, sparse, b_sq, metric))  # type: ignore[arg-type]
        if exclude_self:
            own = torch.arange(start, start + q.shape[0])
            d[torch.arange(q.shape[0]), own] = float("inf")
        top = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(top.values)
        idx.append(top.indices)
    return torch.cat(dists), torch.cat(idx)


def kernel_weights(d: torch.Tensor, sigma: float | None) -> torch.Tensor:
    """Gaussian kernel ``exp(-d^2 / sigma^2)``; ``sigma=None`` gives unit weights."""
    if sigma is None:
        return torch.ones_like(d)
    return torch.exp(-(d / sigma) ** 2)


@dataclass
class ArchGraph:
    """A sparse, symmetric, normalised kNN graph: ``norm_adj @ x`` is one GCN propagation.

    ``rows``/``cols``/``values`` list the non-zeros of ``D^-1/2 (A + I) D^-1/2`` (self-loops
    included, both directions of every edge present); ``degree`` is the row sum of ``A + I``
    (kept for attaching new nodes), ``sigma`` the kernel width (``None``: unweighted).
    """

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    degree: torch.Tensor
    num_nodes: int
    k: int
    metric: str
    sigma: float | None
    _matrix: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def matrix(self) -> torch.Tensor:
        """The normalised adjacency as a coalesced ``torch.sparse_coo`` tensor [N, N]."""
        if self._matrix is None:
            # Entries are unique and sorted by (row, col) by construction.
            self._matrix = torch.sparse_coo_tensor(
                torch.stack([self.rows, self.cols]), self.values,
                (self.num_nodes, self.num_nodes), is_coalesced=True, check_invariants=False,
            )
        return self._matrix

    def propagate(self, x: torch.Tensor, steps: int = 1) -> torch.Tensor:
        """``norm_adj^steps @ x`` (x [N, F] or [N])."""
        a = self.matrix()
        flat = x.ndim == 1
        out = x[:, None] if flat else x
        for _ in range(steps):
            out = torch.sparse.mm(a, out)
        return out[:, 0] if flat else out

    def expand(self, nodes: torch.Tensor) -> torch.Tensor:
        """Sorted indices of ``nodes`` and all their neighbours (one hop)."""
        inside = torch.zeros(self.num_nodes, dtype=torch.bool)
        inside[nodes] = True
        reached = inside.clone()
        reached[self.cols[inside[self.rows]]] = True
        return reached.nonzero().squeeze(1)

    def submatrix(self, row_nodes: torch.Tensor, col_nodes: torch.Tensor) -> torch.Tensor:
        """Sparse [len(row_nodes), len(col_nodes)] block of the normalised adjacency.

        ``col_nodes`` must contain every neighbour of ``row_nodes`` (e.g. ``expand``) for the
        rows to be complete; both must be sorted and unique.
        """
        row_pos = torch.full((self.num_nodes,), -1, dtype=torch.long)
        row_pos[row_nodes] = torch.arange(len(row_nodes))
        col_pos = torch.full((self.num_nodes,), -1, dtype=torch.long)
        col_pos[col_nodes] = torch.arange(len(col_nodes))
        keep = (row_pos[self.rows] >= 0) & (col_pos[self.cols] >= 0)
        idx = torch.stack([row_pos[self.rows[keep]], col_pos[self.cols[keep]]])
        return torch.sparse_coo_tensor(idx, self.values[keep], (len(row_nodes), len(col_nodes)),
                                       check_invariants=False).coalesce()

    def neighbours(self, node: int) -> torch.Tensor:
        """Indices of the nodes joined to ``node`` (itself excluded)."""
        sel = (self.rows == node) & (self.cols != node)
        return self.cols[sel]

    def attach(self, z_new: torch.Tensor, z_graph: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Join new cells to the graph by the rule that built it, without changing the graph.

        Each new cell gets an edge to its ``k`` nearest graph nodes (kernel-weighted) and a
        self-loop; the graph's own rows are left as they are (new nodes receive, they do not
        send), so the scores of the graph's nodes do not move. Returns ``(neighbour [Q, k],
        weight [Q, k], self_weight [Q])``: normalised like the graph, ``w / sqrt(d_new d_j)``.
        """
        d, idx = knn_query(z_new, z_graph, self.k, metric=self.metric)  # type: ignore[arg-type]
        w = kernel_weights(d, self.sigma)
        deg_new = 1.0 + w.sum(1)
        norm = w / torch.sqrt(deg_new[:, None] * self.degree[idx])
        return idx, norm, 1.0 / deg_new

    # -- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {"rows": self.rows, "cols": self.cols, "values": self.values,
                "degree": self.degree, "num_nodes": self.num_nodes, "k": self.k,
                "metric": self.metric, "sigma": self.sigma}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ArchGraph:
        return cls(state["rows"], state["cols"], state["values"], state["degree"],
                   int(state["num_nodes"]), int(state["k"]), str(state["metric"]),
                   None if state["sigma"] is None else float(state["sigma"]))


def build_knn_graph(z: torch.Tensor, k: int = 10, *, metric: Metric = "euclidean",
                    kernel: bool = True, chunk_elements: int = CHUNK_ELEMENTS) -> ArchGraph:
    """The symmetric kNN graph of the rows of ``z`` [N, D] (see the module docstring).

    ``kernel``: weight edges by ``exp(-d^2 / sigma^2)`` with ``sigma`` the mean distance to
    the ``k``-th neighbour (so weights adapt to the embedding's scale); else every edge
    weighs 1. Self-loops weigh 1.
    """
    n = int(z.shape[0])
    d, idx = knn_query(z, z, k, metric=metric, exclude_self=True,
                       chunk_elements=chunk_elements)
    sigma: float | None = None
    if kernel:
        sigma = float(d[:, -1].mean())
        if not sigma > 1e-12:  # every neighbour coincides: unit weights
            sigma = 1.0
    w = kernel_weights(d, sigma).reshape(-1)
    src = torch.arange(n).repeat_interleave(k)
    dst = idx.reshape(-1)
    # Symmetrise: both directions of every kNN edge; an edge listed by both ends appears
    # twice per direction with the same weight (distances are symmetric), so average.
    r = torch.cat([src, dst])
    c = torch.cat([dst, src])
    v = torch.cat([w, w])
    key = r * n + c
    uniq, inverse = torch.unique(key, return_inverse=True)
    total = torch.zeros(len(uniq)).index_add_(0, inverse, v)
    count = torch.zeros(len(uniq)).index_add_(0, inverse, torch.ones_like(v))
    weight = total / count
    rows, cols = uniq // n, uniq % n
    # Self-loops (kNN excluded them; duplicates of a cell sit at distance 0 as neighbours).
    loops = torch.arange(n)
    rows = torch.cat([rows, loops])
    cols = torch.cat([cols, loops])
    weight = torch.cat([weight, torch.ones(n)])
    degree = torch.zeros(n).index_add_(0, rows, weight)
    values = weight / torch.sqrt(degree[rows] * degree[cols])
    order = torch.argsort(rows * n + cols)
    return ArchGraph(rows[order], cols[order], values[order], degree, n, k, metric, sigma)
