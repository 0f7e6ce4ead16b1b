"""The NAS-Bench-Graph space: our canonical hash equals the benchmark's key on every
architecture, enumeration gives exactly its 26,206 (and proteins' 2,021) architectures."""

from __future__ import annotations

import itertools
import pickle
import time
from collections import Counter

import numpy as np
import pytest
import torch

from archrank.errors import InvalidArchitecture
from archrank.spaces import get_space
from archrank.spaces.nbgraph import (
    GNN_OPS,
    LINK_SHAPES,
    PROTEINS_OPS,
    GraphArch,
    NBGraphSpace,
    canonical_form,
    decode_key,
    encode_key,
)
from archrank.tables.nbgraph import bench_file
from archrank.tables.safe_pickle import load_pickle_file


@pytest.fixture(scope="module")
def space() -> NBGraphSpace:
    s = get_space("nbgraph")
    assert isinstance(s, NBGraphSpace)
    return s


def _raw_archs(ops: tuple[str, ...]) -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
    """Every way to write an architecture: 24 link lists x ops^4, minus all-skip."""
    links = list(itertools.product(*(range(i + 1) for i in range(4))))
    return [(lk, o) for lk in links for o in itertools.product(ops, repeat=4)
            if not all(x == "skip" for x in o)]


def test_hash_equals_the_package_key_on_every_architecture() -> None:
    """All 157,440 raw architectures against nas_bench_graph.Arch(...).valid_hash()."""
    from nas_bench_graph.architecture import Arch

    raw = _raw_archs(GNN_OPS)
    assert len(raw) == 24 * 9**4 - 24
    ours = [encode_key(*canonical_form(lk, o)) for lk, o in raw]
    theirs = [Arch(list(lk), list(o)).valid_hash() for lk, o in raw]
    mismatches = [(r, a, b) for r, a, b in zip(raw, ours, theirs, strict=True) if a != b]
    assert not mismatches, mismatches[:5]
    assert len(set(ours)) == 26206


def test_space_hash_is_the_key_as_text(space: NBGraphSpace) -> None:
    from nas_bench_graph.architecture import Arch

    rng = np.random.default_rng(0)
    raw = _raw_archs(GNN_OPS)
    for i in rng.choice(len(raw), 300, replace=False):
        links, ops = raw[int(i)]
        arch = GraphArch(links, ops)
        assert space.hash(arch) == str(Arch(list(links), list(ops)).valid_hash())
        assert space.key(arch) == int(space.hash(arch))


def test_enumeration_is_exactly_the_benchmark(space: NBGraphSpace) -> None:
    archs = space.enumerate()
    assert len(archs) == space.size == 26206
    keys = [space.key(a) for a in archs]
    assert keys == sorted(keys) and len(set(keys)) == 26206
    table = load_pickle_file(bench_file("cora"), bz2_compressed=False)
    assert set(keys) == set(table)
    for a in archs[::101]:
        assert space.canonical(a) == a
        assert decode_key(space.key(a)) == (a.links, a.ops)
        assert space.from_key(space.key(a)) == a


def test_proteins_space_matches_its_table() -> None:
    proteins = NBGraphSpace(PROTEINS_OPS)
    archs = proteins.enumerate()
    assert len(archs) == 2021
    table = load_pickle_file(bench_file("proteins"), bz2_compressed=False)
    assert {proteins.key(a) for a in archs} == set(table)
    assert proteins.node_op_names == ("input", "gcn", "sage", "arma", "fc", "skip", "output")
    from nas_bench_graph.architecture import Arch

    for links, ops in _raw_archs(PROTEINS_OPS)[::37]:
        assert proteins.key(GraphArch(links, ops)) == Arch(list(links), list(ops)).valid_hash()


