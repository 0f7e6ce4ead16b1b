"""The DARTS space: genotype text, canonical hash, sampling, graphs, networks, GATES on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from archrank.errors import ArchrankError, InvalidArchitecture
from archrank.nn import build_network, count_flops, count_params
from archrank.spaces import get_space
from archrank.spaces.darts import ALL_CONCAT, DARTS_OPS, Genotype
from conftest import assert_refuses_foreign_cells, one_line_error

# Genotypes as printed by the reference code: DARTS (quark0/darts cnn/genotypes.py, DARTS_V1
# / DARTS_V2) and PC-DARTS (yuhuixu1993/PC-DARTS genotypes.py, PC_DARTS_cifar).
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
DARTS_V1 = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
PC_DARTS = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), "
    "('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), "
    "('dil_conv_3x3', 1)], normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), "
    "('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"
)


@pytest.fixture(scope="module")
def darts():
    return get_space("darts")


def _with(g: Genotype, **cells: object) -> Genotype:
    fields = {f: getattr(g, f) for f in ("normal", "normal_concat", "reduce", "reduce_concat")}
    fields.update(cells)
    return Genotype(**fields)  # type: ignore[arg-type]


# -- published parameter counts ------------------------------------------------------------
@pytest.mark.parametrize(("text", "params", "published"), [
    (DARTS_V2, 3_349_342, 3.3e6),   # DARTS (second order) paper: 3.3 M; 3.35 M as counted
    (PC_DARTS, 3_634_678, 3.6e6),   # PC-DARTS paper: 3.6 M; 3.63 M as counted
    (DARTS_V1, 3_169_414, 3.3e6),   # DARTS (first order) paper: 3.3 M; we derive 3.17 M
])
def test_published_parameter_counts(darts, text: str, params: int, published: float) -> None:
    """36 channels, 20 cells, CIFAR-10, auxiliary head excluded (as the reference counts)."""
    net = build_network(darts, darts.parse(text))
    assert count_params(net) == params
    assert abs(params - published) / published < 0.05


def test_auxiliary_head_is_extra_and_used_in_training(darts) -> None:
    g = darts.parse(DARTS_V2)
    plain = build_network(darts, g, width=8, depth=5)
    aux = build_network(darts, g, width=8, depth=5)
    aux_net = type(aux)(g, width=8, depth=5, auxiliary=True, drop_path_prob=0.2)
    assert count_params(aux_net) > count_params(plain)
    aux_net.train()
    out = aux_net(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and aux_net.aux_logits is not None
    assert aux_net.aux_logits.shape == (4, 10)
    aux_net.eval()
    aux_net(torch.randn(2, 3, 32, 32))
    assert aux_net.aux_logits is None
    # maps under 8 after the second reduction (MNIST's 28x28, 16x16, short signals): the
    # head pools to 2 instead of failing inside torch
    aux_net.train()
    for shape, kind in (((1, 28, 28), "2d"), ((3, 16, 16), "2d"), ((1, 20), "1d")):
        small = type(aux)(g, width=8, depth=5, in_channels=shape[0], input_kind=kind,
                          auxiliary=True).train()
        small(torch.randn(2, *shape))
        assert small.aux_logits is not None and small.aux_logits.shape == (2, 10)


def test_signals_and_any_size(darts) -> None:
    g = darts.sample(1, np.random.default_rng(3))[0]
    net = build_network(darts, g, width=8, depth=5, in_channels=1, input_kind="1d")
    assert net(torch.randn(3, 1, 40)).shape == (3, 10)
    odd = build_network(darts, g, width=4, depth=3, in_channels=1, input_kind="1d")
    assert odd(torch.randn(2, 1, 37)).shape == (2, 10)  # odd lengths reduce cleanly
    assert count_flops(net, (1, 40)) > 0


# -- text forms ----------------------------------------------------------------------------
def test_genotype_text_round_trips(darts) -> None:
    for text in (DARTS_V2, DARTS_V1, PC_DARTS):
        g = darts.parse(text)
        assert darts.parse(darts.format(g)) == g
        assert darts.from_record({"genotype": darts.format(g)}) == g
        assert darts.from_record(darts.to_record(g)) == g
        assert darts.from_record({"arch": darts.to_json(g)}) == g
        assert darts.parse(json.dumps(darts.to_json(g))) == g
    pc = darts.parse(PC_DARTS)
    assert pc.normal_concat == ALL_CONCAT  # range(2, 6)
    assert darts.parse("genotypes.Genotype(" + PC_DARTS[len("Genotype("):]) == pc
    for g in darts.sample(50, np.random.default_rng(0)):
        assert darts.parse(darts.format(g)) == g


def test_reads_one_input_twice(darts) -> None:
    """The ENAS genotype reads node 1 twice in its first node; parsing keeps it."""
    text = DARTS_V2.replace("('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0)",
                            "('sep_conv_3x3', 1), ('skip_connect', 1), ('sep_conv_3x3', 0)", 1)
    g = darts.parse(text)
    assert g.normal[0] == ("sep_conv_3x3", 1) and g.normal[1] == ("skip_connect", 1)
    net = build_network(darts, g, width=4, depth=3)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize(("text", "message"), [
    (DARTS_V2.replace("sep_conv_3x3", "conv_7x7", 1), "unknown op 'conv_7x7'"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)]", "('dil_conv_3x3', 2), ('skip_connect', 0)]"),
     "exactly two inputs each (8 (op, input) pairs), got 9"),
    (DARTS_V2.replace("('sep_conv_3x3', 1), ('skip_connect', 0)", "('sep_conv_3x3', 4), "
                      "('skip_connect', 0)", 1), "node 4 reads input 4"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 6]"), "normal_concat"),
    ("Genotype(normal=[", "cannot read genotype"),
    ("Genotype(normal=__import__('os'))", "expected a list"),
    ("{\"normal\": 3, \"reduce\": []}", "got int"),
    ("{\"normal\": []}", "missing field 'reduce'"),
    ("Genotype(normal=[], colour=[])", "unknown Genotype field 'colour'"),
])
def test_clear_errors(darts, text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as err:
        darts.parse(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# -- canonical hash ------------------------------------------------------------------------
def test_hash_ignores_input_order_and_node_numbering(darts) -> None:
    g = darts.parse(DARTS_V2)
    n = list(g.normal)
    swapped = _with(g, normal=(n[1], n[0], *n[2:]))          # a node's two inputs swapped
    assert swapped != g and darts.hash(swapped) == darts.hash(g)
    # hand-made renumbering: nodes 2 and 3 read only the cell inputs, so they can trade places
    base = darts.parse(
        "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 0), "
        "('dil_conv_5x5', 1), ('sep_conv_5x5', 2), ('avg_pool_3x3', 3), ('skip_connect', 2), "
        "('sep_conv_3x3', 4)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
        "reduce_concat=[2, 3, 4, 5])")
    renumbered = _with(base, normal=(
        ("max_pool_3x3", 0), ("dil_conv_5x5", 1), ("sep_conv_3x3", 0), ("skip_connect", 1),
        ("avg_pool_3x3", 2), ("sep_conv_5x5", 3), ("skip_connect", 3), ("sep_conv_3x3", 4)))
    assert darts.hash(renumbered) == darts.hash(base)
    # the same renumbering without moving node 5's input (it now reads the other node)
    wrong = _with(renumbered, normal=(*renumbered.normal[:6], ("skip_connect", 2),
                                      renumbered.normal[7]))
    assert darts.hash(wrong) != darts.hash(base)


def test_hash_distinguishes_what_differs(darts) -> None:
    g = darts.parse(DARTS_V2)
    n = list(g.normal)
    cells = {
        "op": _with(g, normal=(("sep_conv_5x5", 0), *n[1:])),
        "input": _with(g, normal=(*n[:2], ("sep_conv_3x3", 2), *n[3:])),
        "c_k-2 vs c_k-1": _with(g, normal=(("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                                           ("sep_conv_3x3", 1), *n[3:])),
        "cells swapped": _with(g, normal=g.reduce, reduce=g.normal),
        "concat": _with(g, normal_concat=(2, 3, 5)),
    }
    hashes = {darts.hash(g)} | {darts.hash(c) for c in cells.values()}
    assert len(hashes) == len(cells) + 1


def test_dead_nodes_do_not_count(darts) -> None:
    """A node neither concatenated nor read by a live node cannot change the output."""
    g = _with(darts.parse(DARTS_V2), normal_concat=(2, 3, 4))  # node 5 is dead
    n = list(g.normal)
    other = _with(g, normal=(*n[:6], ("max_pool_3x3", 1), ("avg_pool_3x3", 0)))
    assert darts.hash(other) == darts.hash(g)


def test_hashes_batch_equals_one_by_one(darts) -> None:
    gs = darts.sample(200, np.random.default_rng(1))
    assert darts.hash_many(gs) == [darts.hash(g) for g in gs]
    assert len(set(darts.hash_many(gs))) == 200


# -- sampling and neighbourhoods -----------------------------------------------------------
def test_sampling_covers_the_space_uniformly(darts) -> None:
    gs = darts.sample(4000, np.random.default_rng(0))
    a = darts.arrays(gs)
    srcs = a["srcs"]
    assert (srcs[:, :, 0::2] != srcs[:, :, 1::2]).all()          # distinct inputs per node
    for k in range(4):
        assert (srcs[:, :, 2 * k:2 * k + 2] < 2 + k).all()
    last = np.bincount(srcs[:, 0, 6:].ravel(), minlength=6)[:5]  # node 5 reads 0..4 alike
    assert last.min() > 0.8 * last.mean()
    ops = np.bincount(a["ops"].ravel(), minlength=len(DARTS_OPS))
    assert ops.min() > 0.9 * ops.mean()
    assert all(g.normal_concat == ALL_CONCAT for g in gs)
    same = darts.sample(5, np.random.default_rng(7))
    assert same == darts.sample(5, np.random.default_rng(7))


def test_neighbours_and_mutation(darts) -> None:
    g = darts.parse(DARTS_V2)
    nbrs = darts.neighbours(g)
    for other in nbrs:
        diffs = sum(a != b for a, b in zip(g.normal + g.reduce, other.normal + other.reduce,
                                           strict=True))
        assert diffs == 1
        darts.validate(other)
    # 16 pairs x 6 other ops, plus every other distinct earlier input per pair
    inputs = sum(max(0, 2 + k // 2 - 2) for k in range(8)) * 2
    assert len(nbrs) == 16 * 6 + inputs
    m = darts.mutate(g, np.random.default_rng(0))
    assert darts.hash(m) != darts.hash(g)


# -- graph tensors and GATES ---------------------------------------------------------------
def test_graph_tensors(darts) -> None:
    g = darts.parse(DARTS_V2)
    batch = darts.to_graphs([g])
    assert batch.ops.shape == (1, 21) and batch.adj.shape == (1, 21, 21)
    ops, adj = batch.ops[0], batch.adj[0]
    names = darts.node_op_names
    assert names[int(ops[0])] == names[int(ops[1])] == "input"
    assert [names[int(o)] for o in ops[2:10]] == [op for op, _ in g.normal]
    assert names[int(ops[10])] == "normal_concat" and names[int(ops[19])] == "reduce_concat"
    assert torch.equal(torch.triu(adj, 1), adj)                    # topological order
    # normal node 5's second pair reads node 2, i.e. both op nodes of node 2 (graph nodes 2, 3)
    assert adj[2, 9] == adj[3, 9] == 1 and adj[:, 9].sum() == 2
    assert adj[:, 10].sum() == 8 and adj[10, 20] == adj[19, 20] == 1
    assert int(adj[0].sum()) > 0 and int(adj[1].sum()) > 0


@pytest.mark.usefixtures("one_torch_thread")
def test_gates_learns_on_darts_and_respects_equivalence(darts) -> None:
    from archrank.metrics import kendall_tau
    from archrank.predictors.base import make_predictor

    rng = np.random.default_rng(0)
    gs = darts.sample(400, rng)
    a = darts.arrays(gs)
    # a known ranking that needs both inputs told apart and both cells read
    y = (((a["ops"][:, 0] >= 3) & (a["srcs"][:, 0] == 1)).sum(1)
         + 0.5 * (a["ops"][:, 0] >= 3).sum(1) - 0.7 * (a["ops"][:, 1] <= 1).sum(1)
         + rng.normal(0, 0.3, len(gs)))
    model = make_predictor("gates", darts, seed=0, epochs=80, ensemble=1).fit(gs[:250], y[:250])
    assert kendall_tau(model.predict(gs[250:]), y[250:]) > 0.6
    g = darts.parse(DARTS_V2)
    n = list(g.normal)
    pred = model.predict([g, _with(g, normal=(n[1], n[0], *n[2:])),
                          _with(g, normal=g.reduce, reduce=g.normal)])
    assert pred[0] == pytest.approx(pred[1], abs=1e-5)
    assert pred[0] != pytest.approx(pred[2], abs=1e-4)


def test_training_oracle_runs_on_darts(darts) -> None:
    from archrank.oracles.training import TrainingOracle, TrainRecipe

    x = np.random.default_rng(0).normal(size=(96, 1, 16)).astype(np.float32)
    y = (x[:, 0, :8].mean(1) > 0).astype(np.int64)
    from archrank.datasets import ArrayDataset

    data = ArrayDataset("toy", x[:64], y[:64], x[64:], y[64:], num_classes=2)
    oracle = TrainingOracle(darts, data, width=4, depth=3, recipe=TrainRecipe(epochs=1,
                                                                             batch_size=32))
    result = oracle.evaluate(darts.parse(DARTS_V2))
    assert result.status == "ok", result.error
    assert 0 <= result.metrics["val_acc"] <= 100


def test_enumeration_is_refused_clearly(darts) -> None:
    assert not darts.enumerable
    with pytest.raises((ArchrankError, NotImplementedError)) as err:
        darts.enumerate()
    assert "cannot be enumerated" in str(err.value)


def test_commands_that_enumerate_refuse_darts_in_one_line(cli, tmp_path) -> None:
    from conftest import one_line_error

    line = one_line_error(*cli("zc", "--space", "darts", "--fill")[:3:2])
    assert "--fill: space 'darts' cannot be enumerated" in line and "--table" in line
    line = one_line_error(*cli("space", "enumerate", "darts", "--out", tmp_path / "x")[:3:2])
    assert "cannot be enumerated" in line


def test_sparse_inference_pass_equals_training_pass(darts) -> None:
    """The no-grad pass gathers each node's few predecessors; it must equal the dense sum."""
    from archrank.predictors.gates import GatesNet

    torch.manual_seed(0)
    net = GatesNet.encoder(darts, dim=16, op_dim=8, layers=2, readout="concat_mean").eval()
    graphs = darts.to_graphs(darts.sample(64, np.random.default_rng(5)))
    with torch.no_grad():
        fast = net.embed(graphs)
    slow = net.embed(graphs).detach()
    assert torch.allclose(fast, slow, atol=1e-5)


