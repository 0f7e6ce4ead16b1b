"""The DARTS cell space (Liu et al., ICLR 2019): a normal and a reduction cell.

Each cell has two input nodes (0: the output of the cell before the previous one, 1: the
previous cell's), four intermediate nodes 2..5 that each sum two ops applied to earlier nodes,
and an output that concatenates the intermediate nodes listed in its ``concat``. A genotype is
written the way the DARTS, PC-DARTS and NASLib code prints it::

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=range(2, 6))

(the eight ``(op, input)`` pairs of a cell, two per intermediate node in node order) or as a
JSON object with the same four fields. Parsing accepts a node that reads one input twice (as
the first node of ENAS's cell does; ENAS's own genotype, with five nodes, is outside the
space and refused); sampling, mutation and neighbours stay inside the space searched by DARTS
and NAS-Bench-301, whose nodes read two distinct inputs, with every intermediate node
concatenated. That space has (49 * 1 * 3 * 6 * 10 * 49**3) ~ 1.0e9 cells per cell type, about
1e18 genotypes: it is sampled, never enumerated.

Canonical hash: two genotypes compute the same thing when one is the other with a node's two
inputs swapped or the intermediate nodes renumbered (in any order that keeps inputs before the
nodes that read them). Each cell is encoded under every such renumbering (at most 24) with each
node's pair sorted, and the smallest code is kept; intermediate nodes whose result reaches no
output are dead and coded alike. Everything runs on integer arrays, batched over genotypes.

Graph tensors (op on node, both cells in one graph, ``num_inputs = 2``): nodes 0 and 1 are the
two cell inputs, shared by both cells; then the normal cell's eight op nodes (one per
``(op, input)`` pair, in pair order), a ``normal_concat`` node, the reduction cell's eight op
nodes, a ``reduce_concat`` node and the ``output``: 21 nodes. An op node reading intermediate
node k receives edges from both op nodes of k (their sum is k); a concat node receives the op
nodes of the intermediate nodes it concatenates, and the output receives both concat nodes.
The two concat labels tell the cells apart, so swapping normal and reduction cells changes
the graph.

Supernet graph (``supernet_graph``, for the relaxed input of the proxy-validation landscape):
one op node per supernet edge (14 per cell, ops ``MIXED_OPS``) between explicit intermediate
nodes, 39 nodes; an integer cell has its 8 chosen edges per cell on and the others ``none``,
so a relaxation (op weights per edge, like the supernet's ``forward_mixed``) has a place in it.
"""

from __future__ import annotations

import ast
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from archrank.errors import InvalidArchitecture
from archrank.spaces.base import GraphBatch, SearchSpace, SupernetGraph

DARTS_OPS: tuple[str, ...] = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
    "dil_conv_3x3", "dil_conv_5x5",
)
MIXED_OPS: tuple[str, ...] = ("none", *DARTS_OPS)  # a supernet edge's candidates (relaxation)
NUM_INPUTS = 2          # cell inputs: c_{k-2}, c_{k-1}
NUM_INTERMEDIATE = 4    # intermediate nodes 2..5
NUM_PAIRS = 2 * NUM_INTERMEDIATE
ALL_CONCAT: tuple[int, ...] = tuple(range(NUM_INPUTS, NUM_INPUTS + NUM_INTERMEDIATE))
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_NODES = NUM_INPUTS + NUM_INTERMEDIATE      # 6 nodes a pair may read from
_PAIR_CODES = len(DARTS_OPS) * _NODES        # codes of one (op, input) pair
_GRAPH_NODES = NUM_INPUTS + 2 * (NUM_PAIRS + 1) + 1  # 21
_ROW = "_row"    # attribute caching a genotype's packed integer row (see DartsSpace.arrays)
_ROW_WIDTH = 2 * NUM_PAIRS + _NODES  # per cell: 8 ops, 8 inputs, 6 concat flags


