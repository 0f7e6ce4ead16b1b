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
    raw = make_predictor("xgb_path", get_space("nb201"), target="raw").fit(g[train], y[train])
    rank = build("xgb_path", "nb201").fit(g[train], y[train])  # the default since session 11
    tau_raw = kendall_tau(y[test], raw.predict(g[test]))
    tau_rank = kendall_tau(y[test], rank.predict(g[test]))
    assert tau_rank > tau_raw + 0.05, (tau_raw, tau_rank)
    rank.save(tmp_path / "rank.pt")
    loaded = Predictor.load(tmp_path / "rank.pt")
    assert loaded.target == "rank"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(loaded.predict(g[test]), rank.predict(g[test]))
    with pytest.raises(ArchrankError, match="target must be"):
        make_predictor("rf", get_space("nb201"), target="log")


@pytest.mark.parametrize(("name", "params", "message"), [
    ("gcn", {"layers": 0}, "'layers' must be at least 1"),
    ("mlp", {"hidden": 0}, "'hidden' must be at least 1"),
    ("mlp", {"dropout": 2.0}, "'dropout' must lie in"),
    ("lstm", {"lstm_layers": 0}, "'lstm_layers' must be at least 1"),
    ("gates", {"dim": 0}, "'dim' must be at least 1"),
    ("mlp", {"device": "foo"}, "unknown device 'foo'"),
    ("mlp", {"epochs": 0}, "'epochs' must be at least 1"),
    ("rf", {"max_features": 2.0}, "'max_features' must be a fraction"),
    ("rf", {"n_estimators": 0}, "'n_estimators' must be at least 1"),
    ("xgb", {"n_estimators": 0}, "'n_estimators' must be at least 1"),
    ("xgb", {"subsample": 0.0}, "'subsample' must lie in"),
    # below 0 said "must be at least 0" (the declared default's sign), 0 "at least 1"
    ("xgb", {"n_estimators": -3}, "'n_estimators' must be at least 1, got -3"),
    ("rf", {"min_samples_leaf": -1}, "'min_samples_leaf' must be at least 1, got -1"),
    ("gcn", {"layers": -2}, "'layers' must be at least 1, got -2"),
    ("mlp", {"patience": -1}, "'patience' must be at least 1, got -1"),
])
def test_out_of_range_parameters_are_refused_before_any_work(name, params, message, cli,
                                                             tmp_path) -> None:
    """They passed the constructor and failed mid-benchmark as internal errors, or gave
    constant predictions (hidden=0, n_estimators=0)."""
    with pytest.raises(ArchrankError, match=message):
        make_predictor(name, get_space("nb201"), **params)
    if not torch.cuda.is_available():
        with pytest.raises(ArchrankError, match="no CUDA GPU"):
            make_predictor("mlp", get_space("nb201"), device="cuda")
    key, value = next(iter(params.items()))
    space = get_space("nb201")
    table = tmp_path / "t.csv"
    table.write_text("arch,acc\n" + "".join(
        f"{space.format(a)},{i}\n" for i, a in enumerate(space.sample(
            30, np.random.default_rng(0)))))
    status, _, err = cli("bench", "predictor", "--space", "nb201", "--bench", table,
                         "--metric", "acc", "--train-sizes", "10", "--seeds", "1",
                         "--predictors", name, "--set", f"{name}.{key}={value}")
    assert status == 2 and err.count(f"predictor {name!r}") == 1, err


def test_a_refit_that_fails_leaves_no_half_fitted_model(nb101_cells) -> None:
    g, y = nb101_cells
    model = build("mlp", "nb101").fit(g[:50], y[:50])
    before = model.predict(g[:3])
    with pytest.raises(ArchrankError, match="too large"):
        model.fit(g[:50], np.full(50, 1e200))  # refused before any work: the model stands
    np.testing.assert_array_equal(model.predict(g[:3]), before)
    trained = []

    def interrupted(*args, **kwargs):
        if trained:
            raise KeyboardInterrupt
        trained.append(1)
        return type(model)._train_member(model, *args, **kwargs)

    model._train_member = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        model.fit(g[:50], y[:50] / 100)  # on another scale, stopped after one member
    with pytest.raises(ArchrankError, match="not fitted"):
        model.predict(g[:3])


def test_another_spaces_graphs_are_refused(nb101_cells) -> None:
    g101, y = nb101_cells
    s201 = get_space("nb201")
    g201 = s201.to_graphs(s201.sample(5, np.random.default_rng(0)))
    model = build("mlp", "nb101").fit(g101[:50], y[:50])
    with pytest.raises(ArchrankError, match="4 nodes; graphs of space 'nb101' have 7"):
        model.predict(g201)
    with_edges = GraphBatch(g101.ops[:5], g101.adj[:5], g101.mask[:5],
                            torch.zeros(5, 7, 7, dtype=torch.int64))
    with pytest.raises(ArchrankError, match="edge ops; space 'nb101' puts its ops on nodes"):
        model.predict(with_edges)
    gbatch = get_space("nbgraph").to_graphs(get_space("nbgraph").sample(
        5, np.random.default_rng(0)))
    with pytest.raises(ArchrankError, match="nodes; graphs of space 'nb101' have 7"):
        model.predict(gbatch)


def test_big_seeds_fold_into_32_bits(nb101_cells) -> None:
    g, y = nb101_cells
    for name in ("rf", "xgb"):
        a = build(name, "nb101", seed=2**32 + 5).fit(g[:60], y[:60])
        b = build(name, "nb101", seed=5).fit(g[:60], y[:60])
        np.testing.assert_array_equal(a.predict(g[60:90]), b.predict(g[60:90]))


def test_damaged_predictor_files_are_one_line_errors(nb101_cells, tmp_path) -> None:
    g, y = nb101_cells
    for name in ("mlp", "rf"):
        path = tmp_path / f"{name}.pt"
        build(name, "nb101").fit(g[:60], y[:60]).save(path)
        blob = torch.load(path, weights_only=True)
        if name == "mlp":
            blob["state"]["members"] = []
        else:
            blob["state"]["forest"]["left"] = blob["state"]["forest"]["left"][:10]
        torch.save(blob, path)
        with pytest.raises(ArchrankError, match=rf"{name}.pt: .*(no trained members|"
                                                r"do not fit together)"):
            Predictor.load(path)
    blob = torch.load(tmp_path / "rf.pt", weights_only=True)
    forest = build("rf", "nb101").fit(g[:60], y[:60]).get_state()["forest"]
    left = forest["left"].clone()
    inner = int(torch.nonzero(left != torch.arange(len(left)))[0])
    left[left[inner]] = inner  # a child linking back to its parent: predict would loop
    blob["state"]["forest"] = {**forest, "left": left}
    torch.save(blob, tmp_path / "cycle.pt")
    with pytest.raises(ArchrankError, match=r"cycle.pt: .*point backwards"):
        Predictor.load(tmp_path / "cycle.pt")
    right = forest["right"].clone()
    right[int(forest["roots"][0])] = int(forest["roots"][0])  # a root linking to itself
    blob["state"]["forest"] = {**forest, "right": right}
    torch.save(blob, tmp_path / "self.pt")
    with pytest.raises(ArchrankError, match=r"self.pt: .*point backwards"):
        Predictor.load(tmp_path / "self.pt")
    blob["predictor"] = "nope"
    torch.save(blob, tmp_path / "nope.pt")
    with pytest.raises(ArchrankError, match=r"nope.pt: unknown predictor 'nope'"):
        Predictor.load(tmp_path / "nope.pt")