@pytest.mark.parametrize("space_name", ["darts", "nb101"])
def test_inference_pass_equals_training_pass_with_weights_and_padding(space_name) -> None:
    """The same with weighted edges (the gather's per-edge weights) and, on nb101, cells of
    different sizes (padding: the output node is not the same slot in every cell)."""
    from archrank.predictors.gates import GatesNet
    from archrank.spaces import get_space

    space = get_space(space_name)
    torch.manual_seed(1)
    net = GatesNet.encoder(space, dim=16, op_dim=8, layers=3, readout="concat_mean").eval()
    g = space.to_graphs(space.sample(200, np.random.default_rng(6)))
    if space_name == "darts":
        g = type(g)(g.ops, g.adj * torch.where(torch.rand(g.adj.shape) < 0.3, 0.5, 1.0), g.mask)
    else:
        assert len(set(g.mask.sum(1).tolist())) > 1  # the sample mixes cell sizes
    with torch.no_grad():
        fast = net.embed(g)
    slow = net.embed(g).detach()
    assert torch.allclose(fast, slow, atol=1e-5)


def test_tables_of_darts_cells_read_back(darts, tmp_path) -> None:
    """A table with an ``arch`` column of genotype texts (what ``bench table`` and ``runs
    export --csv`` write) is a benchmark of the darts space."""
    import csv

    from archrank.tables import load_benchmark

    gs = darts.sample(3, np.random.default_rng(2))
    path = tmp_path / "darts.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arch", "val_acc"])
        for i, g in enumerate(gs):
            writer.writerow([darts.format(g), 90 + i])
    table = load_benchmark(str(path), darts)
    assert [darts.hash(a) for a in table.archs] == [darts.hash(g) for g in gs]
    assert list(table.values("val_acc")) == [90, 91, 92]


