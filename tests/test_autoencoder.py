"""The graph auto-encoder over cells: node form, reconstruction, determinism, persistence."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.autoencoder import GraphAutoEncoder, to_node_form, vocabulary
from archrank.errors import ArchrankError
from archrank.spaces.base import GraphBatch

FAST = {"steps": 40, "hidden": 16, "embed_dim": 8, "min_epochs": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nb201_ae(nb201, nb201_all) -> GraphAutoEncoder:
    """Trained on half of the space; the other half is held out."""
    perm = torch.randperm(len(nb201_all), generator=torch.Generator().manual_seed(0))
    return GraphAutoEncoder(nb201, seed=0, steps=300, hidden=32).fit(nb201_all[perm[:7000]])


def test_node_form_of_an_edge_cell(nb201) -> None:
    cell = nb201.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|"
                       "nor_conv_1x1~2|")
    nf = to_node_form(nb201.to_graphs([cell]), nb201)
    vocab = vocabulary(nb201)
    assert nf.tokens.shape == (1, 10)  # 4 nodes + 6 edge slots
    slots = [vocab[t] for t in nf.tokens[0, 4:].tolist()]
    # slots in triu order: 0->1, 0->2, 0->3, 1->2, 1->3, 2->3
    assert slots == ["edge:nor_conv_3x3", "edge:none", "edge:avg_pool_3x3",
                     "edge:skip_connect", "edge:none", "edge:nor_conv_1x1"]
    adj = nf.adj[0]
    assert adj[0, 4] == 1 and adj[4, 1] == 1  # 0 -> slot(0,1) -> 1
    assert adj[:, 5].sum() == 0 and adj[5].sum() == 0  # a none edge is cut off
    assert bool(nf.mask.all())


def test_node_form_pads_small_nb101_cells(nb101) -> None:
    cell = nb101.from_record({"adjacency": "011001000", "ops": "input,conv3x3-bn-relu,output"})
    nf = to_node_form(nb101.to_graphs([cell]), nb101)
    assert nf.tokens.shape == (1, 7)
    assert nf.mask[0].tolist() == [True] * 3 + [False] * 4


def test_reconstruction_well_above_chance(nb201, nb201_ae, nb201_all) -> None:
    perm = torch.randperm(len(nb201_all), generator=torch.Generator().manual_seed(0))
    held_out = nb201_all[perm[7000:9000]]
    acc = nb201_ae.reconstruction_accuracy(held_out)
    # Edge slots carry one of 5 ops (chance 0.2); node slots are easy. 6 edge slots of 10.
    assert acc["ops"] > 0.8
    assert acc["adj"] > 0.95
    assert acc["cell"] > 0.01  # chance of a whole cell: 5**-6 = 0.00006
    rec = nb201_ae.reconstruct(held_out)
    edge_ok = (rec.tokens[:, 4:] == to_node_form(held_out, nb201).tokens[:, 4:]).float().mean()
    assert float(edge_ok) > 0.6  # chance 0.2


def test_embeddings_separate_different_cells(nb201_ae, nb201_all) -> None:
    z = nb201_ae.embed(nb201_all[:3000])
    assert z.shape == (3000, 16) and bool(torch.isfinite(z).all())
    assert len(torch.unique(z.round(decimals=4), dim=0)) > 1000


def test_flow_encoder_learns(nb201, nb201_all) -> None:
    """The GATES-style encoder only sees what reaches the output, so it cannot recover ops on
    cut-off edges; it still learns the cells (loss falls, embeddings differ)."""
    ae = GraphAutoEncoder(nb201, seed=0, encoder="flow", path_weight=1.0, steps=150,
                          hidden=16).fit(nb201_all[:4000])
    assert ae.history_[-1] < 0.7 * ae.history_[0]
    z = ae.embed(nb201_all[4000:6000])
    assert len(torch.unique(z.round(decimals=4), dim=0)) > 500


def test_nb101_autoencoder(nb101, nb101_csv: Path) -> None:
    with open(nb101_csv, newline="") as fh:
        rows = list(itertools.islice(csv.DictReader(fh), 2000))
    cells = nb101.to_graphs([nb101.from_record(r) for r in rows])
    ae = GraphAutoEncoder(nb101, seed=0, steps=200, hidden=32).fit(cells[:1500])
    assert ae.embed(cells[:50]).shape == (50, 16)
    acc = ae.reconstruction_accuracy(cells[1500:])
    # 7 node slots of 5 ops + "no node" (chance 1/6), 21 node pairs.
    assert acc["ops"] > 0.6 and acc["adj"] > 0.8


def test_deterministic_per_seed(nb201, nb201_all) -> None:
    data = nb201_all[:500]
    a = GraphAutoEncoder(nb201, seed=3, **FAST).fit(data).embed(data)
    b = GraphAutoEncoder(nb201, seed=3, **FAST).fit(data).embed(data)
    c = GraphAutoEncoder(nb201, seed=4, **FAST).fit(data).embed(data)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_save_load_round_trip(nb201, nb201_all, tmp_path: Path) -> None:
    data = nb201_all[:300]
    ae = GraphAutoEncoder(nb201, seed=0, encoder="flow", **FAST).fit(data)
    ae.save(tmp_path / "ae.pt")
    back = GraphAutoEncoder.load(tmp_path / "ae.pt")
    assert back.hp == ae.hp
    assert torch.equal(back.embed(data), ae.embed(data))


def test_supernet_form_on_darts(tmp_path: Path) -> None:
    """Darts cells as path codes (one op node per supernet edge): fitted (the reconstruction
    loss falls), saved and loaded; bad settings and codes fail clearly."""
    from archrank.spaces import get_space

    darts = get_space("darts")
    codes = darts.random_codes(300, np.random.default_rng(0))
    ae = GraphAutoEncoder(darts, seed=0, form="supernet", **FAST).fit(codes)
    assert ae.history_[-1] < 0.8 * ae.history_[0]
    assert ae.reconstruction_accuracy(codes)["ops"] > 0.5  # a random decoder: about 1/13
    ae.save(tmp_path / "ae.pt")
    back = GraphAutoEncoder.load(tmp_path / "ae.pt")
    assert back.form == "supernet" and torch.equal(back.embed(codes), ae.embed(codes))
    with pytest.raises(ArchrankError, match="supernet form takes the gcn encoder"):
        GraphAutoEncoder(darts, form="supernet", encoder="flow")
    with pytest.raises(ArchrankError, match="unknown auto-encoder form"):
        GraphAutoEncoder(darts, form="line")
    with pytest.raises(ArchrankError, match="'nb101' has no supernet graph"):
        GraphAutoEncoder(get_space("nb101"), form="supernet")
    with pytest.raises(ArchrankError, match=r"path codes must lie in 0\.\.7"):
        ae.embed(codes + 8)


def test_accepts_architecture_lists(nb201) -> None:
    cells = nb201.sample(64, np.random.default_rng(1))
    ae = GraphAutoEncoder(nb201, seed=0, **FAST).fit(cells)
    assert torch.equal(ae.embed(cells), ae.embed(nb201.to_graphs(cells)))


def test_clear_errors(nb201, nb201_all, tmp_path: Path) -> None:
    with pytest.raises(ArchrankError, match="no parameter 'depth'"):
        GraphAutoEncoder(nb201, depth=3)
    with pytest.raises(ArchrankError, match="unknown encoder"):
        GraphAutoEncoder(nb201, encoder="transformer")
    with pytest.raises(ArchrankError, match="not fitted"):
        GraphAutoEncoder(nb201).embed(nb201_all[:2])
    with pytest.raises(ArchrankError, match="zero cells"):
        GraphAutoEncoder(nb201).fit(nb201_all[:0])
    bad = nb201_all[:2]
    assert bad.edge_ops is not None
    bad = GraphBatch(bad.ops, bad.adj, bad.mask, bad.edge_ops + 7)
    with pytest.raises(ArchrankError, match="edge op indices"):
        GraphAutoEncoder(nb201, **FAST).fit(bad)
    with pytest.raises(ArchrankError, match="no such"):
        GraphAutoEncoder.load(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ArchrankError, match="not an archrank auto-encoder"):
        GraphAutoEncoder.load(tmp_path / "other.pt")


def test_short_schedules_and_any_integer_seed(nb201, nb201_all) -> None:
    """Ten steps in all (a tenth of them is no warm-up step) and seeds outside [0, 2^32)
    train as any other setting does; a float seed or min > max epochs is an error."""
    cells = nb201_all[:100]
    for steps in (1, 2, 10, 11):
        GraphAutoEncoder(nb201, steps=steps, embed_dim=8, hidden=16).fit(cells)
    GraphAutoEncoder(nb201, max_epochs=10, embed_dim=8, hidden=16).fit(nb201_all[:200])
    a = GraphAutoEncoder(nb201, seed=-1, steps=5, embed_dim=8, hidden=16).fit(cells)
    b = GraphAutoEncoder(nb201, seed=2**32 - 1, steps=5, embed_dim=8, hidden=16).fit(cells)
    assert torch.equal(a.embed(cells[:5]), b.embed(cells[:5]))
    with pytest.raises(ArchrankError, match=r"seed must be an integer, got 1\.5"):
        GraphAutoEncoder(nb201, seed=1.5)
    with pytest.raises(ArchrankError, match=r"min_epochs \(10\) exceeds max_epochs \(2\)"):
        GraphAutoEncoder(nb201, min_epochs=10, max_epochs=2)
