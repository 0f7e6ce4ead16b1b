"""GATES and the shared neural training loop: invariance, learning, persistence, errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.errors import ArchrankError
from archrank.metrics import kendall_tau, spearman
from archrank.predictors.base import Predictor, make_predictor
from archrank.predictors.gates import GatesPredictor
from archrank.predictors.losses import hinge_ranking_loss, make_loss, mse_loss
from archrank.spaces.base import GraphBatch

FAST = {"epochs": 2, "dim": 16, "op_dim": 8, "mlp_hidden": 16}


def conv3x3_count(graphs: GraphBatch, space) -> np.ndarray:
    """Number of nor_conv_3x3 edges that pass information: a known ranking to learn."""
    conv = space.edge_op_names.index("nor_conv_3x3")
    return ((graphs.edge_ops == conv) & (graphs.adj > 0)).sum((1, 2)).numpy().astype(float)


def topological_relabellings(matrix: np.ndarray) -> list[list[int]]:
    """Permutations of the intermediate vertices that keep the matrix upper triangular."""
    n = len(matrix)
    found = []
    for middle in itertools.permutations(range(1, n - 1)):
        perm = [0, *middle, n - 1]  # new position of old vertex i is perm.index(i)
        if list(middle) == sorted(middle):
            continue
        new = matrix[np.ix_(perm, perm)]
        if not np.tril(new).any():
            found.append(perm)
    return found


# -- isomorphism invariance ---------------------------------------------------------------------
def test_isomorphic_nb101_cells_score_alike(nb101, nb101_csv: Path) -> None:
    import csv

    pairs = []
    with open(nb101_csv) as f:
        for row in itertools.islice(csv.DictReader(f), 150):
            n = int(row["num_vertices"])
            matrix = np.array([int(c) for c in row["adjacency"]]).reshape(n, n)
            ops = row["ops"].split(",")
            a = nb101.make(matrix, ops)
            for perm in topological_relabellings(matrix):
                b = nb101.make(matrix[np.ix_(perm, perm)], [ops[i] for i in perm])
                if b != a:  # not an automorphism: really another labelling
                    assert nb101.hash(a) == nb101.hash(b)
                    pairs.append((a, b))
                    break
    assert len(pairs) >= 10
    model = GatesPredictor(nb101, seed=0, **FAST)
    model.fit([p[0] for p in pairs] + [p[1] for p in pairs], np.arange(2 * len(pairs)) % 7)
    left = model.predict([p[0] for p in pairs])
    right = model.predict([p[1] for p in pairs])
    np.testing.assert_allclose(left, right, rtol=0, atol=1e-4)
    assert np.ptp(left) > 1e-4  # the scores do depend on the cell


def test_isomorphic_nb201_cells_score_alike(nb201) -> None:
    """Swapping nodes 1 and 2 of a cell without edge 1->2 gives an isomorphic cell."""
    rng = np.random.default_rng(0)
    ops = ["skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"]
    left, right = [], []
    for _ in range(30):
        a, b, c, d, e = (ops[i] for i in rng.integers(0, 5, size=5))
        left.append(nb201.parse(f"|{a}~0|+|{b}~0|none~1|+|{c}~0|{d}~1|{e}~2|"))
        right.append(nb201.parse(f"|{b}~0|+|{a}~0|none~1|+|{c}~0|{e}~1|{d}~2|"))
    model = GatesPredictor(nb201, seed=1, **FAST).fit(left + right, rng.normal(size=60))
    np.testing.assert_allclose(model.predict(left), model.predict(right), rtol=0, atol=1e-4)


def test_inference_path_equals_training_path(nb201, nb101, nb201_all) -> None:
    """The in-place inference pass computes exactly what the autograd pass computes."""
    cells101 = nb101.sample_specs(300, np.random.default_rng(0))
    for space, graphs in ((nb201, nb201_all[:500]), (nb101, nb101.to_graphs(cells101))):
        net = GatesPredictor(space, seed=0).build_model().eval()
        with torch.no_grad():
            fast = net(graphs)
        with torch.enable_grad():
            slow = net(graphs).detach()
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_none_edges_block_information(nb201) -> None:
    """A cell whose output is cut off from the input scores like any other such cell."""
    cut = [nb201.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"),
           nb201.parse("|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|none~2|")]
    net = GatesPredictor(nb201, seed=0).build_model().eval()
    with torch.no_grad():
        s = net(nb201.to_graphs(cut))
    assert float(s[0]) == pytest.approx(float(s[1]), abs=1e-6)


# -- learning -----------------------------------------------------------------------------------
def test_tiny_fit_learns_a_known_ranking(nb201, nb201_all) -> None:
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(nb201_all))
    train, test = idx[:300], idx[300:3300]
    y = conv3x3_count(nb201_all, nb201)
    model = GatesPredictor(nb201, seed=0, epochs=40)
    model.fit(nb201_all[train], y[train])
    pred = model.predict(nb201_all[test])
    # y has only 7 distinct values, so even a perfect ranking has tau-b well below 1
    best = kendall_tau(y[test], y[test] + 1e-3 * np.arange(len(test)) / len(test))
    assert kendall_tau(y[test], pred) > 0.85 * best
    assert spearman(y[test], pred) > 0.85


@pytest.mark.parametrize("loss", ["hinge", "mse", "combined"])
def test_every_loss_trains(loss: str, nb201, nb201_all) -> None:
    y = conv3x3_count(nb201_all, nb201)
    idx = np.random.default_rng(1).permutation(len(y))
    train, test = idx[:200], idx[200:2200]
    model = GatesPredictor(nb201, seed=0, loss=loss, epochs=50)
    model.fit(nb201_all[train], y[train])
    assert kendall_tau(y[test], model.predict(nb201_all[test])) > 0.6


def test_early_stopping_holds_out_a_slice(nb201, nb201_all) -> None:
    y = conv3x3_count(nb201_all, nb201)
    model = GatesPredictor(nb201, seed=0, epochs=6, early_stop_min=100, **{
        k: v for k, v in FAST.items() if k != "epochs"})
    model.fit(nb201_all[:150], y[:150])
    assert any("best_val_tau" in h for h in model.history_)
    small = GatesPredictor(nb201, seed=0, **FAST).fit(nb201_all[:150], y[:150])
    assert not small.history_  # below early_stop_min: every cell trains


def test_training_defaults_scale_with_data(nb201, nb201_all) -> None:
    model = GatesPredictor(nb201)
    assert model.auto_epochs(50) > model.auto_epochs(1000) >= model.hp["base_epochs"]
    assert model.auto_epochs(10) <= model.hp["max_epochs"]
    assert GatesPredictor(nb201, epochs=7).auto_epochs(1000) == 7
    assert model.auto_batch_size(100) == 64 and model.auto_batch_size(2000) == 256
    assert model.auto_batch_size(30) == 30
    assert model.auto_lr(64) == pytest.approx(1e-3) and model.auto_lr(256) > 2.5e-3
    assert GatesPredictor(nb201, lr=0.01).auto_lr(256) == 0.01
    assert model.auto_ensemble(100) == 3 and model.auto_ensemble(1000) == 1
    y = conv3x3_count(nb201_all, nb201)
    small = GatesPredictor(nb201, **FAST).fit(nb201_all[:50], y[:50])
    assert len(small.models_) == 3  # small sets: an ensemble of three seeds


# -- determinism and persistence ----------------------------------------------------------------
def test_same_seed_same_predictions(nb201, nb201_all) -> None:
    y = conv3x3_count(nb201_all, nb201)
    before = torch.random.get_rng_state()
    a = GatesPredictor(nb201, seed=3, **FAST).fit(nb201_all[:100], y[:100])
    assert torch.equal(torch.random.get_rng_state(), before)  # caller's RNG untouched
    b = GatesPredictor(nb201, seed=3, **FAST).fit(nb201_all[:100], y[:100])
    c = GatesPredictor(nb201, seed=4, **FAST).fit(nb201_all[:100], y[:100])
    pa, pb, pc = (m.predict(nb201_all[:500]) for m in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.allclose(pa, pc)


def test_save_load_round_trip(tmp_path: Path, nb101) -> None:
    rng = np.random.default_rng(0)
    cells = nb101.sample_specs(120, rng)  # no enumeration needed
    graphs = nb101.to_graphs(cells)
    y = (graphs.ops == 1).sum(1).numpy() + rng.normal(0, 0.1, size=len(cells))
    model = make_predictor("gates", nb101, seed=2, ensemble=2, **FAST).fit(cells, y)
    path = tmp_path / "gates.pt"
    model.save(path)
    loaded = Predictor.load(path)
    assert isinstance(loaded, GatesPredictor) and loaded.hp["ensemble"] == 2
    np.testing.assert_array_equal(model.predict(cells), loaded.predict(cells))
    np.testing.assert_array_equal(model.predict(graphs), loaded.predict(cells))
    assert isinstance(GatesPredictor.load(path), GatesPredictor)


def test_a_subclass_loads_only_its_own_predictors(tmp_path: Path, nb201, nb201_all) -> None:
    """GatesPredictor.load of an rf_path file returned an RFPathPredictor in silence."""
    from archrank.predictors.trees import RFPredictor

    path = tmp_path / "rf_path.pt"
    make_predictor("rf_path", nb201, n_estimators=5).fit(nb201_all[:20],
                                                          np.arange(20.0)).save(path)
    with pytest.raises(ArchrankError, match=r"rf_path.pt: holds a 'rf_path' predictor, not "
                       r"'gates'; read any predictor file with Predictor.load$"):
        GatesPredictor.load(path)
    assert Predictor.load(path).name == "rf_path"
    assert isinstance(RFPredictor.load(path), RFPredictor)  # rf_path is a random forest


def test_predictions_do_not_depend_on_chunking(nb201, nb201_all) -> None:
    y = conv3x3_count(nb201_all, nb201)
    model = GatesPredictor(nb201, seed=0, **FAST).fit(nb201_all[:64], y[:64])
    whole = model.predict(nb201_all)
    model.hp["predict_chunk"] = 1000
    model.hp["threads"] = 2
    np.testing.assert_allclose(model.predict(nb201_all), whole, rtol=0, atol=1e-5)


# -- errors -------------------------------------------------------------------------------------
def test_clear_errors_for_bad_input(nb201, nb101, nb201_all) -> None:
    model = GatesPredictor(nb201, **FAST)
    with pytest.raises(ArchrankError, match="not fitted"):
        model.predict(nb201_all[:3])
    with pytest.raises(ArchrankError, match="zero architectures"):
        model.fit([], [])
    with pytest.raises(ArchrankError, match="3 architectures but 2 target"):
        model.fit(nb201_all[:3], [1.0, 2.0])
    with pytest.raises(ArchrankError, match="NaN"):
        model.fit(nb201_all[:3], [1.0, float("nan"), 2.0])
    model.fit(nb201_all[:10], np.arange(10.0))
    assert model.predict([]).shape == (0,)
    nb101_graphs = nb101.to_graphs(nb101.sample_specs(3, np.random.default_rng(0)))
    with pytest.raises(ArchrankError, match="7 nodes; graphs of space 'nb201' have 4"):
        model.predict(nb101_graphs)  # an op-on-node batch given to an nb201 predictor
    g = nb201_all[:3]
    with pytest.raises(ArchrankError, match="no edge_ops"):
        model.predict(GraphBatch(g.ops, g.adj, g.mask))
    with pytest.raises(ArchrankError, match="no parameter 'epoch'"):
        GatesPredictor(nb201, epoch=3)
    with pytest.raises(ArchrankError, match="unknown loss"):
        GatesPredictor(nb201, loss="ranknet")
    with pytest.raises(ArchrankError, match="unknown readout 'sum'"):
        GatesPredictor(nb201, readout="sum")
    with pytest.raises(ArchrankError, match="unknown predictor 'gatez'"):
        make_predictor("gatez", nb201)


def test_single_cell_and_constant_targets_are_refused(nb201, nb201_all) -> None:
    """One value, or all alike, ranks nothing: predictions would order cells by the random
    initialisation (a clear error, not a confident-looking ranking)."""
    with pytest.raises(ArchrankError, match=r"from 1 target value\(s\) that are all 90"):
        GatesPredictor(nb201, **FAST).fit(nb201_all[:1], [90.0])
    with pytest.raises(ArchrankError, match=r"from 20 target value\(s\) that are all 3: a "
                       r"predictor needs at least two different values"):
        GatesPredictor(nb201, **FAST).fit(nb201_all[:20], np.full(20, 3.0))
    model = GatesPredictor(nb201, **FAST).fit(nb201_all[:2], [3.0, 4.0])
    assert np.isfinite(model.predict(nb201_all[:5])).all()


# -- losses -------------------------------------------------------------------------------------
def test_hinge_loss_counts_only_misordered_pairs() -> None:
    y = torch.tensor([3.0, 2.0, 1.0, 1.0])
    good = torch.tensor([1.0, 0.5, 0.0, 0.3])  # right order, gaps >= margin (ties ignored)
    assert float(hinge_ranking_loss(good, y, margin=0.1)) == 0.0
    bad = torch.tensor([0.0, 0.5, 1.0, 1.0])
    # pairs (0>1),(0>2),(0>3),(1>2),(1>3): margin - diff = .6, 1.1, 1.1, .6, .6
    assert float(hinge_ranking_loss(bad, y, margin=0.1)) == pytest.approx(4.0 / 5)
    assert float(hinge_ranking_loss(bad, torch.ones(4))) == 0.0  # no ordered pair at all
    sampled = hinge_ranking_loss(bad, y, margin=0.1, max_pairs=2,
                                 generator=torch.Generator().manual_seed(0))
    assert 0.6 <= float(sampled) <= 1.1


def test_combined_loss_is_the_weighted_sum() -> None:
    s, y = torch.tensor([0.2, -0.1, 0.4]), torch.tensor([1.0, 0.0, -1.0])
    total = make_loss("combined", margin=0.1, mse_weight=0.5)(s, y)
    expected = hinge_ranking_loss(s, y, 0.1) + 0.5 * mse_loss(s, y)
    assert float(total) == pytest.approx(float(expected))
    with pytest.raises(ArchrankError, match="unknown loss"):
        make_loss("ranknet")


def test_library_mistakes_get_one_line_errors(nb201, nb201_all, tmp_path) -> None:
    """What a Python user gets wrong: a pair-less batch size, a single cell for a list, a
    matrix for the targets, a missing folder; and the space may be given by name."""
    from archrank.metrics import n_at_k

    with pytest.raises(ArchrankError, match=r"'batch_size' must be at least 2"):
        make_predictor("gates", nb201, batch_size=1)
    with pytest.raises(ArchrankError, match=r"ssa parameter batch_size must be at least 2"):
        make_predictor("ssa", nb201, batch_size=1)
    model = make_predictor("gates", "nb201", seed=3, **FAST)  # the space by name
    assert model.space.name == "nb201"
    archs = nb201.enumerate()[:30]
    y = np.arange(30.0)
    with pytest.raises(ArchrankError, match=r"target values have shape \(15, 2\)"):
        model.fit(archs, y.reshape(15, 2))
    model.fit(archs, y.reshape(30, 1))
    with pytest.raises(ArchrankError, match=r"wrap a single cell in a list"):
        model.predict(archs[0])
    assert model.predict([archs[0]]).shape == (1,)
    with pytest.raises(ArchrankError, match=r"folder .*nowhere does not exist"):
        model.save(tmp_path / "nowhere" / "m.pt")
    with pytest.raises(ArchrankError, match=r"k must be a whole number of at least 1, got 2.5"):
        n_at_k(y, y, 2.5)
    with pytest.raises(ArchrankError, match=r"path encoding is not available for space 'darts'"):
        make_predictor("rf_path", "darts")


def test_predictors_follow_scikit_learns_params_protocol(nb201) -> None:
    """get_params / set_params as scikit-learn's clone and parameter searches use them:
    get_params returned only the arguments given, and GridSearchCV / cross_val_score
    failed on scikit-learn 1.9 (no __sklearn_tags__)."""
    from archrank.predictors.neural import TRAIN_DEFAULTS

    model = make_predictor("gates", nb201, seed=5, **FAST)
    params = model.get_params()
    assert params == {"space": nb201, "seed": 5, **TRAIN_DEFAULTS, **GatesPredictor.defaults,
                      **FAST}
    assert params["loss"] == "hinge" and params["epochs"] == 2  # defaults and given ones
    twin = type(model)(**params)
    assert twin.get_params() == params
    assert model.set_params(epochs=3, seed=6) is model
    assert model.get_params()["epochs"] == 3 and model.seed == 6 and not model.fitted_
    assert model.params == {**FAST, "epochs": 3}  # defaults are not pinned by set_params
    with pytest.raises(ArchrankError, match="epochz"):
        model.set_params(epochz=3)
    forest = make_predictor("rf", nb201, n_estimators=5)
    assert forest.get_params()["target"] == "rank" and forest.get_params()["n_estimators"] == 5
    assert "min_samples_leaf" in forest.get_params()
    try:
        from sklearn.base import clone
        from sklearn.metrics import make_scorer
        from sklearn.model_selection import GridSearchCV, cross_val_score
    except ImportError:
        return
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    archs = nb201.sample(60, np.random.default_rng(0))
    y = conv3x3_count(nb201.to_graphs(archs), nb201) + np.arange(60) / 100
    scorer = make_scorer(kendall_tau)
    scores = cross_val_score(forest, archs, y, cv=3, scoring=scorer)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    search = GridSearchCV(forest, {"n_estimators": [3, 6]}, cv=2, scoring=scorer).fit(archs, y)
    assert search.best_params_["n_estimators"] in (3, 6)
    assert search.best_estimator_.predict(archs[:4]).shape == (4,)