def test_hash_many_is_hash_of_each_on_every_space():
    """The strategies hash neighbour lists in one batch (``hash_many``; vectorised on darts,
    where one genotype alone costs milliseconds): it must be the single hash, cell by cell."""
    rng = np.random.default_rng(5)
    for name in ("darts", "nb201"):
        space = get_space(name)
        cells = space.sample(4, rng)
        cells += space.neighbours(cells[0])
        assert space.hash_many(cells) == [space.hash(c) for c in cells]


def test_genotype_text_and_json_refuse_what_python_would() -> None:
    """A misspelt JSON field became the full-concat default; a field given by position and
    by keyword kept the keyword's; range(2, 10**6) built a list of a million nodes."""
    from archrank.errors import InvalidArchitecture

    space = get_space("darts")
    cell = ("[('sep_conv_3x3',0),('sep_conv_3x3',1),('sep_conv_3x3',0),('sep_conv_3x3',1),"
            "('sep_conv_3x3',1),('skip_connect',0),('skip_connect',0),('dil_conv_3x3',2)]")
    for text, message in (
            (json.dumps({"normal": eval(cell), "reduce": eval(cell), "normal_concatt": [2]}),
             "unknown genotype field 'normal_concatt'"),
            (f"Genotype({cell}, normal={cell}, reduce={cell})", "'normal' given twice"),
            (f"Genotype(normal={cell}, normal_concat=range(2, 1000000), reduce={cell})",
             r"range\(2, 1000000\) is not a list of nodes")):
        with pytest.raises(InvalidArchitecture, match=message):
            space.parse(text)


