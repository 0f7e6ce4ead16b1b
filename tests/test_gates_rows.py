"""GATES inference as rows (``predictors.gates_rows``): each distinct node state computed once.

The fast path must score what the plain (autograd) pass scores, on darts (two input nodes,
21-node graphs), nb101 (padded cells) and nb201 (op on edge: the in-place dense pass), through
the predictor's chunked, multi-threaded ``predict``; and the plan must really share states.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archrank.predictors.gates import GatesNet, GatesPredictor
from archrank.predictors.gates_rows import plan_rows
from archrank.spaces import get_space

FAST = {"epochs": 2, "dim": 16, "op_dim": 8, "mlp_hidden": 16, "ensemble": 2}


@pytest.fixture(scope="module")
def darts():
    return get_space("darts")


def test_darts_nodes_reading_only_inputs_are_computed_once(darts) -> None:
    """An op node reading a cell input has one of 7 ops x 2 inputs = 14 states in the whole
    batch; the first intermediate node reads only inputs, so its 2 op nodes (and about half
    of all op nodes) are shared rows, and a cell keeps well under its 19 non-input nodes."""
    graphs = darts.to_graphs(darts.sample(3000, np.random.default_rng(3)))
    parts = plan_rows(graphs, darts.num_inputs, chunk=1000)
    assert [len(p) for p in parts] == [1000, 1000, 1000]
    shared = parts[0].shared.program
    first_group = shared.blocks[0]  # node 2: the normal cell's first op node
    assert first_group.b - first_group.a == 14
    own = torch.cat([p.nodes_own for p in parts])
    ext = torch.cat([p.nodes_ext for p in parts])
    assert bool(((own > 0) ^ (ext > 0)).all())  # every node in exactly one table
    assert bool((ext[:, 2:4] > 0).all()) and bool((ext[:, 11:13] > 0).all())
    private_per_cell = sum(len(p.program.ops) for p in parts) / len(graphs)
    assert 3 <= private_per_cell < 7  # two concat nodes and the output at least
    # the output node has no successor: it is the tail of a block that sends no message
    assert any(b.stop < b.b for p in parts for b in p.program.blocks)


@pytest.mark.parametrize("space_name", ["darts", "nb101"])
def test_rows_in_chunks_equal_the_plain_pass(space_name) -> None:
    """Chunked rows (shared table read by every chunk) give the autograd pass's embeddings,
    with duplicated cells in the batch (whole cells shared but their concat nodes)."""
    space = get_space(space_name)
    torch.manual_seed(2)
    net = GatesNet.encoder(space, dim=16, op_dim=8, layers=3, readout="concat_mean").eval()
    rng = np.random.default_rng(8)
    archs = (space.sample_specs(300, rng) if space_name == "nb101"  # type: ignore[attr-defined]
             else space.sample(300, rng))
    g = space.to_graphs(archs + archs[:40])
    slow = net.embed(g).detach()
    with torch.inference_mode():
        fast = torch.cat([net.embed(p) for p in plan_rows(g, space.num_inputs, chunk=77)])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("space_name", ["darts", "nb201"])
def test_predict_equals_the_plain_pass(space_name) -> None:
    """``predict`` (rows on darts, the in-place pass on nb201; chunks over 2 worker threads,
    ensemble of 2) equals the mean of the members' autograd forward passes."""
    space = get_space(space_name)
    archs = space.sample(600, np.random.default_rng(4))
    g = space.to_graphs(archs)
    y = np.random.default_rng(5).normal(size=100)
    model = GatesPredictor(space, seed=0, **FAST).fit(g[:100], y)
    model.hp["predict_chunk"] = 64
    model.hp["threads"] = 2
    fast = model.predict(g)
    with torch.enable_grad():
        plain = torch.stack([m(g).detach() for m in model.models_]).mean(0).double().numpy()
    np.testing.assert_allclose(fast, plain * model.y_std_ + model.y_mean_, rtol=1e-5,
                               atol=1e-5)
    model.hp["threads"] = 1
    model.hp["predict_chunk"] = 4096
    np.testing.assert_allclose(model.predict(g), fast, rtol=0, atol=1e-5)
