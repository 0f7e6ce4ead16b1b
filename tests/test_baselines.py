"""Baseline predictors (MLP, GCN, LSTM, xgboost and random forest on two encodings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import archrank.predictors  # noqa: F401  (registers the predictors)
from archrank.errors import ArchrankError
from archrank.metrics import kendall_tau
from archrank.predictors.base import PREDICTORS, Predictor, make_predictor
from archrank.predictors.gcn import edge_to_node_form, node_form_vocabulary
from archrank.spaces import get_space
from archrank.spaces.base import GraphBatch
from archrank.tables import load_benchmark

NEURAL = ("mlp", "gcn", "lstm")
TREES = ("xgb", "xgb_path", "rf", "rf_path")
BASELINES = NEURAL + TREES
FAST = {"epochs": 40}  # a short schedule keeps the tests quick; defaults are for real use


def build(name: str, space: str, seed: int = 0) -> Predictor:
    return make_predictor(name, get_space(space), seed=seed, **(FAST if name in NEURAL else {}))


def known_score(g: GraphBatch, space) -> np.ndarray:
    """A known ranking on nb101: conv3x3 counts most, conv1x1 less, edges a little."""
    names = space.node_op_names
    ops = g.ops * g.mask
    c3 = (ops == names.index("conv3x3-bn-relu")).sum(1)
    c1 = (ops == names.index("conv1x1-bn-relu")).sum(1)
    return (c3 + 0.4 * c1 + 0.1 * g.adj.sum((1, 2))).numpy().astype(np.float64)


@pytest.fixture(scope="module")
def nb101_cells() -> tuple[GraphBatch, np.ndarray]:
    space = get_space("nb101")
    g = space.to_graphs(space.sample_specs(600, np.random.default_rng(1)))  # no enumeration
    return g, known_score(g, space)


@pytest.fixture(scope="module")
def nb201_table() -> tuple[GraphBatch, np.ndarray]:
    from conftest import shared_file

    space = get_space("nb201")
    bench = load_benchmark(shared_file("nb201.csv"), space)
    return space.to_graphs(bench.archs), bench.values("cifar10_test")


def test_baselines_are_registered() -> None:
    for name in BASELINES:
        assert name in PREDICTORS
        assert make_predictor(name, get_space("nb201")).name == name


@pytest.mark.parametrize("name", BASELINES)
def test_learns_known_ranking_on_nb101(name, nb101_cells) -> None:
    g, y = nb101_cells
    model = build(name, "nb101").fit(g[:300], y[:300])
    tau = kendall_tau(y[300:], model.predict(g[300:]))
    assert tau > 0.5, f"{name}: tau {tau:.3f}"


@pytest.mark.parametrize("name", BASELINES)
def test_ranks_real_nb201_accuracy(name, nb201_table) -> None:
    g, y = nb201_table
    idx = np.random.default_rng(0).permutation(len(y))
    train, test = idx[:300], idx[300:3300]
    model = build(name, "nb201").fit(g[train], y[train])
    tau = kendall_tau(y[test], model.predict(g[test]))
    assert tau > 0.3, f"{name}: tau {tau:.3f}"  # chance is 0; trained fully they reach ~0.5+


@pytest.mark.parametrize("name", BASELINES)
def test_save_load_round_trip(name, nb101_cells, tmp_path) -> None:
    g, y = nb101_cells
    model = build(name, "nb101", seed=3).fit(g[:200], y[:200])
    before = model.predict(g[200:400])
    model.save(tmp_path / "model.pt")
    loaded = Predictor.load(tmp_path / "model.pt")
    assert loaded.name == name and loaded.seed == 3
    np.testing.assert_allclose(loaded.predict(g[200:400]), before, rtol=1e-6, atol=1e-9)
    # Only plain tensors and values inside: readable without unpickling code.
    torch.load(tmp_path / "model.pt", weights_only=True)


@pytest.mark.parametrize("name", TREES)
def test_trees_are_deterministic_per_seed(name, nb101_cells) -> None:
    g, y = nb101_cells
    a = build(name, "nb101", seed=5).fit(g[:200], y[:200]).predict(g[200:])
    b = build(name, "nb101", seed=5).fit(g[:200], y[:200]).predict(g[200:])
    np.testing.assert_array_equal(a, b)


def test_random_forest_arrays_reproduce_scikit_learn(nb101_cells) -> None:
    g, y = nb101_cells
    model = build("rf_path", "nb101").fit(g[:300], y[:300])
    x = model.features(g[300:])
    np.testing.assert_allclose(model.forest_.predict(x), model.sklearn_.predict(x), rtol=1e-12)


@pytest.mark.parametrize("name", ("xgb", "mlp"))
def test_unknown_parameter_is_a_clear_error(name) -> None:
    with pytest.raises(ArchrankError, match="no parameter 'depht'"):
        make_predictor(name, get_space("nb201"), depht=3)


def test_mismatched_input_is_a_clear_error(nb101_cells) -> None:
    g, y = nb101_cells
    with pytest.raises(ArchrankError, match="target values"):
        build("xgb", "nb101").fit(g[:10], y[:9])


def test_edge_cells_become_op_nodes() -> None:
    space = get_space("nb201")
    cells = [
        space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                    "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"),
        space.parse("|none~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"),
    ]
    g = edge_to_node_form(space.to_graphs(cells), space)
    vocab = node_form_vocabulary(space)
    assert g.num_nodes == 8 and g.edge_ops is None
    # Full cell: 3 edges leave the input, 4 edge-to-edge links, 3 edges enter the output.
    assert int(g.adj[0].sum()) == 3 + 4 + 3
    assert g.mask[0].all()
    assert {vocab[int(o)] for o in g.ops[0, 1:-1]} == {"nor_conv_3x3"}
    # Second cell: only 0->2 (skip) and 2->3 (avg_pool) pass: input -> skip -> pool -> output.
    assert int(g.mask[1].sum()) == 4
    live = torch.nonzero(g.mask[1]).flatten().tolist()
    assert [vocab[int(g.ops[1, i])] for i in live] == [
        "input", "skip_connect", "avg_pool_3x3", "output"]
    assert int(g.adj[1].sum()) == 3
    assert bool(torch.triu(g.adj, diagonal=1).eq(g.adj).all())  # still topologically ordered


def test_rank_target_helps_trees_on_skewed_nb201(nb201_table, tmp_path) -> None:
    # nb201 accuracies have a long tail of ~10% cells; regressing ranks ranks the bulk better.
    g, y = nb201_table
    idx = np.random.default_rng(0).permutation(len(y))
    train, test = idx[:300], idx[300:3300]
    raw = build("xgb_path", "nb201").fit(g[train], y[train])
    rank = make_predictor("xgb_path", get_space("nb201"), target="rank").fit(g[train], y[train])
    tau_raw = kendall_tau(y[test], raw.predict(g[test]))
    tau_rank = kendall_tau(y[test], rank.predict(g[test]))
    assert tau_rank > tau_raw + 0.05, (tau_raw, tau_rank)
    rank.save(tmp_path / "rank.pt")
    loaded = Predictor.load(tmp_path / "rank.pt")
    assert loaded.target == "rank"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(loaded.predict(g[test]), rank.predict(g[test]))
    with pytest.raises(ArchrankError, match="target must be"):
        make_predictor("rf", get_space("nb201"), target="log")
