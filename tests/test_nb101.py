"""NAS-Bench-101 space: official hashes, pruning, validation, enumeration, cache, tensors."""

from __future__ import annotations

import contextlib
import csv
import itertools
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from archrank.cache import ENV_VAR, atomic_path, cache_dir
from archrank.errors import InvalidArchitecture
from archrank.spaces import get_space
from archrank.spaces.nb101 import NB101_OPS, NB101Space
from archrank.spaces.node_cell import Cell, NodeCellSpace
from conftest import assert_refuses_foreign_cells

C3, C1, MP = NB101_OPS


@pytest.fixture(autouse=True)
def _cache_env(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(shared_cache))


@pytest.fixture(scope="module")
def space() -> NB101Space:
    return NB101Space()


@pytest.fixture(scope="module")
def csv_rows() -> list[dict[str, str]]:
    from conftest import shared_file

    with open(shared_file("nb101_10k.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def test_registered_and_configured(space: NB101Space) -> None:
    assert isinstance(get_space("nb101"), NB101Space)
    assert space.name == "nb101" and space.op_on == "node"
    assert space.node_op_names == ("input", C3, C1, MP, "output")
    assert space.record_fields == ("adjacency", "ops")
    assert space.size == 423_624 and space.enumerable
    assert space.max_nodes == 7


def test_every_official_hash_vector(space: NB101Space, csv_rows: list[dict[str, str]]) -> None:
    assert len(csv_rows) == 10_000
    wrong = [r["hash"] for r in csv_rows if space.hash(space.from_record(r)) != r["hash"]]
    assert wrong == []


def test_table_rows_are_already_canonical(
    space: NB101Space, csv_rows: list[dict[str, str]]
) -> None:
    for row in csv_rows[:500]:
        cell = space.from_record(row)
        n = int(row["num_vertices"])
        assert cell.num_vertices == n
        assert "".join(str(b) for r in cell.matrix for b in r) == row["adjacency"]
        assert ",".join(cell.ops) == row["ops"]
        assert space.validate(cell) == cell


def test_parse_and_format_round_trip(space: NB101Space) -> None:
    text = f"0110000100010000|input,{C3},{MP},output"
    cell = space.parse(text)
    assert cell.matrix == ((0, 1, 1, 0), (0, 0, 0, 1), (0, 0, 0, 1), (0, 0, 0, 0))
    assert (cell.num_vertices, cell.num_edges) == (4, 4)
    assert cell.ops == ("input", C3, MP, "output")
    assert space.format(cell) == text
    as_json = (
        '{"adjacency": [[0,1,1,0],[0,0,0,1],[0,0,0,1],[0,0,0,0]], '
        f'"ops": ["input", "{C3}", "{MP}", "output"]}}'
    )
    assert space.parse(as_json) == cell
    assert space.parse(f"  {text}\n") == cell
    record = space.to_record(cell)
    assert record == {
        "hash": space.hash(cell),
        "adjacency": [list(r) for r in cell.matrix],
        "ops": list(cell.ops),
    }
    assert space.from_record(record) == cell


@pytest.mark.parametrize(
    "record",
    [
        {"adjacency": "0110000100010000", "ops": f"input, {C3}, {MP}, output"},
        {
            "adjacency": "[[0,1,1,0],[0,0,0,1],[0,0,0,1],[0,0,0,0]]",
            "ops": f"input,{C3},{MP},output",
        },
        {
            "adjacency": [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
            "ops": f'["input", "{C3}", "{MP}", "output"]',
        },
        {"adjacency": np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]),
         "ops": ("input", C3, MP, "output")},
    ],
)
def test_record_forms(space: NB101Space, record: dict) -> None:
    cell = space.from_record(record)
    assert space.format(cell) == f"0110000100010000|input,{C3},{MP},output"


def test_pruning_removes_vertices_off_the_input_output_path(space: NB101Space) -> None:
    # Vertex 2 has no outgoing edge, vertex 3 no incoming one: both pruned.
    m = np.zeros((5, 5), dtype=int)
    m[0, 1] = m[1, 4] = m[0, 2] = m[3, 4] = 1
    cell = space.make(m, ["input", C3, MP, C1, "output"])
    assert cell == space.parse(f"010001000|input,{C3},output")
    # 8 raw vertices and 10 raw edges are fine when pruning leaves 7 and 9 (official order).
    m = np.zeros((8, 8), dtype=int)
    for i in range(5):
        m[i, i + 1] = 1
    m[5, 7] = m[0, 7] = m[0, 3] = 1
    m[0, 6] = m[2, 6] = 1  # vertex 6 is a dead end
    assert m.sum() == 10
    cell = space.make(m, ["input", C3, C3, C1, MP, C3, C1, "output"])
    assert cell.num_vertices == 7 and cell.num_edges == 8
    assert cell.ops == ("input", C3, C3, C1, MP, C3, "output")


def test_isomorphic_cells_hash_alike(space: NB101Space) -> None:
    a = space.parse(f"0110000100010000|input,{C3},{MP},output")
    b = space.parse(f"0110000100010000|input,{MP},{C3},output")  # vertices 1 and 2 swapped
    c = space.parse(f"0110000100010000|input,{C3},{C3},output")
    assert a != b and space.hash(a) == space.hash(b) != space.hash(c)


# A 7-vertex chain plus 0->2, 0->3, 0->4, 0->6: 10 edges, nothing to prune.
TEN_EDGES = "".join(
    "1" if j == i + 1 or (i == 0 and j in (2, 3, 4, 6)) else "0"
    for i in range(7)
    for j in range(7)
)

INVALID = [
    ({"adjacency": [[0, 1, 0], [0, 0]], "ops": "input,output"}, "not square"),
    ({"adjacency": "011000100", "ops": "input,output,output"}, "'output' at vertex 1"),
    ({"adjacency": "01100010000", "ops": "input,output"}, "11 bits, not a square"),
    ({"adjacency": "0110000100010000", "ops": f"input,{C3},output"}, "3 ops for a 4-vertex"),
    ({"adjacency": "0120001000010000", "ops": f"input,{C3},{MP},output"}, "0 or 1"),
    ({"adjacency": [[0, 1], [0, 0.5]], "ops": "input,output"}, "0 or 1"),
    ({"adjacency": "0100001000010100", "ops": f"input,{C3},{MP},output"}, "cyclic"),
    ({"adjacency": "0100011000010000", "ops": f"input,{C3},{MP},output"}, "cyclic (self-loop"),
    ({"adjacency": "0010000101000000", "ops": f"input,{C3},{MP},output"},
     "not a DAG in topological order"),
    ({"adjacency": "0110000100010000", "ops": f"input,conv5x5,{MP},output"},
     "unknown op 'conv5x5' at vertex 1; valid interior ops: "
     "conv3x3-bn-relu, conv1x1-bn-relu, maxpool3x3"),
    ({"adjacency": "0110000100010000", "ops": f"{C3},{C3},{MP},output"},
     "first op must be 'input'"),
    ({"adjacency": "0110000100010000", "ops": f"input,{C3},{MP},{C1}"},
     "last op must be 'output'"),
    ({"adjacency": "".join("1" if j == i + 1 else "0" for i in range(8) for j in range(8)),
      "ops": ",".join(["input", *[C3] * 6, "output"])}, "8 vertices after pruning"),
    ({"adjacency": TEN_EDGES, "ops": ",".join(["input", *[C3] * 5, "output"])},
     "10 edges after pruning"),
    ({"adjacency": "0100000000010000", "ops": f"input,{C3},{MP},output"}, "not connected"),
    ({"adjacency": "[[0,1],[0,0]", "ops": "input,output"}, "adjacency is not valid JSON"),
    ({"adjacency": "0100", "ops": '["input", "output"'}, "ops is not valid JSON"),
    ({"adjacency": 7, "ops": "input,output"}, "adjacency must be"),
    ({"adjacency": "0100", "ops": 3}, "ops must be"),
    ({"adjacency": "0100"}, "missing field 'ops'"),
]


@pytest.mark.parametrize(("record", "message"), INVALID)
def test_invalid_records_give_one_clear_line(
    space: NB101Space, record: dict, message: str
) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        space.from_record(record)
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith("invalid nb101 cell")


def test_ten_edges_really_are_ten(space: NB101Space) -> None:
    assert TEN_EDGES.count("1") == 10 and len(TEN_EDGES) == 49
    # dropping one of them gives a valid cell
    nine = TEN_EDGES[:6] + "0" + TEN_EDGES[7:]
    assert space.parse(f"{nine}|input,{C3},{C3},{C3},{C3},{C3},output").num_edges == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conv3x3", "expected 'BITS|op,op,...'"),
        ("01|00|input", "expected 'BITS|op,op,...'"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected 'BITS|op,op,...'"),
        ('{"adjacency": "0100"}', "missing field 'ops'"),
        (f"0100001000010100|input,{C3},{MP},output", "cyclic"),
        (f"{TEN_EDGES}|input,{C3},{C3},{C3},{C3},{C3},output", "10 edges"),
    ],
)
def test_invalid_text(space: NB101Space, text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture, match=None) as info:
        space.parse(text)
    assert message in str(info.value) and "\n" not in str(info.value)