@dataclass(frozen=True)
class Genotype:
    """A DARTS genotype: per cell, eight ``(op, input)`` pairs (two per intermediate node, in
    node order) and the intermediate nodes the output concatenates."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in _FIELDS:  # lists would make the genotype unhashable
            value = getattr(self, name)
            if name.endswith("concat"):
                object.__setattr__(self, name, tuple(int(v) for v in value))
            else:
                object.__setattr__(self, name, tuple((str(o), int(i)) for o, i in value))

    def cell(self, kind: str) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
        """``(pairs, concat)`` of the ``"normal"`` or ``"reduce"`` cell."""
        return getattr(self, kind), getattr(self, f"{kind}_concat")


# -- text forms ------------------------------------------------------------------------------
def _literal(node: ast.AST, where: str) -> Any:
    """A list/tuple/int/str literal, or ``range(a, b)``, from a parsed genotype text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | str):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e, where) for e in node.elts]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "range" and not node.keywords
            and all(isinstance(a, ast.Constant) and type(a.value) is int for a in node.args)
            and 1 <= len(node.args) <= 2):
        bounds = [a.value for a in node.args]  # type: ignore[union-attr]
        if any(abs(b) > 64 for b in bounds):  # node numbers: a huge range is not a cell
            raise InvalidArchitecture(f"{where}: range{tuple(bounds)} is not a list of nodes")
        return list(range(*bounds))
    raise InvalidArchitecture(f"{where}: expected a list of (op, input) pairs or node numbers, "
                              f"got {ast.unparse(node)[:60]!r}")


def _parse_genotype_call(text: str) -> dict[str, Any]:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise InvalidArchitecture(
            f"cannot read genotype {text[:80]!r}: expected Genotype(normal=[...], "
            "normal_concat=[...], reduce=[...], reduce_concat=[...]) or a JSON object"
        ) from None
    call = tree.body
    name = None
    if isinstance(call, ast.Call):
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "Genotype":
        raise InvalidArchitecture(f"cannot read genotype {text[:80]!r}: expected Genotype(...)")
    if len(call.args) > len(_FIELDS):  # type: ignore[union-attr]
        raise InvalidArchitecture(f"Genotype takes {len(_FIELDS)} fields, got more")
    fields = {f: _literal(a, f) for f, a in zip(_FIELDS, call.args, strict=False)}  # type: ignore[union-attr]
    for kw in call.keywords:  # type: ignore[union-attr]
        if kw.arg not in _FIELDS:
            raise InvalidArchitecture(f"unknown Genotype field {kw.arg!r}; expected "
                                      f"{', '.join(_FIELDS)}")
        if kw.arg in fields:  # as Python: one field given twice is an error, not the last
            raise InvalidArchitecture(f"Genotype field {kw.arg!r} given twice")
        fields[kw.arg] = _literal(kw.value, kw.arg)
    return fields


def _check_cell(kind: str, pairs: Any, concat: Any) -> tuple[list[tuple[str, int]], list[int]]:
    """Pairs and concat of one cell as plain lists, or a one-line ``InvalidArchitecture``."""
    if not isinstance(pairs, list | tuple) or len(pairs) != NUM_PAIRS:
        got = len(pairs) if isinstance(pairs, list | tuple) else type(pairs).__name__
        raise InvalidArchitecture(
            f"{kind}: a cell has {NUM_INTERMEDIATE} intermediate nodes with exactly two inputs "
            f"each ({NUM_PAIRS} (op, input) pairs), got {got}"
        )
    out = []
    for k, pair in enumerate(pairs):
        node = NUM_INPUTS + k // 2
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise InvalidArchitecture(f"{kind}[{k}]: expected an (op, input) pair, got {pair!r}")
        op, src = pair
        if op not in DARTS_OPS:
            raise InvalidArchitecture(
                f"{kind}[{k}]: unknown op {op!r}; expected one of {', '.join(DARTS_OPS)}")
        if type(src) is not int or not 0 <= src < node:
            raise InvalidArchitecture(
                f"{kind}[{k}]: node {node} reads input {src!r}, but its inputs must be "
                f"earlier nodes 0..{node - 1}")
        out.append((op, src))
    if not isinstance(concat, list | tuple) or not concat:
        raise InvalidArchitecture(f"{kind}_concat: expected a non-empty list of nodes")
    if (any(type(c) is not int or c not in ALL_CONCAT for c in concat)
            or len(set(concat)) != len(concat)):
        raise InvalidArchitecture(
            f"{kind}_concat: expected distinct intermediate nodes among 2..5, got "
            f"{repr(concat)[:60]}")
    return out, sorted(concat)


def make_genotype(fields: Mapping[str, Any]) -> Genotype:
    """A checked ``Genotype`` from its four fields (concat defaults to every node)."""
    missing = [f for f in ("normal", "reduce") if f not in fields]
    if missing:
        raise InvalidArchitecture(f"genotype is missing field {missing[0]!r}")
    unknown = [str(f) for f in fields if f not in _FIELDS]
    if unknown:  # a misspelt concat would silently become the full default
        raise InvalidArchitecture(f"unknown genotype field {unknown[0][:40]!r}; expected "
                                  f"{', '.join(_FIELDS)}")
    normal, nc = _check_cell("normal", fields["normal"], fields.get("normal_concat", ALL_CONCAT))
    reduce, rc = _check_cell("reduce", fields["reduce"], fields.get("reduce_concat", ALL_CONCAT))
    return Genotype(tuple(normal), tuple(nc), tuple(reduce), tuple(rc))  # type: ignore[arg-type]