def test_darts_search_depth_and_resume_from_the_checkpoint(cli, tmp_path) -> None:
    pytest.importorskip("sklearn")
    ckpt = tmp_path / "s.pt"
    base = ["oneshot", "search", "--space", "darts", "--dataset", "digits", "--epochs", "1",
            "--width", "4"]
    line = one_line_error(*cli(*base, "--method", "darts", "--depth", "2", "-o", ckpt)[::2])
    assert "depth >= 3" in line  # was an internal error (exit 1)
    line = one_line_error(*cli(*base, "--method", "darts", "--depth", "3", "--ea-evals", "5",
                               "-o", ckpt)[::2])
    assert "--ea-evals: an option of spos-ea, not darts" in line
    status, _, err = cli(*base, "--method", "darts", "--depth", "3", "-o", ckpt)
    assert status == 0, err
    status, _, err = cli("oneshot", "search", "--resume", ckpt)  # space and method: its own
    assert status == 0, err


def test_canonical_genotype_is_one_per_hash(darts) -> None:
    """Pair swaps and node renumberings give one canonical genotype, with the same hash;
    it is a fixed point. (The zero-cost cache computes a hash's proxies on it, so two fills
    in different orders store the same values.)"""
    import itertools

    rng = np.random.default_rng(7)
    for n, g in enumerate(darts.sample(300, rng)):
        if n % 2:  # half with a partial concat: dead nodes, which the network still builds
            keep = rng.choice(ALL_CONCAT, size=int(rng.integers(1, 4)), replace=False)
            g = Genotype(g.normal, tuple(sorted(int(k) for k in keep)), g.reduce,
                         g.reduce_concat)
        c = darts.canonical(g)
        assert darts.hash(c) == darts.hash(g) and darts.canonical(c) == c
        assert darts.parse(darts.format(c)) == c
        pairs = [list(g.normal[2 * k:2 * k + 2]) for k in range(4)]
        for order in itertools.permutations(range(4)):  # every valid renumbering
            new = {2 + old: 2 + pos for pos, old in enumerate(order)}
            moved = [None] * 4
            for pos, old in enumerate(order):
                moved[pos] = [(op, new.get(i, i)) for op, i in pairs[old]][::-1]
            if any(i >= 2 + pos for pos, node in enumerate(moved) for _, i in node):
                continue  # a node would read a later one: not a genotype
            twin = Genotype(tuple(p for node in moved for p in node),
                            tuple(sorted(new[k] for k in g.normal_concat)),
                            g.reduce, g.reduce_concat)
            assert darts.hash(twin) == darts.hash(g)
            assert darts.canonical(twin) == c
    v2 = darts.parse(DARTS_V2)
    assert darts.hash(darts.canonical(v2)) == darts.hash(v2)


def test_text_or_another_spaces_cell_is_a_one_line_error() -> None:
    """hash / format / neighbours / to_graphs of a genotype's text or an nb201 cell raised
    AttributeError; now the one-line error nb201 gives, with a pointer to parse."""
    space = get_space("darts")
    good = space.parse(DARTS_V2)
    assert_refuses_foreign_cells(space, [
        space.hash, space.format, space.neighbours, space.validate, space.canonical,
        lambda a: space.to_graphs([good, a]), lambda a: space.hash_many([a]),
        lambda a: space.mutate(a, np.random.default_rng(0))], good)