def test_equivalent_architectures(space: NBGraphSpace) -> None:
    h = space.hash
    p = space.parse
    # the same tree written in another layer order
    assert h(p("0,1,2,1|gcn,gin,fc,cheb")) == h(p("0,1,1,3|gcn,cheb,gin,fc"))
    # siblings commute
    assert h(p("0,0,0,0|gat,gcn,gin,fc")) == h(p("0,0,0,0|fc,gin,gcn,gat"))
    # skip is the identity: a skip chain in front, or a skip leaf after a leaf, is nothing new
    assert h(p("0,1,2,3|skip,gcn,gin,fc")) == h(p("0,1,2,3|gcn,gin,fc,skip"))
    # ... but a skip leaf next to a layer taps that layer's input into the output
    assert h(p("0,1,1,2|gcn,gin,skip,fc")) != h(p("0,1,2,3|gcn,gin,fc,skip"))
    # and different ops or shapes differ
    assert len({h(p("0,1,2,3|gcn,gin,fc,cheb")), h(p("0,1,2,3|gin,gcn,fc,cheb")),
                h(p("0,0,1,2|gcn,gin,fc,cheb"))}) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,1,2|gcn,gin,fc,cheb", "expected 4 links, got 3"),
        ("0,1,2,3|gcn,gin,fc", "expected 4 ops, got 3"),
        ("0,1,3,3|gcn,gin,fc,cheb", "layer 3 reads node 3, but may only read nodes 0..2"),
        ("0,x,2,3|gcn,gin,fc,cheb", "link 2 must be an integer"),
        ("0,1,2,3|gcn,gin,fc,transformer", "unknown op 'transformer'; valid ops: gat, gcn"),
        ("0,1,2,3|skip,skip,skip,skip", "every layer is skip"),
        ("0,1,2,3 gcn,gin,fc,cheb", "expected 'links|ops'"),
    ],
)
def test_invalid_text_gets_one_line_errors(space: NBGraphSpace, text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as err:
        space.parse(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_text_and_records(space: NBGraphSpace) -> None:
    arch = space.parse(" 0, 1, 2, 1 | gcn, gin, fc, cheb ")
    assert arch == GraphArch((0, 1, 2, 1), ("gcn", "gin", "fc", "cheb"))
    assert space.format(arch) == "0,1,2,1|gcn,gin,fc,cheb"
    record = space.to_record(arch)
    assert record == {"hash": "61237", "links": [0, 1, 2, 1], "ops": ["gcn", "gin", "fc", "cheb"]}
    assert space.from_record(record) == arch
    assert space.from_record({"links": "0,1,2,1", "ops": "gcn,gin,fc,cheb"}) == arch
    assert space.from_record({"links": "[0, 1, 2, 1]", "ops": "['gcn','gin','fc','cheb']"}) == arch
    with pytest.raises(InvalidArchitecture, match="missing field 'ops'"):
        space.from_record({"links": [0, 1, 2, 1]})
    with pytest.raises(InvalidArchitecture, match="link 2 must be an integer"):
        space.from_record({"links": [0, 1.5, 2, 1], "ops": ["gcn"] * 4})
    with pytest.raises(InvalidArchitecture, match="expected a GraphArch"):
        space.hash("0,1,2,1|gcn,gin,fc,cheb")  # type: ignore[arg-type]


def test_graphs(space: NBGraphSpace) -> None:
    arch = space.parse("0,1,2,1|gcn,gin,fc,cheb")
    g = space.to_graphs([arch])
    rep = space.canonical(arch)
    assert rep.links in LINK_SHAPES
    ops = g.ops[0].tolist()
    assert ops[0] == 0 and ops[-1] == len(space.node_op_names) - 1
    assert [space.node_op_names[i] for i in ops[1:5]] == list(rep.ops)
    adj = g.adj[0]
    for layer, parent in enumerate(rep.links, start=1):
        assert adj[parent, layer] == 1
    # the leaves (cheb and fc) feed the output; gcn and gin do not
    leaves = {rep.ops[v - 1] for v in range(1, 5) if adj[v, 5] == 1}
    assert leaves == {"cheb", "fc"}
    assert int(adj.sum()) == 4 + 2 and g.mask.all() and g.edge_ops is None
    # equivalent architectures give identical tensors
    other = space.to_graphs([space.parse("0,1,1,3|gcn,cheb,gin,fc")])
    assert torch.equal(g.ops, other.ops) and torch.equal(g.adj, other.adj)
    # the whole space at once
    start = time.perf_counter()
    every = space.to_graphs(space.enumerate())
    assert time.perf_counter() - start < 3.0
    assert tuple(every.adj.shape) == (26206, 6, 6)
    assert torch.triu(every.adj, diagonal=1).equal(every.adj)
    assert (every.adj[:, :, 5].sum(1) >= 1).all()  # something always reaches the output
    assert (every.adj[:, 1:5].sum(2) >= 1).all()  # every layer feeds something


def test_neighbours_mutation_and_sampling(space: NBGraphSpace) -> None:
    arch = space.parse("0,1,2,1|gcn,gin,fc,cheb")
    near = space.neighbours(arch)
    assert len(near) == 4 * 8 + (0 + 1 + 2 + 3)
    for other in near:
        edits = sum(a != b for a, b in zip(arch.links, other.links, strict=True))
        edits += sum(a != b for a, b in zip(arch.ops, other.ops, strict=True))
        assert edits == 1
    only = space.parse("0,1,2,3|gcn,skip,skip,skip")
    assert all(not all(o == "skip" for o in n.ops) for n in space.neighbours(only))
    rng = np.random.default_rng(0)
    assert all(space.hash(space.mutate(arch, rng)) != space.hash(arch) for _ in range(30))
    samples = space.sample(26206 * 4, np.random.default_rng(1))
    counts = Counter(space.key(a) for a in samples)
    assert len(counts) > 26206 * 0.95  # uniform over the distinct architectures
    assert max(counts.values()) < 20
    assert space.sample(4, np.random.default_rng(5)) == space.sample(4, np.random.default_rng(5))


def test_space_pickles(space: NBGraphSpace) -> None:
    space.enumerate()
    blob = pickle.dumps(space)
    assert len(blob) < 10_000
    clone = pickle.loads(blob)
    arch = clone.parse("0,1,2,1|gcn,gin,fc,cheb")
    assert clone.hash(arch) == "61237"


def test_a_predictor_of_a_restricted_vocabulary_loads_back_on_it(tmp_path) -> None:
    """proteins' space (5 ops) shares the name 'nbgraph' with the nine-op space: a saved
    predictor reloaded on the nine-op one read its op ids as other ops and ranked wrongly
    without a word. The saved vocabulary now rebuilds its space, and a space given that
    differs is refused."""
    from archrank.errors import ArchrankError
    from archrank.predictors.base import Predictor, make_predictor

    proteins = NBGraphSpace(PROTEINS_OPS)
    archs = proteins.enumerate()[:300]
    y = np.array([sum(op == "gcn" for op in a.ops) + 0.1 * (a.ops[0] == "fc") for a in archs])
    model = make_predictor("rf", proteins, seed=0).fit(archs[:200], y[:200])
    path = tmp_path / "rf.pt"
    model.save(path)
    loaded = Predictor.load(path)
    assert loaded.space.node_op_names == proteins.node_op_names
    np.testing.assert_array_equal(loaded.predict(archs[200:]), model.predict(archs[200:]))
    assert Predictor.load(path, space="nbgraph").space.node_op_names == proteins.node_op_names
    with pytest.raises(ArchrankError, match="fitted on a nbgraph space with ops input, gcn, "
                       "sage, arma, fc, skip, output, not input, gat, gcn"):
        Predictor.load(path, space=get_space("nbgraph"))
    with pytest.raises(ArchrankError, match="fitted on space 'nbgraph', not 'nb201'"):
        Predictor.load(path, space="nb201")


def test_ssa_keeps_one_unlabelled_pool_per_vocabulary() -> None:
    """SSA's pool cache was keyed by the space's name: after a fit on proteins' space, a fit
    on the nine-op space took proteins' 2,021 cells (their op ids meaning other ops)."""
    from archrank.predictors.base import make_predictor

    proteins = make_predictor("ssa", NBGraphSpace(PROTEINS_OPS), pool_size=30_000)
    full = make_predictor("ssa", get_space("nbgraph"), pool_size=30_000)
    assert len(proteins.default_pool()) == 2021
    assert len(full.default_pool()) == 26206


def test_saving_where_nothing_can_be_written_is_one_line(tmp_path) -> None:
    from archrank.errors import ArchrankError
    from archrank.predictors.base import make_predictor

    space = get_space("nb201")
    cells = space.sample(30, np.random.default_rng(0))
    model = make_predictor("rf", space, seed=0).fit(cells, np.arange(30.0))
    with pytest.raises(ArchrankError, match=r"is a directory; give a file name"):
        model.save(tmp_path)
    with pytest.raises(ArchrankError, match=r"/proc/x\.pt: cannot write \(No such file"):
        model.save("/proc/x.pt")  # (a folder that exists, a file torch cannot create)