def _json_fields(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidArchitecture(f"cannot read genotype JSON {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise InvalidArchitecture("a genotype JSON must be an object with fields "
                                  f"{', '.join(_FIELDS)}")
    return value


# -- canonical codes, batched ----------------------------------------------------------------
def _unpack(packed: np.ndarray) -> dict[str, np.ndarray]:
    """``DartsSpace.arrays``'s dict from packed rows [B, 2, 22] (int8)."""
    return {"ops": packed[:, :, :NUM_PAIRS].astype(np.int64),
            "srcs": packed[:, :, NUM_PAIRS:2 * NUM_PAIRS].astype(np.int64),
            "concat": packed[:, :, 2 * NUM_PAIRS:].astype(bool)}


def _renumberings() -> np.ndarray:
    """Every order of the intermediate nodes, as ``perm[old] = new`` over all 6 nodes."""
    out = []
    for order in itertools.permutations(range(NUM_INTERMEDIATE)):
        out.append(list(range(NUM_INPUTS)) + [NUM_INPUTS + o for o in order])
    return np.array(out, dtype=np.int64)  # [24, 6]


_PERMS = _renumberings()
_PERMS_INVERSE = np.argsort(_PERMS[:, NUM_INPUTS:], axis=1)  # [24, 4]: old node at each new


PATH_EDGES: tuple[tuple[int, int], ...] = tuple(
    (k, i) for k in range(NUM_INTERMEDIATE) for i in range(NUM_INPUTS + k))
"""(intermediate node k, candidate input i) of each edge of a supernet cell: 14."""
_EDGE_OFFSET = np.cumsum([0] + [NUM_INPUTS + k for k in range(NUM_INTERMEDIATE - 1)])


def path_codes(ops: np.ndarray, srcs: np.ndarray) -> np.ndarray:
    """Path codes ``[B, 28]`` of (op, input) arrays ``[B, 2, 8]`` (see ``DartsSpace.codes``)."""
    ops, srcs = np.asarray(ops, dtype=np.int64), np.asarray(srcs, dtype=np.int64)
    same = srcs[:, :, 0::2] == srcs[:, :, 1::2]
    if same.any():
        b, _, k = (int(v[0]) for v in np.nonzero(same))
        raise InvalidArchitecture(f"genotype {b}: node {NUM_INPUTS + k} reads one input twice, "
                                  "which a supernet path cannot express")
    b = len(ops)
    edge = _EDGE_OFFSET[np.arange(NUM_PAIRS) // 2][None, None, :] + srcs  # [B, 2, 8]
    out = np.zeros((b, 2, len(PATH_EDGES)), dtype=np.int64)
    np.put_along_axis(out, edge, ops + 1, axis=2)
    return out.reshape(b, -1)


def cell_codes(ops: np.ndarray, srcs: np.ndarray, concat: np.ndarray) -> np.ndarray:
    """Canonical integer code of each cell: equal exactly for equivalent cells.

    ops, srcs: int [B, 8] (op index, input node of each pair); concat: bool [B, 6] (which
    nodes the output concatenates). Returns int64 [B]: the least code over the renumberings
    of the intermediate nodes that keep every live node after the nodes it reads.
    """
    live = _live(srcs, concat)
    best = np.full(ops.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
    # a few cells: every renumbering in one step; many: one renumbering at a time (faster)
    step = len(_PERMS) if ops.shape[0] <= _ALL_PERMS_BELOW else 1
    for first in range(0, len(_PERMS), step):
        code, ok = _perm_codes(ops, srcs, concat, live, slice(first, first + step))
        best = np.minimum(best, np.where(ok, code, best[None, :]).min(axis=0))
    return best


_ALL_PERMS_BELOW = 384  # measured: the loop wins above about 400 cells


def _live(srcs: np.ndarray, concat: np.ndarray) -> np.ndarray:
    """bool [B, 6]: a node is live if the output or a live node reads it."""
    b = srcs.shape[0]
    live = concat.copy()
    for node in range(_NODES - 1, NUM_INPUTS - 1, -1):  # reverse node order
        k = 2 * (node - NUM_INPUTS)
        for s in (k, k + 1):
            live[np.arange(b), srcs[:, s]] |= live[:, node]
    return live


def _perm_codes(ops: np.ndarray, srcs: np.ndarray, concat: np.ndarray, live: np.ndarray,
                which: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """The code of each cell with its nodes renumbered by each of ``_PERMS[which]``
    (``perm[old] = new``), and whether that numbering keeps every live node after the nodes
    it reads: int64 and bool [P, B] (P renumberings in one vectorised step: hashing one
    genotype is one pass, not 24)."""
    perms = _PERMS[which]
    p, b = perms.shape[0], ops.shape[0]
    base = _PAIR_CODES * _PAIR_CODES + 1
    new_src = perms[:, srcs]                               # [P, B, 8]
    pair = ops[None] * _NODES + new_src
    lo = np.minimum(pair[..., 0::2], pair[..., 1::2])
    hi = np.maximum(pair[..., 0::2], pair[..., 1::2])
    inner_live = live[None, :, NUM_INPUTS:]                # [1, B, 4]
    node_code = np.where(inner_live, lo * _PAIR_CODES + hi + 1, 0)  # [P, B, 4] by old node;
    node_new = perms[:, NUM_INPUTS:] - NUM_INPUTS          # dead nodes code alike; [P, 4]:
    reads = new_src.reshape(p, b, NUM_INTERMEDIATE, 2)     # new position of old node
    ok = ((reads < perms[:, None, NUM_INPUTS:, None]).all(3) | ~inner_live).all(2)
    ordered = np.take_along_axis(node_code, _PERMS_INVERSE[which, None, :], axis=2)  # by new
    code = np.zeros((p, b), dtype=np.int64)
    for pos in range(NUM_INTERMEDIATE):
        code = code * base + ordered[..., pos]
    # which new nodes are concatenated (node_new is a permutation: the bits are distinct)
    out_mask = (concat[None, :, NUM_INPUTS:].astype(np.int64) << node_new[:, None, :]).sum(2)
    return code * 16 + out_mask, ok


def _canonical_perm(ops: np.ndarray, srcs: np.ndarray, concat: np.ndarray) -> int:
    """Index in ``_PERMS`` of the renumbering of one cell (ops, srcs [8], concat [6]) whose
    code ``cell_codes`` takes, among those where every node, live or not, reads only nodes
    placed before it (a valid genotype). Dead nodes all code alike, so ties among such
    orders are broken by the code that reads every node as live: where the dead nodes go
    then depends on what they hold, not on how the input numbered them (the network builds
    them too). Of equal keys, the first renumbering."""
    ops, srcs, concat = ops[None], srcs[None], concat[None]
    live = _live(srcs, concat)
    every_code, valid = _perm_codes(ops, srcs, concat, np.ones_like(live))  # all ordered?
    live_code = _perm_codes(ops, srcs, concat, live)[0]
    candidates = np.flatnonzero(valid[:, 0])
    if len(candidates) == 0:
        return 0
    # lexsort: by live code, then every code; stable, so ties keep the first renumbering
    order = np.lexsort((every_code[candidates, 0], live_code[candidates, 0]))
    return int(candidates[order[0]])


class DartsSpace(SearchSpace[Genotype]):
    """The DARTS space of normal + reduction cell pairs (see the module docstring)."""

    name = "darts"
    description = "DARTS cells (normal + reduction cell; 2 inputs, 4 nodes, 7 ops; sampled)"
    approx_size = "~1e18"
    op_on = "node"
    record_fields = ("arch",)  # like every archrank table: the genotype text (see from_record)
    num_inputs = NUM_INPUTS
    node_op_names = ("input", *DARTS_OPS, "normal_concat", "reduce_concat", "output")
    max_nodes = _GRAPH_NODES
    cell_op_names = DARTS_OPS
    cell_type = Genotype

    def __init__(self) -> None:
        self._op_index = {o: i for i, o in enumerate(DARTS_OPS)}

    # -- text and records ---------------------------------------------------------------------
    def parse(self, text: str) -> Genotype:
        if not isinstance(text, str):
            raise InvalidArchitecture(f"expected a genotype text, got {type(text).__name__}")
        stripped = text.strip()
        fields = _json_fields(stripped) if stripped.startswith("{") else \
            _parse_genotype_call(stripped)
        return make_genotype(fields)

    def format(self, arch: Genotype) -> str:
        self.check_cell(arch)

        def pairs(cell: Sequence[tuple[str, int]]) -> str:
            return "[" + ", ".join(f"({op!r}, {src})" for op, src in cell) + "]"

        return (f"Genotype(normal={pairs(arch.normal)}, normal_concat={list(arch.normal_concat)}, "
                f"reduce={pairs(arch.reduce)}, reduce_concat={list(arch.reduce_concat)})")

    def from_record(self, record: Mapping[str, Any]) -> Genotype:
        """From ``arch`` (what archrank's tables and runs write) or ``genotype`` (the text or
        the JSON object), or from separate ``normal``/``reduce``(``_concat``) fields. Table
        files (``--bench``, ``bench check``) need the ``arch`` column; the other forms are
        for records built in Python."""
        key = "arch" if "arch" in record else "genotype"
        if key in record:
            value = record[key]
            if isinstance(value, Mapping):
                return make_genotype(value)
            try:
                return self.parse(value)
            except InvalidArchitecture as err:
                raise InvalidArchitecture(f"field {key!r}: {err}") from None
        if "normal" in record:
            fields = {f: record[f] for f in _FIELDS if f in record}
            for f, v in list(fields.items()):
                if isinstance(v, str):
                    try:
                        fields[f] = json.loads(v)
                    except ValueError:
                        try:
                            tree = ast.parse(v, mode="eval").body
                        except (SyntaxError, ValueError, RecursionError, MemoryError):
                            raise InvalidArchitecture(f"field {f!r}: not a list of (op, "
                                                      f"input) pairs: {v[:80]!r}") from None
                        fields[f] = _literal(tree, f)
            return make_genotype(fields)
        raise InvalidArchitecture("record has no 'arch' field (nor 'genotype', 'normal'/'reduce')")

    def to_record(self, arch: Genotype) -> dict[str, Any]:
        return {"hash": self.hash(arch), "arch": self.format(arch)}

    def to_json(self, arch: Genotype) -> dict[str, Any]:
        """The JSON form: the four fields, pairs as ``[op, input]`` lists."""
        return {f: [list(p) if isinstance(p, tuple) else p for p in getattr(arch, f)]
                for f in _FIELDS}

    # -- identity -----------------------------------------------------------------------------
    def arrays(self, archs: Sequence[Genotype]) -> dict[str, np.ndarray]:
        """Integer arrays of a batch: ops/srcs [B, 2, 8] and concat bool [B, 2, 6]
        (axis 1: normal, reduce).

        Each genotype keeps its row (``_ROW``) once computed, and the genotypes ``sample``
        and ``from_codes`` make carry theirs from birth, so hashing a pool and building its
        graph tensors read the strings once, not twice."""
        try:
            rows = [g.__dict__.get(_ROW) for g in archs]
        except AttributeError:  # text or another space's cell (no __dict__)
            self.check_cells(archs)
            raise
        missing = [n for n, r in enumerate(rows) if r is None]
        if missing:
            index = self._op_index
            for n in missing:
                g = archs[n]
                self.check_cell(g)
                row = np.zeros((2, _ROW_WIDTH), dtype=np.int8)
                for c, (pairs, cat) in enumerate((g.cell("normal"), g.cell("reduce"))):
                    row[c, :NUM_PAIRS] = [index[o] for o, _ in pairs]
                    row[c, NUM_PAIRS:2 * NUM_PAIRS] = [s for _, s in pairs]
                    row[c, 2 * NUM_PAIRS + np.array(cat, dtype=np.int64)] = 1
                object.__setattr__(g, _ROW, row)
                rows[n] = row
        packed = (np.stack(rows) if rows else np.zeros((0, 2, _ROW_WIDTH), dtype=np.int8))
        return _unpack(packed)

    def hash_many(self, archs: Sequence[Genotype]) -> list[str]:
        """Canonical hashes of a batch (vectorised)."""
        a = self.arrays(archs)
        normal = cell_codes(a["ops"][:, 0], a["srcs"][:, 0], a["concat"][:, 0])
        reduce = cell_codes(a["ops"][:, 1], a["srcs"][:, 1], a["concat"][:, 1])
        return [f"{int(x):016x}{int(y):016x}" for x, y in zip(normal, reduce, strict=True)]

    def hash(self, arch: Genotype) -> str:
        return self.hash_many([arch])[0]

    def canonical(self, arch: Genotype) -> Genotype:
        """The representative of the genotypes that hash alike: in each cell the intermediate
        nodes renumbered by the order ``cell_codes`` minimises and each node's two pairs
        sorted, so input-pair swaps and node renumberings give one genotype (and a value
        computed once per hash, such as a zero-cost proxy, the same network whichever
        member came first). A node no output depends on keeps its pairs; it goes where every
        node still reads earlier ones, placed by what it holds (``_canonical_perm``)."""
        a = self.arrays([arch])
        names, cells = DARTS_OPS, []
        for c in range(2):
            ops, srcs, concat = a["ops"][0, c], a["srcs"][0, c], a["concat"][0, c]
            perm = _PERMS[_canonical_perm(ops, srcs, concat)]
            nodes: list[list[tuple[int, int]]] = [[] for _ in range(NUM_INTERMEDIATE)]
            for k in range(NUM_PAIRS):
                nodes[perm[NUM_INPUTS + k // 2] - NUM_INPUTS].append(
                    (int(ops[k]), int(perm[srcs[k]])))
            pairs = [(names[o], i) for node in nodes
                     for o, i in sorted(node, key=lambda p: p[0] * _NODES + p[1])]
            cells.append((tuple(pairs), tuple(sorted(int(perm[n])
                                                     for n in np.flatnonzero(concat)))))
        return make_genotype({"normal": cells[0][0], "normal_concat": cells[0][1],
                              "reduce": cells[1][0], "reduce_concat": cells[1][1]})

    def validate(self, arch: Genotype) -> Genotype:
        self.check_cell(arch)
        return make_genotype({f: getattr(arch, f) for f in _FIELDS})

    # -- sampling and neighbourhoods ----------------------------------------------------------
    def _sample_cells(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ops = rng.integers(len(DARTS_OPS), size=(n, NUM_PAIRS))
        srcs = np.empty((n, NUM_PAIRS), dtype=np.int64)
        for k in range(NUM_INTERMEDIATE):  # two distinct earlier nodes, uniformly
            node = NUM_INPUTS + k
            first = rng.integers(node, size=n)
            second = rng.integers(node - 1, size=n)
            second = second + (second >= first)
            srcs[:, 2 * k], srcs[:, 2 * k + 1] = first, second
        return ops, srcs

    def _sample(self, n: int, rng: np.random.Generator) -> list[Genotype]:
        """Uniform over the DARTS search space (distinct inputs per node, full concat)."""
        cells = [self._sample_cells(n, rng) for _ in ("normal", "reduce")]
        return self._genotypes(cells)

    def _genotypes(self, cells: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[Genotype]:
        """Full-concat genotypes of (ops, srcs) ``[n, 8]`` arrays of the normal, reduce cell."""
        n = len(cells[0][0])
        names = np.array(DARTS_OPS, dtype=object)

        def pairs(ops: np.ndarray, srcs: np.ndarray) -> tuple[tuple[str, int], ...]:
            return tuple(zip(names[ops].tolist(), srcs.tolist(), strict=True))

        (no, ns), (ro, rs) = cells
        packed = np.zeros((n, 2, _ROW_WIDTH), dtype=np.int8)
        for c, (ops, srcs) in enumerate(cells):
            packed[:, c, :NUM_PAIRS] = ops
            packed[:, c, NUM_PAIRS:2 * NUM_PAIRS] = srcs
        packed[:, :, 2 * NUM_PAIRS + NUM_INPUTS:] = 1  # every intermediate node concatenated
        out = []
        for i in range(n):
            g = Genotype(pairs(no[i], ns[i]), ALL_CONCAT, pairs(ro[i], rs[i]), ALL_CONCAT)
            object.__setattr__(g, _ROW, packed[i])
            out.append(g)
        return out

    # -- path codes (the weight-sharing supernet's) ---------------------------------------------
    def codes(self, archs: Sequence[Genotype]) -> np.ndarray:
        """Path codes ``[B, 28]``: per cell (normal, reduce), per intermediate node k, per
        candidate input i < k (``PATH_EDGES`` order), 0 when the node does not read i, else
        1 + the op index. A node reading one input twice, or a cell not concatenating every
        intermediate node, has no path code (``InvalidArchitecture``)."""
        a = self.arrays(archs)
        if not a["concat"][:, :, NUM_INPUTS:].all():
            bad = int(np.flatnonzero(~a["concat"][:, :, NUM_INPUTS:].all(axis=(1, 2)))[0])
            raise InvalidArchitecture(f"genotype {bad}: the supernet needs every intermediate "
                                      "node concatenated")
        return path_codes(a["ops"], a["srcs"])

    def random_codes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Path codes of ``n`` genotypes drawn uniformly (as ``sample``), without objects."""
        cells = [self._sample_cells(n, rng) for _ in ("normal", "reduce")]
        return path_codes(np.stack([c[0] for c in cells], 1), np.stack([c[1] for c in cells], 1))

    def fair_codes(self, rng: np.random.Generator) -> np.ndarray:
        """A round of 7 paths: each of the 16 (op, input) slots (8 per cell) runs each op
        once, in a random order per slot; the inputs are drawn uniformly at every path."""
        k = len(DARTS_OPS)
        ops = np.stack([rng.permutation(k) for _ in range(2 * NUM_PAIRS)], 1)  # [K, 16]
        cells = [self._sample_cells(k, rng)[1] for _ in ("normal", "reduce")]
        return path_codes(ops.reshape(k, 2, NUM_PAIRS), np.stack(cells, 1))

    def relaxed_shape(self) -> tuple[int, int]:
        """28 supernet edges (``PATH_EDGES`` of the normal, then the reduction cell) by the
        8 ops of ``MIXED_OPS`` (``none`` first, so a column is a path code)."""
        return 2 * len(PATH_EDGES), len(MIXED_OPS)

    def discretize(self, weights: np.ndarray) -> np.ndarray:
        """DARTS's rule: per intermediate node, the two incoming edges whose strongest op
        other than ``none`` is strongest, each with that op."""
        w = np.asarray(weights, dtype=np.float64).reshape(self.relaxed_shape())
        best_op = w[:, 1:].argmax(1) + 1                      # code of each edge's op
        strength = w[:, 1:].max(1)
        codes = np.zeros(len(w), dtype=np.int64)
        nodes = np.array([k for k, _ in PATH_EDGES])
        for cell in range(2):
            base = cell * len(PATH_EDGES)
            for k in range(NUM_INTERMEDIATE):
                edges = base + np.flatnonzero(nodes == k)
                top = edges[np.argsort(-strength[edges], kind="stable")[:2]]
                codes[top] = best_op[top]
        return codes

    def supernet_graph(self) -> SupernetGraph:
        """The supernet's cells as one graph of 39 nodes: the two cell inputs (shared by both
        cells, as in ``to_graphs``), the normal cell's intermediate nodes 2..5, the reduction
        cell's, the output (which reads every intermediate node: the supernet concatenates
        them all), then an op node per supernet edge (the 28 rows of ``relaxed_shape``, ops
        ``MIXED_OPS``) wired input -> op node -> intermediate node. An integer cell has its 8
        chosen edges per cell on and the 20 others ``none`` (cut); the node tokens tell the
        two cells apart, and the two inputs (c_{k-2}, c_{k-1}: different tensors in the
        network): with one token for both, the graph is symmetric in them and the alpha
        gradients of a node's two input edges stay equal for ever."""
        vocab = ("input_k-2", "input_k-1", "normal_node", "reduce_node", "output")
        tokens = (0, 1, *[2] * NUM_INTERMEDIATE, *[3] * NUM_INTERMEDIATE, 4)
        output = len(tokens) - 1

        def node(cell: int, m: int) -> int:  # node m (0..5) of a cell in the fixed nodes
            return m if m < NUM_INPUTS else NUM_INPUTS + cell * NUM_INTERMEDIATE + m - NUM_INPUTS

        slots = tuple((cell * len(PATH_EDGES) + e, node(cell, i), node(cell, NUM_INPUTS + k))
                      for cell in range(2) for e, (k, i) in enumerate(PATH_EDGES))
        links = tuple((m, output) for m in range(NUM_INPUTS, output))
        return SupernetGraph(vocab, tokens, slots, MIXED_OPS, ("none",), links)

    def live_ops(self, codes: Sequence[int]) -> list[str]:
        """Every chosen op: the supernet's cells concatenate every intermediate node, so
        each op lies on a path from the cell inputs to the output."""
        return [DARTS_OPS[int(c) - 1] for c in codes if int(c) > 0]

    def normal_live_ops(self, codes: Sequence[int]) -> list[str]:
        """The normal cell's ops (the first half of the codes): a convolution in the
        reduction cell does not save a normal cell of skips from being the DARTS collapse."""
        return self.live_ops(list(codes)[:len(PATH_EDGES)])

    def graphs_from_codes(self, codes: np.ndarray) -> GraphBatch:
        """Graph tensors of path codes (``to_graphs(from_codes(codes))``)."""
        return self.to_graphs(self.from_codes(codes))

    def from_codes(self, codes: np.ndarray) -> list[Genotype]:
        """The genotypes of path codes (each node's inputs in increasing order)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, 2 * len(PATH_EDGES))
        per_cell = codes.reshape(-1, 2, len(PATH_EDGES))
        chosen = per_cell > 0
        nodes = np.array([k for k, _ in PATH_EDGES])
        counts = np.stack([chosen[:, :, nodes == k].sum(-1) for k in range(NUM_INTERMEDIATE)], -1)
        if (counts != 2).any() or (per_cell > len(DARTS_OPS)).any() or (per_cell < 0).any():
            bad = int(np.flatnonzero((counts != 2).any(axis=(1, 2)) |
                                     (per_cell > len(DARTS_OPS)).any(axis=(1, 2)) |
                                     (per_cell < 0).any(axis=(1, 2)))[0])
            raise InvalidArchitecture(f"path code {bad}: every node needs exactly two inputs "
                                      f"with codes 1..{len(DARTS_OPS)}")
        b = len(codes)
        # chosen edges in PATH_EDGES order are node-major and input-increasing: 8 per cell
        edge = np.nonzero(chosen.reshape(b * 2, -1))[1].reshape(b, 2, NUM_PAIRS)
        srcs = np.array([i for _, i in PATH_EDGES])[edge]
        ops = np.take_along_axis(per_cell, edge, axis=2) - 1
        return self._genotypes([(ops[:, 0], srcs[:, 0]), (ops[:, 1], srcs[:, 1])])

    def neighbours(self, arch: Genotype) -> list[Genotype]:
        """Every genotype one op or one input away (inputs stay distinct within a node)."""
        self.check_cell(arch)
        out = []
        for kind in ("normal", "reduce"):
            pairs, _ = arch.cell(kind)
            for k, (op, src) in enumerate(pairs):
                node = NUM_INPUTS + k // 2
                partner = pairs[k ^ 1][1]
                changes = [(o, src) for o in DARTS_OPS if o != op]
                changes += [(op, s) for s in range(node) if s not in (src, partner)]
                for change in changes:
                    new = list(pairs)
                    new[k] = change
                    out.append(Genotype(**{**{f: getattr(arch, f) for f in _FIELDS},
                                           kind: tuple(new)}))
        return out

    def mutate(self, arch: Genotype, rng: np.random.Generator) -> Genotype:
        """One random op or input change (cheaper than listing every neighbour)."""
        options = self.neighbours(arch)
        mine = self.hash(arch)
        for _ in range(8):
            pick = options[int(rng.integers(len(options)))]
            if self.hash(pick) != mine:
                return pick
        return pick

    @property
    def size(self) -> int | None:
        return None

    # -- tensors ------------------------------------------------------------------------------
    def to_graphs(self, archs: Sequence[Genotype]) -> GraphBatch:
        a = self.arrays(archs)
        b, n = len(archs), _GRAPH_NODES
        ops = np.zeros((b, n), dtype=np.int64)   # node op index in node_op_names
        adj = np.zeros((b, n, n), dtype=np.float32)
        rows = np.arange(b)[:, None]
        for c in range(2):
            first = NUM_INPUTS + c * (NUM_PAIRS + 1)     # first op node of this cell
            concat_node = first + NUM_PAIRS
            ops[:, first:concat_node] = a["ops"][:, c] + 1
            ops[:, concat_node] = 1 + len(DARTS_OPS) + c
            srcs = a["srcs"][:, c]                         # [B, 8]
            targets = first + np.arange(NUM_PAIRS)[None, :].repeat(b, 0)
            from_input = srcs < NUM_INPUTS
            # pairs reading a cell input: one edge from that input node
            adj[rows.repeat(NUM_PAIRS, 1)[from_input], srcs[from_input],
                targets[from_input]] = 1.0
            # pairs reading intermediate node m: edges from both op nodes of m
            m = srcs - NUM_INPUTS
            for half in (0, 1):
                src_node = first + 2 * m + half
                sel = ~from_input
                adj[rows.repeat(NUM_PAIRS, 1)[sel], src_node[sel], targets[sel]] = 1.0
            # concat node reads both op nodes of each concatenated intermediate node
            cat = a["concat"][:, c, NUM_INPUTS:]           # [B, 4]
            for k in range(NUM_INTERMEDIATE):
                for half in (0, 1):
                    adj[:, first + 2 * k + half, concat_node] = cat[:, k]
            adj[:, concat_node, n - 1] = 1.0
        ops[:, n - 1] = len(self.node_op_names) - 1
        return GraphBatch(torch.from_numpy(ops), torch.from_numpy(adj),
                          torch.ones(b, n, dtype=torch.bool))


__all__ = ["ALL_CONCAT", "DARTS_OPS", "MIXED_OPS", "DartsSpace", "Genotype", "cell_codes",
           "make_genotype"]