# -- enumeration, cache, sampling -----------------------------------------------------------------


@pytest.fixture(scope="module")
def enumeration(space: NB101Space, shared_cache: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(shared_cache))
        start = time.perf_counter()
        arrays = space.enumeration()
        print(f"nb101 enumeration: {time.perf_counter() - start:.1f} s")
    return arrays


def test_enumeration_is_exactly_the_nb101_space(
    space: NB101Space, enumeration, csv_rows: list[dict[str, str]]
) -> None:
    hashes = enumeration.hashes
    assert len(enumeration) == 423_624
    assert len(np.unique(hashes)) == 423_624
    assert np.all(hashes[:-1] < hashes[1:])  # sorted, hence distinct
    assert np.bincount(enumeration.num_vertices).tolist() == [0, 0, 1, 6, 84, 2441, 62010, 359082]
    table = np.array([r["hash"] for r in csv_rows], dtype="S32")
    assert np.all(space.index_of([r["hash"] for r in csv_rows]) >= 0)
    assert np.isin(table, hashes).all()
    assert space.index_of(["0" * 32]).tolist() == [-1]
    # Stored cells are valid, canonical and carry their own hash.
    rows = np.random.default_rng(0).choice(len(enumeration), size=1500, replace=False)
    cells = space.cells_at(rows)
    for row, cell in zip(rows.tolist(), cells, strict=True):
        assert space.validate(cell) == cell
        assert space.hash(cell) == hashes[row].decode()
    assert space.cache_path.is_file() and space.cache_path.parent == cache_dir()


