"""Encodings of cells for the baselines: one-hot adjacency+ops and the BANANAS path encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archrank import encodings as E
from archrank.spaces import get_space
from archrank.spaces.base import GraphBatch
from archrank.tables import load_benchmark

SPACES = ("nb201", "nb101", "nbgraph")


@pytest.fixture(scope="module")
def sampled() -> dict[str, GraphBatch]:
    rng = np.random.default_rng(0)
    out = {}
    for name in SPACES:
        space = get_space(name)
        # nb101: random valid specs, which needs no enumeration of the space (slow uncached)
        sample = space.sample_specs if name == "nb101" else space.sample
        out[name] = space.to_graphs(sample(300, rng))
    return out


def brute_force_paths(g: GraphBatch, space, b: int) -> np.ndarray:
    """Count paths by listing them one by one (depth-first), the slow obvious way."""
    vocab, shortest, _ = E.path_vocabulary(space)
    adj = g.adj[b].numpy()
    out = int(g.mask[b].sum()) - 1
    enc = np.zeros(E.path_encoding_size(space))

    def op_of(i: int, j: int) -> int:
        if space.op_on == "node":
            return vocab.index(space.node_op_names[int(g.ops[b, j])])
        return vocab.index(space.edge_op_names[int(g.edge_ops[b, i, j])])

    def walk(v: int, seq: list[int]) -> None:
        if v == out:
            enc[E.path_index(seq, len(vocab), shortest)] += 1
            return
        for w in range(v + 1, out + 1):
            if adj[v, w]:
                step = [op_of(v, w)] if (space.op_on == "edge" or w != out) else []
                walk(w, seq + step)

    walk(0, [])
    return enc


def test_path_encoding_sizes_match_bananas() -> None:
    # nb101: sequences of 0..5 interior ops over 3 ops; nb201: 1..3 edge ops over 4 ops.
    assert E.path_encoding_size(get_space("nb101")) == sum(3**i for i in range(6)) == 364
    assert E.path_encoding_size(get_space("nb201")) == 4 + 16 + 64 == 84
    assert E.path_encoding_size(get_space("nbgraph")) == sum(9**i for i in range(5))


@pytest.mark.parametrize("name", SPACES)
def test_path_encoding_equals_brute_force_on_sampled_cells(name, sampled) -> None:
    space, g = get_space(name), sampled[name]
    counts = E.path_encoding(g, space, counts=True).numpy()
    expected = np.stack([brute_force_paths(g, space, b) for b in range(len(g))])
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(E.path_encoding(g, space).numpy(), (expected > 0) * 1.0)


def test_path_encoding_equals_brute_force_on_nb101_table(nb101_csv) -> None:
    space = get_space("nb101")
    bench = load_benchmark(nb101_csv, space)
    g = space.to_graphs(bench.archs[:400])  # real cells of every size (2..7 vertices)
    assert len(set(g.mask.sum(1).tolist())) > 1
    counts = E.path_encoding(g, space, counts=True).numpy()
    expected = np.stack([brute_force_paths(g, space, b) for b in range(len(g))])
    np.testing.assert_array_equal(counts, expected)


def test_path_counts_equal_walks_of_adjacency_powers(sampled) -> None:
    # Independent check: the number of input->output paths is sum_k (A^k)[0, out].
    space, g = get_space("nb101"), sampled["nb101"]
    total = E.path_encoding(g, space, counts=True).sum(1)
    power, walks = g.adj.clone(), torch.zeros(len(g))
    out = g.mask.sum(1) - 1
    for _ in range(space.max_nodes):
        walks += power[torch.arange(len(g)), 0, out]
        power = power @ g.adj
    torch.testing.assert_close(total, walks)


def test_known_nb201_cells() -> None:
    space = get_space("nb201")
    vocab, shortest, _ = E.path_vocabulary(space)
    conv = vocab.index("nor_conv_3x3")
    dense = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                        "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    empty = space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    counts = E.path_encoding(space.to_graphs([dense, empty]), space, counts=True)
    # 0->3 (one conv), 0->1->3 and 0->2->3 (two), 0->1->2->3 (three)
    expect = {E.path_index([conv] * k, len(vocab), shortest): c
              for k, c in ((1, 1), (2, 2), (3, 1))}
    assert {i: int(v) for i, v in enumerate(counts[0]) if v} == expect
    assert counts[1].sum() == 0


@pytest.mark.parametrize("name", SPACES)
def test_onehot_shape_and_consistency(name, sampled) -> None:
    space, g = get_space(name), sampled[name]
    x = E.onehot(g, space)
    assert x.shape == (len(g), E.onehot_size(space)) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # Each cell encodes the same alone, in a batch, or in another order.
    torch.testing.assert_close(E.onehot(g[7:8], space), x[7:8])
    rev = torch.arange(len(g) - 1, -1, -1)
    torch.testing.assert_close(E.onehot(g[rev], space), x[rev])
    n = space.max_nodes
    n_adj = n * (n - 1) // 2
    k = len(space.node_op_names)
    # Adjacency block counts the edges; exactly one op per real node.
    iu, ju = torch.triu_indices(n, n, offset=1)
    torch.testing.assert_close(x[:, :n_adj].sum(1), g.adj[:, iu, ju].sum(1))
    node_hot = x[:, n_adj:n_adj + n * k].reshape(len(g), n, k)
    torch.testing.assert_close(node_hot.sum((1, 2)), g.mask.sum(1).float())
    if space.op_on == "edge":
        edge_hot = x[:, n_adj + n * k:].reshape(len(g), n_adj, len(space.edge_op_names))
        assert bool((edge_hot.sum(2) == 1).all())


def test_onehot_nb101_puts_output_last(nb101_csv) -> None:
    space = get_space("nb101")
    bench = load_benchmark(nb101_csv, space)
    g = space.to_graphs(bench.archs[:400])
    x = E.onehot(g, space)
    n, k = space.max_nodes, len(space.node_op_names)
    node_hot = x[:, n * (n - 1) // 2:].reshape(len(g), n, k)
    assert bool((node_hot[:, n - 1, k - 1] == 1).all())  # the output op, always in the last slot
    assert bool((node_hot[:, 0, 0] == 1).all())          # the input op, always first
    # Edges into the output land in the output's column whatever the cell's size.
    _, ju = torch.triu_indices(n, n, offset=1)
    into_out = x[:, :n * (n - 1) // 2][:, ju == n - 1].sum(1)
    sizes = g.mask.sum(1)
    torch.testing.assert_close(into_out, g.adj[torch.arange(len(g)), :, sizes - 1].sum(1))
    small = sizes < n
    assert bool(small.any())
    padded = node_hot[small][:, :, :].sum(2)  # padding slots have no op
    for row, size in zip(padded, sizes[small].tolist(), strict=True):
        assert row[size - 1:n - 1].sum() == 0


def test_empty_batch() -> None:
    space = get_space("nb101")
    g = space.to_graphs(space.sample_specs(1, np.random.default_rng(0)))[0:0]
    assert E.path_encoding(g, space).shape == (0, 364)
    assert E.onehot(g, space).shape == (0, E.onehot_size(space))
