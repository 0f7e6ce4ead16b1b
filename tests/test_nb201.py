"""The NAS-Bench-201 cell space and the generic op-on-edge space it is built on."""

from __future__ import annotations

import csv
import os
import pickle
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.errors import ArchrankError, InvalidArchitecture
from archrank.spaces import get_space
from archrank.spaces.edge_cell import EdgeCell, EdgeCellSpace
from archrank.spaces.nb201 import NB201_OPS, NB201Space

BEST = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)


@pytest.fixture(autouse=True, scope="module")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the hash table this module computes out of the user's cache folder."""
    old = os.environ.get("ARCHRANK_CACHE_DIR")
    os.environ["ARCHRANK_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("ARCHRANK_CACHE_DIR", None)
    else:
        os.environ["ARCHRANK_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space()


@pytest.fixture(scope="module")
def cells(space: NB201Space) -> list[EdgeCell]:
    return space.enumerate()


@pytest.fixture(scope="module")
def hashes(space: NB201Space, cells: list[EdgeCell]) -> list[str]:
    return [space.hash(c) for c in cells]


def test_registered_and_described() -> None:
    space = get_space("nb201")
    assert isinstance(space, NB201Space)
    assert space.op_on == "edge" and space.max_nodes == 4 and space.size == 15625
    assert space.edge_op_names == NB201_OPS
    assert space.node_op_names == ("input", "intermediate", "output")
    assert space.record_fields == ("arch",)
    assert space.edges == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def test_enumeration_and_text_round_trip(space: NB201Space, cells: list[EdgeCell]) -> None:
    assert len(cells) == 15625 == len(set(cells))
    texts = [space.format(c) for c in cells]
    assert len(set(texts)) == 15625
    assert [space.parse(t) for t in texts] == cells
    cell = space.parse(BEST)
    assert cell.ops == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect",
                        "nor_conv_3x3", "nor_conv_3x3")
    assert space.format(cell) == BEST


def test_every_row_of_the_real_table_parses(space: NB201Space, cells: list[EdgeCell],
                                             nb201_csv: Path) -> None:
    with open(nb201_csv, newline="") as fh:
        texts = [row["arch"] for row in csv.DictReader(fh)]
    assert len(texts) == 15625
    parsed = [space.parse(t) for t in texts]
    assert [space.format(c) for c in parsed] == texts
    assert set(parsed) == set(cells)


def test_unique_hash_count(hashes: list[str]) -> None:
    """8,765 classes: cells differing only on dead edges, or by swapping nodes 1 and 2 when
    no edge joins them, are equivalent; skip_connect stays an op of its own. (NB201's 6,466
    "unique" cells come from its to_unique_str, which also contracts skip_connect.)"""
    assert len(set(hashes)) == 8765
    assert all(len(h) == 32 for h in hashes)


def test_hash_classes_match_a_brute_force_canonical_form(
    space: NB201Space, cells: list[EdgeCell], hashes: list[str]
) -> None:
    def canonical(cell: EdgeCell) -> object:
        codes = [NB201_OPS.index(o) for o in cell.ops]
        live = set(space.live_edges(codes))
        if not live:
            return "cut off"
        kept = tuple(c if k in live else 0 for k, c in enumerate(codes))
        forms = [kept]
        if kept[2] == 0:  # no edge 1 -> 2: nodes 1 and 2 are interchangeable
            forms.append((kept[1], kept[0], 0, kept[3], kept[5], kept[4]))
        return min(forms)

    by_hash: dict[str, set] = {}
    by_form: dict[object, set] = {}
    for cell, h in zip(cells, hashes, strict=True):
        form = canonical(cell)
        by_hash.setdefault(h, set()).add(form)
        by_form.setdefault(form, set()).add(h)
    assert all(len(v) == 1 for v in by_hash.values())
    assert all(len(v) == 1 for v in by_form.values())


def test_equivalences(space: NB201Space, cells: list[EdgeCell], hashes: list[str]) -> None:
    h = space.hash
    p = space.parse
    # nodes 1 and 2 swapped (no edge between them)
    a = p("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    b = p("|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    assert h(a) == h(b)
    # the op on a dead edge (node 2 receives nothing) does not matter
    c = p("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|")
    d = p("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|skip_connect~2|")
    assert h(c) == h(d)
    # but skip_connect is not a convolution, and positions matter
    e = p("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")
    f = p("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    g = p("|skip_connect~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    assert len({h(e), h(f), h(g)}) == 3
    # every cell whose output is cut off from the input shares one hash
    cut = [c for c in cells if not space.live_edges([NB201_OPS.index(o) for o in c.ops])]
    assert len(cut) > 100
    none_hash = h(EdgeCell(("none",) * 6))
    assert {hashes[cells.index(c)] for c in cut[:50]} == {none_hash}
    assert sum(x == none_hash for x in hashes) == len(cut)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",
         "expected 3 nodes separated by '+', got 2"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|+|none~0|",
         "expected 3 nodes"),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|",
         "node 2, input 2: source must be 1, got 2"),
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|",
         "unknown op 'conv_5x5' in node 1; valid ops: none, skip_connect, nor_conv_1x1, "
         "nor_conv_3x3, avg_pool_3x3"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must list 2 inputs"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "malformed edge 'none0' in node 1"),
        ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 must be written as"),
        ("", "expected 3 nodes"),
    ],
)
def test_invalid_strings_get_one_line_errors(space: NB201Space, text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as err:
        space.parse(text)
    assert message in str(err.value)
    assert str(err.value).startswith("invalid nb201 cell")
    assert "\n" not in str(err.value)


def test_invalid_values(space: NB201Space) -> None:
    with pytest.raises(InvalidArchitecture, match="expected a cell string"):
        space.parse(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArchitecture, match="5 edge ops, expected 6"):
        space.hash(EdgeCell(("none",) * 5))
    with pytest.raises(InvalidArchitecture, match="unknown op 'conv'"):
        space.to_graphs([EdgeCell(("conv",) * 6)])


def test_records(space: NB201Space) -> None:
    cell = space.parse(BEST)
    record = space.to_record(cell)
    assert record == {"hash": space.hash(cell), "arch": BEST}
    assert space.from_record(record) == cell
    with pytest.raises(InvalidArchitecture, match="missing field 'arch'"):
        space.from_record({"cifar10_test": 90.0})
    with pytest.raises(InvalidArchitecture, match="field 'arch' must be"):
        space.from_record({"arch": 3})


def test_graphs(space: NB201Space, cells: list[EdgeCell]) -> None:
    cell = space.parse(
        "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    )
    g = space.to_graphs([cell])
    assert g.ops.tolist() == [[0, 1, 1, 2]]
    assert g.mask.all() and g.ops.dtype == torch.int64 and g.adj.dtype == torch.float32
    assert g.edge_ops is not None and g.edge_ops.dtype == torch.int64
    expected_ops = np.zeros((4, 4), dtype=np.int64)
    expected_ops[0, 1], expected_ops[1, 2], expected_ops[0, 3], expected_ops[2, 3] = 3, 1, 4, 2
    assert g.edge_ops[0].numpy().tolist() == expected_ops.tolist()
    expected_adj = (expected_ops > 0).astype(np.float32)  # none (0) blocks
    assert g.adj[0].numpy().tolist() == expected_adj.tolist()
    # the whole space in well under a second, no Python loop per cell in the conversion
    start = time.perf_counter()
    every = space.to_graphs(space.enumerate())
    assert time.perf_counter() - start < 2.0
    assert tuple(every.adj.shape) == (15625, 4, 4) and len(every) == 15625
    assert torch.triu(every.adj, diagonal=1).equal(every.adj)
    assert int(every.adj.sum()) == 15625 * 6 * 4 // 5  # 4 of 5 ops pass information


def test_neighbours_and_mutation(space: NB201Space) -> None:
    cell = space.parse(BEST)
    near = space.neighbours(cell)
    assert len(near) == 24 == len(set(near))
    for other in near:
        assert sum(a != b for a, b in zip(cell.ops, other.ops, strict=True)) == 1
    rng = np.random.default_rng(0)
    mutants = [space.mutate(cell, rng) for _ in range(50)]
    assert all(space.hash(m) != space.hash(cell) for m in mutants)
    assert all(m in near for m in mutants)
    again = np.random.default_rng(0)
    assert [space.mutate(cell, again) for _ in range(50)] == mutants


def test_sampling_is_uniform(space: NB201Space) -> None:
    samples = space.sample(20000, np.random.default_rng(1))
    assert len(samples) == 20000 and all(isinstance(s, EdgeCell) for s in samples)
    counts = Counter(op for s in samples for op in s.ops)
    assert set(counts) == set(NB201_OPS)
    for count in counts.values():  # 24,000 expected each; 5 sigma is about 700
        assert abs(count - 24000) < 1000
    assert space.sample(5, np.random.default_rng(3)) == space.sample(5, np.random.default_rng(3))


def test_hash_table_is_cached_on_disk(space: NB201Space, hashes: list[str]) -> None:
    table = space.hash_table()
    assert table == hashes
    cache = Path(os.environ["ARCHRANK_CACHE_DIR"])
    files = list(cache.glob("edge-cell-hashes-nb201-*.npy"))
    assert len(files) == 1
    fresh = NB201Space()
    start = time.perf_counter()
    assert [fresh.hash(c) for c in fresh.enumerate()[::50]] == hashes[::50]
    assert time.perf_counter() - start < 1.0  # read back, not recomputed
    assert fresh._hash_table is not None
    files[0].write_bytes(b"garbage")  # a damaged cache is ignored and recomputed
    other = NB201Space()
    assert other.hash(other.parse(BEST)) == space.hash(space.parse(BEST))
    files[0].write_bytes(b"")  # so is an empty one (a full disk, a kill while written)
    empty = NB201Space()
    assert empty.hash_table() == hashes


def test_space_pickles_without_its_caches(space: NB201Space) -> None:
    space.hash(space.parse(BEST))
    clone = pickle.loads(pickle.dumps(space))
    assert clone.hash(clone.parse(BEST)) == space.hash(space.parse(BEST))
    assert len(pickle.dumps(space)) < 10_000


def test_a_new_edge_space_is_a_config() -> None:
    toy = EdgeCellSpace(["none", "skip", "conv"], 3, name="toy")
    assert toy.name == "toy" and toy.size == 27 and len(toy.enumerate()) == 27
    cell = toy.parse("|conv~0|+|none~0|skip~1|")
    assert toy.format(cell) == "|conv~0|+|none~0|skip~1|"
    assert toy.to_graphs([cell]).adj[0].tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    # none on the only path cuts the output off; so does none everywhere
    assert toy.hash(toy.parse("|none~0|+|none~0|skip~1|")) == toy.hash(
        toy.parse("|none~0|+|none~0|none~1|"))
    assert len({toy.hash(c) for c in toy.enumerate()}) < 27
    with pytest.raises(InvalidArchitecture, match="invalid toy cell"):
        toy.parse("|conv~0|")
    with pytest.raises(ValueError, match="cannot be written"):
        EdgeCellSpace(["none", "a|b"], 3)
    five = EdgeCellSpace(NB201_OPS, 5, name="nb201-5")
    assert five.num_edges == 10
    assert five.parse(five.format(EdgeCell(("skip_connect",) * 10))).ops == ("skip_connect",) * 10


def test_unknown_space_name() -> None:
    with pytest.raises(ArchrankError, match="unknown search space 'nb999'"):
        get_space("nb999")


@pytest.mark.parametrize("name", ["nb201", "darts", "nbgraph"])  # nb101: test_nb101
def test_sample_checks_its_count_and_takes_an_int_seed(name: str) -> None:
    """sample(-1, rng) was numpy's ValueError on nb201, darts and nbgraph (nb101 alone said
    "cannot sample -1 cells"), and sample(2, 0) an AttributeError on every space."""
    space = get_space(name)
    for n in (-1, 1.5, "2"):
        with pytest.raises(ArchrankError, match=rf"cannot sample {n!r} cells"):
            space.sample(n, np.random.default_rng(0))  # type: ignore[arg-type]
    seeded = space.sample(2, 0)
    assert space.hash_many(seeded) == space.hash_many(space.sample(2, np.random.default_rng(0)))
    assert space.sample(0, 0) == []
    with pytest.raises(ArchrankError, match=r"rng must be a numpy Generator or a seed"):
        space.sample(2, "0")  # type: ignore[arg-type]
