"""The semi-supervised assessor: learning, inductive vs transductive, persistence, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import archrank.predictors.ssa as ssa_mod
from archrank.autoencoder import GraphAutoEncoder
from archrank.errors import ArchrankError
from archrank.metrics import kendall_tau
from archrank.predictors.base import Predictor, make_predictor
from archrank.predictors.ssa import SSAPredictor, graph_keys, graphs_from_keys
from archrank.spaces import get_space
from archrank.spaces.base import GraphBatch
from archrank.tables import load_benchmark

# Small and single-threaded: these tests check behaviour, the benchmarks check quality.
FAST = {"ae_steps": 60, "ae_hidden": 16, "embed_dim": 8, "steps": 100, "hidden": 16,
        "encoder_dim": 16, "head_hidden": 16, "lr": 5e-3, "refresh_every": 25, "ensemble": 1,
        "threads": 1}
# The paper's configuration: graph in the auto-encoder's embedding, the embedding (and the
# one-hot code) as node inputs next to the fine-tuned auto-encoder's encoder.
PAPER = {"graph_on": "embedding", "features": "embedding+onehot", "node_encoder": "ae",
         "head_hidden": 0}


def conv3x3_count(graphs: GraphBatch, space) -> np.ndarray:
    """Number of nor_conv_3x3 edges that pass information: a known ranking to learn."""
    conv = space.edge_op_names.index("nor_conv_3x3")
    return ((graphs.edge_ops == conv) & (graphs.adj > 0)).sum((1, 2)).numpy().astype(float)


@pytest.fixture(scope="module")
def split(nb201_all):
    """80 labelled cells, a pool of 1,500 unlabelled ones, 300 cells outside the graph."""
    perm = torch.randperm(len(nb201_all), generator=torch.Generator().manual_seed(0))
    return perm[:80], perm[80:1580], perm[1580:1880]


@pytest.fixture(scope="module")
def fitted(nb201, nb201_all, split) -> SSAPredictor:
    lab, pool, _ = split
    y = conv3x3_count(nb201_all, nb201)
    model = SSAPredictor(nb201, seed=0, **FAST)
    return model.fit(nb201_all[lab], y[lab.numpy()], unlabeled=nb201_all[pool])


def test_registered_and_builds(nb201) -> None:
    model = make_predictor("ssa", nb201, seed=1, k=5)
    assert isinstance(model, SSAPredictor) and model.hp["k"] == 5


def test_learns_a_known_ranking(nb201, nb201_all, split, fitted) -> None:
    _, pool, outside = split
    y = conv3x3_count(nb201_all, nb201)
    graph = fitted.graph_
    assert graph is not None and graph.num_nodes == 1580
    assert kendall_tau(y[pool.numpy()], fitted.predict(nb201_all[pool])) > 0.5
    assert kendall_tau(y[outside.numpy()], fitted.predict(nb201_all[outside])) > 0.5


def test_inductive_path_agrees_with_transductive(nb201_all, split, fitted) -> None:
    """A pool cell scored as a node of the graph and scored as a new cell attached to the
    graph by the kNN rule get close scores."""
    _, pool, _ = split
    cells = nb201_all[pool[:400]]
    trans = fitted.predict_scores(cells, transductive=True)
    induc = fitted.predict_scores(cells, transductive=False)
    assert kendall_tau(trans, induc) > 0.9
    assert np.abs(trans - induc).mean() < 0.15 * trans.std()


def test_graph_cells_are_looked_up(nb201_all, split, fitted) -> None:
    lab, pool, outside = split
    assert (fitted.lookup(nb201_all[pool[:50]]) >= 0).all()
    assert (fitted.lookup(nb201_all[lab[:10]]) >= 0).all()
    assert (fitted.lookup(nb201_all[outside[:50]]) == -1).all()
    # Unseen cells in any order and batch give the same scores.
    a = fitted.predict(nb201_all[outside[:40]])
    b = fitted.predict(nb201_all[outside[:40].flip(0)])[::-1]
    assert np.allclose(a, b, atol=1e-5)


def test_keys_round_trip(nb201, nb201_all) -> None:
    g = nb201_all[:100]
    back = graphs_from_keys(graph_keys(g, nb201), nb201)
    assert torch.equal(back.ops, g.ops) and torch.equal(back.mask, g.mask)
    assert torch.equal(back.adj, g.adj) and torch.equal(back.edge_ops, g.edge_ops)


def test_fit_ignores_input_order(nb201, nb201_all, split) -> None:
    lab, pool, _ = split
    y = conv3x3_count(nb201_all, nb201)
    params = {**FAST, "steps": 30}
    a = SSAPredictor(nb201, seed=2, **params).fit(nb201_all[lab], y[lab.numpy()],
                                                   unlabeled=nb201_all[pool[:500]])
    rev = lab.flip(0)
    b = SSAPredictor(nb201, seed=2, **params).fit(nb201_all[rev], y[rev.numpy()],
                                                   unlabeled=nb201_all[pool[:500].flip(0)])
    cells = nb201_all[pool[:200]]
    assert np.allclose(a.predict(cells), b.predict(cells), atol=1e-5)


def test_save_load_round_trip(nb201_all, split, fitted, tmp_path: Path) -> None:
    _, pool, outside = split
    fitted.save(tmp_path / "ssa.pt")
    back = Predictor.load(tmp_path / "ssa.pt")
    assert isinstance(back, SSAPredictor)
    for idx in (pool[:100], outside[:100]):
        assert np.allclose(back.predict(nb201_all[idx]), fitted.predict(nb201_all[idx]),
                           atol=1e-5)


def test_default_pool_is_sampled_when_the_space_is_large(nb201, nb201_all, split) -> None:
    lab, _, _ = split
    y = conv3x3_count(nb201_all, nb201)
    model = SSAPredictor(nb201, seed=0, pool_size=400, **{**FAST, "steps": 20})
    model.fit(nb201_all[lab], y[lab.numpy()])
    assert model.graph_ is not None and 400 < model.graph_.num_nodes <= 480


def test_auto_encoder_is_reused_for_the_same_pool(nb201, nb201_all, split,
                                                  monkeypatch) -> None:
    lab, pool, _ = split
    y = conv3x3_count(nb201_all, nb201)
    fits = []
    real_fit = GraphAutoEncoder.fit

    def counting_fit(self, graphs):
        fits.append(len(graphs))
        return real_fit(self, graphs)

    monkeypatch.setattr(GraphAutoEncoder, "fit", counting_fit)
    params = {**FAST, **PAPER, "steps": 10, "seed": 7}
    everything = torch.cat([lab, pool[:300]])
    SSAPredictor(nb201, **params).fit(nb201_all[lab], y[lab.numpy()],
                                      unlabeled=nb201_all[pool[:300]])
    # Another labelled/unlabelled split of the same cells: the same auto-encoder.
    SSAPredictor(nb201, **params).fit(nb201_all[everything[:200]], y[everything[:200].numpy()],
                                      unlabeled=nb201_all[everything[200:]])
    assert fits == [380]


def test_nb101_table(nb101_csv: Path) -> None:
    space = get_space("nb101")
    bench = load_benchmark(nb101_csv, space)
    y = np.asarray(bench.values("val_acc_108"), dtype=float)[:1000]
    graphs = space.to_graphs(bench.archs[:1000])
    model = SSAPredictor(space, seed=0, **FAST)
    model.fit(graphs[:100], y[:100], unlabeled=graphs[100:800])
    scores = model.predict(graphs[100:])  # 700 graph nodes and 200 new cells
    assert np.isfinite(scores).all()
    assert kendall_tau(y[100:], scores) > 0.2


def test_clear_errors(nb201, nb201_all, split) -> None:
    lab, pool, _ = split
    y = conv3x3_count(nb201_all, nb201)
    with pytest.raises(ArchrankError, match="no parameter 'depth'"):
        SSAPredictor(nb201, depth=2)
    with pytest.raises(ArchrankError, match="bad features"):
        SSAPredictor(nb201, features="embedding+zc")
    with pytest.raises(ArchrankError, match="unknown metric"):
        SSAPredictor(nb201, metric="manhattan")
    with pytest.raises(ArchrankError, match="unknown node_encoder"):
        SSAPredictor(nb201, node_encoder="lstm")
    with pytest.raises(ArchrankError, match="features=none requires finetune"):
        SSAPredictor(nb201, features="none", finetune=False)
    with pytest.raises(ArchrankError, match="'batch_size' must be at least 1"):
        SSAPredictor(nb201, batch_size=0)
    with pytest.raises(ArchrankError, match="k must be at least 1"):
        SSAPredictor(nb201, k=0)
    with pytest.raises(ArchrankError, match="not fitted"):
        SSAPredictor(nb201).predict(nb201_all[:3])
    with pytest.raises(ArchrankError, match="2 target values"):
        SSAPredictor(nb201).fit(nb201_all[:5], [1.0, 2.0])
    with pytest.raises(ArchrankError, match="distinct cells"):
        SSAPredictor(nb201, **FAST).fit(nb201_all[lab[:4]], y[lab[:4].numpy()],
                                        unlabeled=nb201_all[lab[:4]])
    no_edges = nb201_all[pool[:10]]
    with pytest.raises(ArchrankError, match="no edge_ops"):
        SSAPredictor(nb201, **FAST).fit(GraphBatch(no_edges.ops, no_edges.adj, no_edges.mask),
                                        y[:10])


def test_cache_is_bounded() -> None:
    assert ssa_mod._AE_CACHE_SIZE <= 8


def test_default_skips_the_auto_encoder(fitted) -> None:
    """The default graph joins cells by their structural codes and the node encoder is a
    fresh GATES network, so nothing reads an auto-encoder and none is trained."""
    assert not fitted.uses_auto_encoder() and fitted.ae_ is None
    assert fitted.z_ is not None and fitted.z_.shape[1] == 0


def test_paper_configuration_graph_in_embedding_space(nb201, nb201_all, split,
                                                      tmp_path: Path) -> None:
    """With ``graph_on=embedding`` the neighbours come from the auto-encoder's embedding;
    new cells are attached by the same vectors (a cell of the graph scored inductively lands
    on its own node's neighbours), and the round trip through save/load keeps them."""
    lab, pool, outside = split
    y = conv3x3_count(nb201_all, nb201)
    model = SSAPredictor(nb201, seed=0, **{**FAST, **PAPER})
    model.fit(nb201_all[lab], y[lab.numpy()], unlabeled=nb201_all[pool])
    assert model.uses_auto_encoder() and model.ae_ is not None
    assert model.gz_ is not None and model.z_ is not None
    assert model.gz_.shape[1] == model.z_.shape[1] == FAST["embed_dim"]
    assert kendall_tau(y[outside.numpy()], model.predict(nb201_all[outside])) > 0.5
    cells = nb201_all[pool[:300]]
    trans = model.predict_scores(cells, transductive=True)
    induc = model.predict_scores(cells, transductive=False)
    assert kendall_tau(trans, induc) > 0.9
    model.save(tmp_path / "ssa.pt")
    back = Predictor.load(tmp_path / "ssa.pt")
    outside = nb201_all[split[2][:100]]
    assert np.allclose(back.predict(outside), model.predict(outside), atol=1e-5)
    with pytest.raises(ArchrankError, match="graph_on"):
        SSAPredictor(nb201, graph_on="embedding+flops")


def test_ssa_settings_it_cannot_train_with_are_refused_up_front():
    """Refused when the predictor is made, not at the first fit of a search: path encodings
    on darts (with the setting that avoids them named), out-of-range dropout / val_fraction."""
    darts = get_space("darts")
    with pytest.raises(ArchrankError, match=r"needs path encodings.*use graph_on=onehot"):
        make_predictor("ssa", darts)
    make_predictor("ssa", darts, graph_on="onehot")
    for params, message in [({"dropout": 1.5}, "dropout must lie in"),
                            ({"val_fraction": 2}, "val_fraction must lie in")]:
        with pytest.raises(ArchrankError, match=message):
            make_predictor("ssa", get_space("nb201"), **params)


def test_a_diverged_predictor_is_an_error_not_nan_scores():
    """A learning rate that blows the weights up made every score NaN, which guided search
    took for an exhausted space (and stopped, exit 0): now a one-line error."""
    space = get_space("nb201")
    cells = space.sample(60, np.random.default_rng(0))
    y = np.random.default_rng(1).normal(size=60)
    model = make_predictor("gates", space, lr=1e4, epochs=20, ensemble=1, threads=1)
    with pytest.raises(ArchrankError, match="predictor 'gates' diverged"):
        model.fit(cells, y)
    for params, message in [({"layers": 0}, "'layers' must be at least 1"),
                            ({"device": "mps"}, "use cpu or cuda")]:
        with pytest.raises(ArchrankError, match=message):
            make_predictor("gates", space, **params)
    with pytest.raises(ArchrankError, match="'arch_hidden' must be at least 1"):
        make_predictor("gates++", space, arch_hidden=0)


def test_any_integer_seed_as_other_predictors(nb201, nb201_all, split) -> None:
    """A negative or huge seed folds into 32 bits as every predictor's does (the sampled
    pool and the auto-encoder used the raw seed and failed)."""
    lab, _, _ = split
    y = conv3x3_count(nb201_all, nb201)[lab.numpy()]
    small = {**FAST, "pool_size": 200, "steps": 5, "ae_steps": 5}
    a = SSAPredictor(nb201, seed=-1, **small).fit(nb201_all[lab], y)
    b = SSAPredictor(nb201, seed=2**32 - 1, **small).fit(nb201_all[lab], y)
    np.testing.assert_array_equal(a.predict(nb201_all[:20]), b.predict(nb201_all[:20]))
    SSAPredictor(nb201, seed=2**70, **small, graph_on="embedding").fit(nb201_all[lab], y)
