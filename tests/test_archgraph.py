"""The similarity graph over architectures: symmetric, k neighbours, sparse, chunked kNN."""

from __future__ import annotations

import pytest
import torch

import archrank.archgraph as ag
from archrank.archgraph import ArchGraph, build_knn_graph, knn_query
from archrank.errors import ArchrankError


def edge_set(g: ArchGraph) -> set[tuple[int, int]]:
    return set(zip(g.rows.tolist(), g.cols.tolist(), strict=True))


@pytest.fixture(scope="module")
def blobs() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(20, 8, generator=gen) * 5
    return centres.repeat_interleave(50, 0) + torch.randn(1000, 8, generator=gen)


def test_knn_matches_brute_force(blobs: torch.Tensor) -> None:
    d, idx = knn_query(blobs, blobs, 7, exclude_self=True, chunk_elements=5000)
    full = torch.cdist(blobs, blobs)
    full.fill_diagonal_(float("inf"))
    ref_d, _ = torch.topk(full, 7, dim=1, largest=False)
    assert torch.allclose(d, ref_d, atol=1e-4)
    assert not (idx == torch.arange(len(blobs))[:, None]).any()  # never itself


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_graph_is_symmetric_with_at_least_k_neighbours(blobs: torch.Tensor, metric) -> None:
    k = 6
    g = build_knn_graph(blobs, k, metric=metric)
    n = len(blobs)
    edges = edge_set(g)
    assert all((j, i) in edges for i, j in edges)  # symmetric structure ...
    dense = torch.zeros(n, n)
    dense[g.rows, g.cols] = g.values
    assert torch.allclose(dense, dense.T, atol=1e-6)  # ... and weights
    assert all((i, i) in edges for i in range(n))  # self-loops
    off = g.rows != g.cols
    degree = torch.bincount(g.rows[off], minlength=n)
    assert int(degree.min()) >= k
    assert n * k <= int(off.sum()) <= 2 * n * k
    assert g.nnz <= n * (2 * k + 1)
    assert bool((g.values > 0).all()) and bool((g.values <= 1).all())
    # D^-1/2 (A + I) D^-1/2 has sqrt(degree) as eigenvector with eigenvalue 1.
    s = g.degree.sqrt()
    assert torch.allclose(g.propagate(s), s, atol=1e-4)


def test_neighbours_are_similar(blobs: torch.Tensor) -> None:
    g = build_knn_graph(blobs, 5)
    cluster = torch.arange(len(blobs)) // 50
    off = g.rows != g.cols
    same = cluster[g.rows[off]] == cluster[g.cols[off]]
    assert float(same.float().mean()) > 0.95


def test_large_graph_stays_sparse_and_chunked(monkeypatch) -> None:
    """20,000 nodes: the kNN search never holds more than chunk_elements distances and the
    graph holds O(N k) entries, never an N x N matrix."""
    n, k, budget = 20_000, 10, 2**22
    largest = []
    real = ag._distances

    def spy(q, base, metric):
        out = real(q, base, metric)
        largest.append(out.numel())
        return out

    monkeypatch.setattr(ag, "_distances", spy)
    z = torch.randn(n, 16, generator=torch.Generator().manual_seed(1))
    g = build_knn_graph(z, k, chunk_elements=budget)
    assert max(largest) <= budget < n * n
    assert len(largest) >= n * n // budget
    assert g.num_nodes == n
    assert n * k + n <= g.nnz <= n * (2 * k + 1)
    for t in (g.rows, g.cols, g.values):
        assert t.numel() == g.nnz
    assert g.matrix().is_sparse


def test_receptive_field_block_equals_full_propagation(blobs: torch.Tensor) -> None:
    g = build_knn_graph(blobs, 5)
    x = torch.randn(len(blobs), 3)
    rows = torch.tensor([3, 100, 555, 999])
    cols = g.expand(rows)
    assert set(rows.tolist()) <= set(cols.tolist())
    block = torch.sparse.mm(g.submatrix(rows, cols), x[cols])
    assert torch.allclose(block, g.propagate(x)[rows], atol=1e-6)


def test_attach_joins_new_cells_by_the_same_rule(blobs: torch.Tensor) -> None:
    g = build_knn_graph(blobs, 5)
    nbr, w, w_self = g.attach(blobs[:10] + 1e-4, blobs)
    assert nbr.shape == (10, 5)
    assert (nbr[:, 0] == torch.arange(10)).all()  # its twin in the graph is nearest
    assert bool((w > 0).all()) and bool((w_self > 0).all())
    # Same normalisation as the graph: weight / sqrt(deg_new * deg_neighbour).
    d, _ = knn_query(blobs[:10] + 1e-4, blobs, 5)
    raw = torch.exp(-(d / g.sigma) ** 2)
    deg = 1 + raw.sum(1)
    assert torch.allclose(w, raw / torch.sqrt(deg[:, None] * g.degree[nbr]), atol=1e-6)


def test_state_round_trip(blobs: torch.Tensor) -> None:
    g = build_knn_graph(blobs[:200], 4, kernel=False)
    h = ArchGraph.from_state(g.get_state())
    assert h.sigma is None and h.k == 4
    x = torch.randn(200, 2)
    assert torch.equal(g.propagate(x), h.propagate(x))


def test_clear_errors() -> None:
    z = torch.randn(10, 4)
    with pytest.raises(ArchrankError, match="neighbours among 9"):
        build_knn_graph(z, 10)
    with pytest.raises(ArchrankError, match="at least 1"):
        build_knn_graph(z, 0)
    with pytest.raises(ArchrankError, match="unknown metric"):
        build_knn_graph(z, 3, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ArchrankError, match="equal width"):
        knn_query(torch.randn(3, 5), z, 2)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_wide_sparse_embeddings_find_the_same_neighbours(metric: str, monkeypatch) -> None:
    """Path encodings of NAS-Bench-Graph (7,381 columns, 0.03% non-zero) are searched with
    sparse products (a dense search took minutes on the whole space): the same neighbours
    and distances as the dense search."""
    import archrank.archgraph as archgraph

    gen = torch.Generator().manual_seed(0)
    z = (torch.rand(600, 3000, generator=gen) < 0.002).float()
    z[:, :3] = torch.randint(0, 2, (600, 3), generator=gen).float()  # a few dense columns
    assert archgraph._sparse_base(z) is not None
    d_sparse, i_sparse = archgraph.knn_query(z, z, 5, metric=metric, exclude_self=True)
    monkeypatch.setattr(archgraph, "_sparse_base", lambda base: None)
    d_dense, i_dense = archgraph.knn_query(z, z, 5, metric=metric, exclude_self=True)
    torch.testing.assert_close(d_sparse, d_dense, atol=1e-5, rtol=0)
    # binary rows tie a lot: compare each row's neighbour distances, not which tied row won
    same = (i_sparse == i_dense).float().mean()
    assert same > 0.6