def test_second_enumeration_reads_the_cache(
    space: NB101Space, enumeration, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(NB101Space, "_compute_enumeration", boom)
    fresh = NB101Space()
    start = time.perf_counter()
    again = fresh.enumeration()
    seconds = time.perf_counter() - start
    print(f"nb101 enumeration from cache: {seconds:.2f} s")  # speed: a benchmark's, not here
    assert np.array_equal(again.hashes, enumeration.hashes)
    assert np.array_equal(again.matrices, enumeration.matrices)
    assert not [p for p in space.cache_path.parent.iterdir() if p.name.endswith(".tmp")]


def test_enumerate_returns_cells_in_hash_order(space: NB101Space, enumeration) -> None:
    cells = space.enumerate()
    assert len(cells) == 423_624
    assert space.hash(cells[0]) == enumeration.hashes[0].decode()
    assert space.hash(cells[-1]) == enumeration.hashes[-1].decode()
    assert len({c.matrix for c in cells}) == 2494  # distinct unlabelled graphs
    records = space.enumerate_records()
    for cell in cells[:50]:
        assert next(records) == space.to_record(cell)


def test_sample_is_valid_seeded_and_uniform(space: NB101Space, enumeration) -> None:
    a = space.sample(4000, np.random.default_rng(1))
    b = space.sample(4000, np.random.default_rng(1))
    assert a == b
    assert all(space.validate(c) == c for c in a[:300])
    assert (space.index_of([space.hash(c) for c in a[:300]]) >= 0).all()
    # Uniform over unique cells: 84.8% have 7 vertices (spec sampling gives far fewer 6s).
    frac7 = np.mean([c.num_vertices == 7 for c in a])
    assert abs(frac7 - 359082 / 423624) < 0.025
    assert space.sample(0, np.random.default_rng(0)) == []


def test_neighbours_and_mutate(space: NB101Space, enumeration) -> None:
    rng = np.random.default_rng(2)
    for cell in space.sample(20, rng):
        own = space.hash(cell)
        nbrs = space.neighbours(cell)
        hashes = [space.hash(n) for n in nbrs]
        assert nbrs and own not in hashes and len(set(hashes)) == len(hashes)
        assert all(space.validate(n) == n for n in nbrs)
        # every op change of an interior vertex is a neighbour
        assert sum(n.matrix == cell.matrix for n in nbrs) >= 1
        for _ in range(5):
            child = space.mutate(cell, rng)
            assert space.hash(child) in hashes
    smallest = space.parse("0100|input,output")
    grown = space.neighbours(smallest)
    assert sorted(space.format(c) for c in grown) == sorted(
        f"011001000|input,{op},output" for op in NB101_OPS
    )


def test_to_graphs_matches_the_cells(space: NB101Space) -> None:
    cells = [
        space.parse(f"0110000100010000|input,{C3},{MP},output"),
        space.parse("0100|input,output"),
    ]
    g = space.to_graphs(cells)
    assert g.ops.dtype == torch.int64 and g.adj.dtype == torch.float32
    assert g.mask.dtype == torch.bool and g.ops.shape == (2, 7) and g.adj.shape == (2, 7, 7)
    assert g.ops[0].tolist() == [0, 1, 3, 4, 0, 0, 0]
    assert g.ops[1].tolist() == [0, 4, 0, 0, 0, 0, 0]
    assert g.mask.sum(1).tolist() == [4, 2]
    assert g.adj[0, :4, :4].tolist() == [list(map(float, r)) for r in cells[0].matrix]
    assert g.adj[0, 4:].sum() == 0 and g.adj[1].sum() == 1 and g.adj[1, 0, 1] == 1
    assert len(space.to_graphs([])) == 0


def test_whole_space_to_graphs_equals_the_enumerated_graphs(space: NB101Space, enumeration) -> None:
    cells = space.enumerate()
    start = time.perf_counter()
    graphs = space.to_graphs(cells)
    seconds = time.perf_counter() - start
    print(f"to_graphs on {len(cells)} cells: {seconds:.2f} s")
    direct = space.enumerate_graphs()
    assert torch.equal(graphs.ops, direct.ops) and torch.equal(graphs.adj, direct.adj)
    assert torch.equal(graphs.mask, direct.mask)
    # Cells parsed one by one (no shared tuples) convert to the same tensors.
    copies = [space.make(c.matrix, c.ops) for c in cells[:2000]]
    assert torch.equal(space.to_graphs(copies).adj, graphs.adj[:2000])


def test_pickles(space: NB101Space, enumeration) -> None:
    cell = space.sample(1, np.random.default_rng(0))[0]
    clone = pickle.loads(pickle.dumps(space))
    assert clone.hash(cell) == space.hash(cell)
    assert pickle.loads(pickle.dumps(cell)) == cell


# -- a user-defined space from config --------------------------------------------------------------


def _brute_force_hashes(space: NodeCellSpace) -> set[str]:
    """Hash of every valid raw spec (every matrix and op assignment), deduplicated."""
    out = set()
    for n in range(2, space.max_vertices + 1):
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        for bits in range(1 << len(pairs)):
            m = np.zeros((n, n), dtype=int)
            for b, (i, j) in enumerate(pairs):
                m[i, j] = (bits >> b) & 1
            for inner in itertools.product(space.ops, repeat=n - 2):
                with contextlib.suppress(InvalidArchitecture):
                    out.add(space.hash(space.make(m, ["input", *inner, "output"])))
    return out


def test_small_custom_space_enumerates_exactly(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    space = NodeCellSpace(ops=("conv", "pool"), max_vertices=5, max_edges=6, name="tiny")
    assert space.node_op_names == ("input", "conv", "pool", "output")
    assert space.size is None
    with caplog.at_level("INFO", logger="archrank"):
        cells = space.enumerate()  # said (NB101 takes minutes the first time), then cached
    assert f"enumerating every tiny cell once (cached for later use in {tmp_path}" in caplog.text
    hashes = [space.hash(c) for c in cells]
    assert len(set(hashes)) == len(cells) == space.size == space.count_upper_bound()
    assert set(hashes) == _brute_force_hashes(space)
    assert all(space.validate(c) == c for c in cells)
    # A corrupt cache file is rebuilt, not trusted.
    space.cache_path.write_bytes(b"not an npz")
    fresh = NodeCellSpace(ops=("conv", "pool"), max_vertices=5, max_edges=6, name="tiny")
    assert fresh.hashes() == space.hashes()
    assert fresh.cache_path.stat().st_size > 100
    with pytest.raises(InvalidArchitecture, match="invalid tiny cell: unknown op 'conv3x3'"):
        space.parse("011001000|input,conv3x3,output")
    g = space.to_graphs(cells)
    assert g.ops.shape == (len(cells), 5) and int(g.ops.max()) == 3


def test_custom_space_without_enumeration_samples_specs() -> None:
    space = NodeCellSpace(ops=("a", "b", "c"), max_vertices=9, max_edges=12, name="big")
    assert not space.enumeration_feasible() and space.size is None and not space.enumerable
    cells = space.sample(50, np.random.default_rng(0))
    assert all(space.validate(c) == c and c.num_edges <= 12 for c in cells)
    with pytest.raises(Exception, match="too large to enumerate"):
        space.enumerate()


def test_atomic_path_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    monkeypatch.delenv(ENV_VAR)
    assert cache_dir(create=False).name == "archrank"


def test_cell_value_semantics() -> None:
    a = Cell(((0, 1), (0, 0)), ("input", "output"))
    assert a == Cell(((0, 1), (0, 0)), ("input", "output")) and len({a, a}) == 1
    assert a.num_vertices == 2 and a.num_edges == 1
    assert a.to_numpy().tolist() == [[0, 1], [0, 0]]
    with pytest.raises(AttributeError):
        a.ops = ()  # type: ignore[misc]


def test_text_or_another_spaces_cell_is_a_one_line_error(space: NB101Space) -> None:
    """hash / format / neighbours / to_graphs of text or an nb201 cell raised AttributeError
    ('str' object has no attribute 'ops'), which reached predictors' predict too; nb201
    already named the expected cell type."""
    cell = space.sample(1, np.random.default_rng(0))[0]
    text = space.format(cell)
    assert_refuses_foreign_cells(space, [
        space.hash, space.format, space.neighbours, space.validate, space.to_record,
        lambda a: space.to_graphs([cell, a]), lambda a: space.hash_many([a]),
        lambda a: space.mutate(a, np.random.default_rng(0))], cell)
    from archrank.predictors.base import make_predictor

    model = make_predictor("mlp", space, epochs=1).fit([cell, *space.neighbours(cell)[:3]],
                                                       [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(InvalidArchitecture, match=r"expected a Cell of space nb101, got str"):
        model.predict([text])


def test_sample_takes_an_int_seed_and_checks_its_count(space: NB101Space) -> None:
    """sample(2, 0) was an AttributeError ('int' object has no attribute 'integers'); the
    count check moved to SearchSpace.sample, shared by every space."""
    from archrank.errors import ArchrankError

    assert space.sample(2, 0) == space.sample(2, np.random.default_rng(0))
    with pytest.raises(ArchrankError, match=r"cannot sample -1 cells"):
        space.sample(-1, 0)
