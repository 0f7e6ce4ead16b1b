"""Operation-on-edge cell spaces: a fixed DAG whose every edge ``i -> j`` (``i < j``) carries an op.

This is the NAS-Bench-201 family made generic: ``EdgeCellSpace(ops, num_nodes)`` is a whole
space (text form, hashing, sampling, enumeration, tensors), so a new op set or node count is a
config, not a fork. Node 0 is the input, the last node the output; a node sums what its
incoming edges send. Ops listed in ``blocking`` (``none``) cut the edge; every other op passes
information.

An architecture is an ``EdgeCell``: the op of every edge, edges ordered by target node, then
source (``0->1, 0->2, 1->2, 0->3, 1->3, 2->3`` for four nodes), which is also the order of the
text form ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

Canonical hash: equivalent cells must collide. The cell is rewritten as an op-on-node graph
(its line graph): an input vertex, one vertex per passing edge labelled with its op, and an
output vertex; edge-vertex ``u -> v`` when ``u`` ends where ``v`` starts, the input feeds the
edges leaving node 0 and the edges entering the last node feed the output. Vertices on no
input-to-output path are pruned (they cannot change the output) and the NAS-Bench-101 module
hash of what remains is the cell's hash. Isomorphic cells (e.g. two intermediate nodes swapped)
therefore hash alike, as do cells that differ only on dead edges; every cell whose output is
cut off from its input shares one hash.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from archrank.cache import atomic_path, cache_path
from archrank.errors import ArchrankError, InvalidArchitecture
from archrank.spaces.base import GraphBatch, SearchSpace, SupernetGraph
from archrank.spaces.graph_hash import INPUT_LABEL, OUTPUT_LABEL, module_hash

_HASH_VERSION = 1  # bump when the canonical hash changes (invalidates cached tables)
_BULK_HASHES = 2000  # after this many distinct cells hashed, finish and cache the whole table
_MAX_TABLE = 100_000  # spaces up to this size keep a whole-space hash table (< ~30 s to build)


@dataclass(frozen=True)
class EdgeCell:
    """Ops of every edge of an op-on-edge cell, in the space's edge order (see module doc)."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple):  # lists would make the cell unhashable
            object.__setattr__(self, "ops", tuple(self.ops))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects.

    Allocating tens of thousands of cells triggers full collections, which walk every object
    torch created (10x the cost of the cells themselves); the cells hold no cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _short(text: str, limit: int = 120) -> str:
    """``text`` as a one-line quoted snippet for error messages."""
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class EdgeCellSpace(SearchSpace[EdgeCell]):
    """All cells of a ``num_nodes``-node DAG with one op from ``ops`` on every edge.

    Example (a toy 3-node space): ``EdgeCellSpace(["none", "skip", "conv"], 3, name="toy")``.
    """

    name = "edge_cell"
    op_on = "edge"
    record_fields = ("arch",)
    cell_type = EdgeCell
    node_op_names = ("input", "intermediate", "output")

    def __init__(
        self,
        ops: Sequence[str],
        num_nodes: int,
        *,
        blocking: Sequence[str] = ("none",),
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        ops = tuple(str(o) for o in ops)
        if num_nodes < 2:
            raise ValueError("an edge cell needs at least an input and an output node")
        if len(set(ops)) != len(ops) or not ops:
            raise ValueError(f"ops must be distinct and non-empty, got {ops}")
        for op in ops:
            if not op or any(c in op for c in "|~+,") or op != op.strip():
                raise ValueError(f"op name {op!r} cannot be written in the cell string")
        if name is not None:
            self.name = name  # type: ignore[misc]  # a configured space names itself
        if description is not None:
            self.description = description  # type: ignore[misc]
        self.edge_op_names = ops
        self.max_nodes = int(num_nodes)
        self.blocking = tuple(o for o in ops if o in set(blocking))
        self._op_index = {o: i for i, o in enumerate(ops)}
        self._blocks = np.array([o in self.blocking for o in ops], dtype=bool)
        # edge k runs src[k] -> dst[k]; ordered by target, then source
        pairs = [(i, j) for j in range(1, num_nodes) for i in range(j)]
        self.edges: tuple[tuple[int, int], ...] = tuple(pairs)
        self._src = np.array([p[0] for p in pairs], dtype=np.int64)
        self._dst = np.array([p[1] for p in pairs], dtype=np.int64)
        self._hash_cache: dict[tuple[int, ...], str] = {}  # codes -> hash
        self._first_of_hash: dict[str, int] | None = None  # hash -> first enumerate() index
        self._live_cache: dict[tuple[tuple[int, int], ...], str] = {}  # live edges -> hash
        self._hash_table: list[str] | None = None  # every cell's hash, enumerate() order
        self._table_checked = False

    # -- pickling: drop the hash cache (process pools ship the space) ------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_hash_cache={}, _live_cache={}, _hash_table=None, _table_checked=False)
        return state

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    # -- text and records -------------------------------------------------------------------
    def _error(self, text: Any, problem: str) -> InvalidArchitecture:
        return InvalidArchitecture(f"invalid {self.name} cell {_short(str(text))}: {problem}")

    def parse(self, text: str) -> EdgeCell:
        """Read ``|op~0|+|op~0|op~1|+...`` (node ``j`` lists its ``j`` inputs, sources in order)."""
        if not isinstance(text, str):
            raise InvalidArchitecture(
                f"invalid {self.name} cell: expected a cell string, got {type(text).__name__}"
            )
        groups = text.strip().split("+")
        n_inner = self.max_nodes - 1
        if len(groups) != n_inner:
            raise self._error(
                text,
                f"expected {n_inner} nodes separated by '+', got {len(groups)}",
            )
        ops: list[str] = []
        for j, group in enumerate(groups, start=1):
            group = group.strip()
            if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
                raise self._error(text, f"node {j} must be written as |op~0|...|op~{j - 1}|")
            tokens = group[1:-1].split("|")
            if len(tokens) != j:
                raise self._error(
                    text,
                    f"node {j} must list {j} inputs (from nodes 0..{j - 1}), got {len(tokens)}",
                )
            for i, token in enumerate(tokens):
                op, sep, src = token.strip().partition("~")
                if not sep or not op or not re.fullmatch(r"-?[0-9]+", src.strip()):
                    raise self._error(
                        text, f"malformed edge {token!r} in node {j} (expected op~source)"
                    )
                if int(src) != i:
                    raise self._error(
                        text, f"node {j}, input {i + 1}: source must be {i}, got {int(src)}"
                    )
                if op not in self._op_index:
                    valid = ", ".join(self.edge_op_names)
                    raise self._error(text, f"unknown op {op!r} in node {j}; valid ops: {valid}")
                ops.append(op)
        return EdgeCell(tuple(ops))

    def format(self, arch: EdgeCell) -> str:
        ops = self._checked(arch).ops
        groups = []
        k = 0
        for j in range(1, self.max_nodes):
            groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
            k += j
        return "+".join(groups)

    def from_record(self, record: Mapping[str, Any]) -> EdgeCell:
        if "arch" not in record:
            raise InvalidArchitecture(f"missing field 'arch' (the {self.name} cell string)")
        value = record["arch"]
        if isinstance(value, EdgeCell):
            return self.validate(value)
        if not isinstance(value, str):
            raise InvalidArchitecture(
                f"field 'arch' must be a {self.name} cell string, got {type(value).__name__}"
            )
        return self.parse(value)

    def to_record(self, arch: EdgeCell) -> dict[str, Any]:
        return {"hash": self.hash(arch), "arch": self.format(arch)}

    def validate(self, arch: EdgeCell) -> EdgeCell:
        return self._checked(arch)

    def _checked(self, arch: Any) -> EdgeCell:
        self.check_cell(arch)
        if len(arch.ops) != self.num_edges:
            raise InvalidArchitecture(
                f"invalid {self.name} cell: {len(arch.ops)} edge ops, expected {self.num_edges}"
            )
        unknown = [o for o in arch.ops if o not in self._op_index]
        if unknown:
            raise InvalidArchitecture(
                f"invalid {self.name} cell: unknown op {unknown[0]!r}; "
                f"valid ops: {', '.join(self.edge_op_names)}"
            )
        return arch

    def codes(self, archs: Sequence[EdgeCell]) -> np.ndarray:
        """Op indices ``[B, num_edges]`` (int64) of ``archs``."""
        index = self._op_index
        out = np.empty((len(archs), self.num_edges), dtype=np.int64)
        if len(archs) == 0:
            return out
        try:
            with gc_paused():
                out[:] = [[index[o] for o in a.ops] for a in archs]
        except (KeyError, AttributeError, ValueError, TypeError):
            for a in archs:
                self._checked(a)  # raises the one-line reason
            raise
        return out

    def from_codes(self, codes: np.ndarray) -> list[EdgeCell]:
        """Cells from an int array of op indices ``[B, num_edges]``."""
        names = np.array(self.edge_op_names, dtype=object)
        rows = names[np.asarray(codes, dtype=np.int64).reshape(-1, self.num_edges)]
        with gc_paused():
            return list(map(EdgeCell, map(tuple, rows.tolist())))

    # -- identity ---------------------------------------------------------------------------
    def hash(self, arch: EdgeCell) -> str:
        index = self._op_index
        codes = tuple(index[o] for o in self._checked(arch).ops)
        table = self._hash_table if self._hash_table is not None else self._load_table()
        if table is not None:
            return table[self._cell_index(codes)]
        h = self._hash_cache.get(codes)
        if h is None:
            h = self._hash_cache[codes] = self._line_graph_hash(codes)
            if len(self._hash_cache) >= _BULK_HASHES and self.size <= _MAX_TABLE:
                self.hash_table()  # bulk work: finish the table once, keep it on disk
        return h

    def _cell_index(self, codes: Sequence[int]) -> int:
        """Position of a cell in ``enumerate()`` (its codes read as a base-k number)."""
        k, idx = len(self.edge_op_names), 0
        for c in codes:
            idx = idx * k + c
        return idx

    def _cache_name(self) -> str:
        # the hash of one full cell fingerprints the hashing code itself: a change there
        # (e.g. to graph_hash.module_hash) gives a new file instead of stale hashes
        probe = self._line_graph_hash((len(self.edge_op_names) - 1,) * self.num_edges)
        spec = repr((_HASH_VERSION, self.edge_op_names, self.max_nodes, self.blocking, probe))
        digest = hashlib.sha1(spec.encode()).hexdigest()[:12]
        return f"edge-cell-hashes-{self.name}-{digest}.npy"

    def _load_table(self) -> list[str] | None:
        """The hash of every cell from the disk cache, if there (checked once per instance)."""
        if self._table_checked or self.size > _MAX_TABLE:
            return None
        self._table_checked = True
        try:
            arr = np.load(cache_path(self._cache_name(), create=False), allow_pickle=False)
        except (OSError, ValueError, EOFError):  # missing, foreign, empty or truncated file
            return None
        if arr.shape != (self.size,) or arr.dtype != np.dtype("S32"):
            return None  # stale or foreign file: recompute when needed
        self._hash_table = [h.decode() for h in arr.tolist()]
        return self._hash_table

    def hash_table(self) -> list[str]:
        """Hash of every cell in ``enumerate()`` order; computed once, then cached on disk.

        The md5 chain of the module hash costs ~0.2 ms a cell, so the whole NB201 space
        takes a few seconds the first time and is read back instantly afterwards.
        """
        table = self._hash_table if self._hash_table is not None else self._load_table()
        if table is not None:
            return table
        k = len(self.edge_op_names)
        table = []
        for codes in itertools.product(range(k), repeat=self.num_edges):
            h = self._hash_cache.get(codes)
            table.append(h if h is not None else self._line_graph_hash(codes))
        self._hash_table = table
        self._hash_cache = {}
        with contextlib.suppress(ArchrankError, OSError), atomic_path(
            cache_path(self._cache_name())
        ) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.array(table, dtype="S32"), allow_pickle=False)
        return table

    def _first_of_hashes(self) -> dict[str, int] | None:
        """Each hash's first index in ``enumerate()`` order, from the hash table (built once);
        ``None`` for spaces too large for one."""
        if self.size > _MAX_TABLE:
            return None
        if self._first_of_hash is None:
            self._first_of_hash = {}
            for i, h in enumerate(self.hash_table()):
                self._first_of_hash.setdefault(h, i)
        return self._first_of_hash

    def distinct_cells(self) -> int | None:
        """Distinct hashes among the op strings (nb201: 8,765 of 15,625); ``None`` for spaces
        too large for a hash table."""
        first = self._first_of_hashes()
        return None if first is None else len(first)

    def canonical(self, arch: EdgeCell) -> EdgeCell:
        """The first cell in ``enumerate()`` order that hashes like ``arch`` (what a
        whole-space pass meets first); spaces too large for a hash table: ``arch`` with every
        edge off the input-to-output paths blocked. Cells that hash alike build networks that
        differ (in dead ops, and in the random stream their initialisation draws from)."""
        first = self._first_of_hashes()
        if first is not None:
            return self.from_codes(np.array(self._cell_codes(first[self.hash(arch)])))[0]
        return self.prune(arch)

    def prune(self, arch: EdgeCell) -> EdgeCell:
        """``arch`` with every edge off the input-to-output paths set to the blocking op
        (``none``)."""
        if not self._blocks.any():
            return arch
        codes = [self._op_index[o] for o in self._checked(arch).ops]
        block = int(np.flatnonzero(self._blocks)[0])
        live = set(self.live_edges(codes))
        return EdgeCell(tuple(self.edge_op_names[c if k in live else block]
                              for k, c in enumerate(codes)))

    def _cell_codes(self, index: int) -> list[int]:
        """The codes of the cell at ``index`` of ``enumerate()`` (``_cell_index`` inverted)."""
        k, out = len(self.edge_op_names), []
        for _ in range(self.num_edges):
            index, c = divmod(index, k)
            out.append(c)
        return out[::-1]

    def live_edges(self, codes: Sequence[int]) -> list[int]:
        """Edges (indices) on some input-to-output path of passing edges: all that matters."""
        n, last = self.max_nodes, self.max_nodes - 1
        passes = [not self._blocks[c] for c in codes]
        from_input = [False] * n
        from_input[0] = True
        for k, (i, j) in enumerate(self.edges):  # sorted by target: sources are final
            if passes[k] and from_input[i]:
                from_input[j] = True
        to_output = [False] * n
        to_output[last] = True
        for k in range(len(self.edges) - 1, -1, -1):  # reverse order: targets are final
            i, j = self.edges[k]
            if passes[k] and to_output[j]:
                to_output[i] = True
        return [
            k for k, (i, j) in enumerate(self.edges)
            if passes[k] and from_input[i] and to_output[j]
        ]

    def _line_graph_hash(self, codes: tuple[int, ...]) -> str:
        live = self.live_edges(codes)
        key = tuple((k, codes[k]) for k in live)  # cells differing on dead edges share it
        h = self._live_cache.get(key)
        if h is not None:
            return h
        n = len(live) + 2  # input, one vertex per live edge, output
        matrix = np.zeros((n, n), dtype=np.int8)
        last = self.max_nodes - 1
        for a, k in enumerate(live, start=1):
            src, dst = self.edges[k]
            if src == 0:
                matrix[0, a] = 1
            if dst == last:
                matrix[a, n - 1] = 1
            for b, k2 in enumerate(live, start=1):
                if self.edges[k2][0] == dst:  # k ends where k2 starts (so b > a)
                    matrix[a, b] = 1
        labels = [INPUT_LABEL, *(codes[k] for k in live), OUTPUT_LABEL]
        # ``live`` is already pruned; an empty one means the output is cut off from the input
        # and every such cell is the same (the 2-vertex graph, no edge).
        h = module_hash(matrix, labels)
        self._live_cache[key] = h
        return h

    # -- sampling and neighbourhoods --------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator) -> list[EdgeCell]:
        """Uniform over all cells (every op string is a cell of the space)."""
        return self.from_codes(self.random_codes(n, rng))

    def random_codes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Op indices ``[n, num_edges]``, every edge's op uniformly and independently."""
        return rng.integers(0, len(self.edge_op_names), size=(int(n), self.num_edges))

    def fair_codes(self, rng: np.random.Generator) -> np.ndarray:
        """A round of K paths in which every edge takes each of the K ops once (a random
        order per edge)."""
        k = len(self.edge_op_names)
        return np.stack([rng.permutation(k) for _ in range(self.num_edges)]).T

    def relaxed_shape(self) -> tuple[int, int]:
        return self.num_edges, len(self.edge_op_names)

    def supernet_graph(self) -> SupernetGraph:
        """The cell's nodes (input, intermediate, output), then an op node per edge in the
        order of node pairs ``i < j`` (row by row): exactly ``autoencoder.to_node_form``'s
        line graph of a cell, so both read a cell alike."""
        n = self.max_nodes
        tokens = (0, *([1] * (n - 2)), 2)
        slots = tuple((self.edges.index((i, j)), i, j) for i in range(n) for j in range(i + 1, n))
        return SupernetGraph(self.node_op_names, tokens, slots, self.edge_op_names,
                             self.blocking)

    def discretize(self, weights: np.ndarray) -> np.ndarray:
        """The strongest op of every edge (``none`` included, as in the NAS-Bench-201
        DARTS baseline)."""
        return np.asarray(weights).reshape(self.relaxed_shape()).argmax(1).astype(np.int64)

    def live_ops(self, codes: Sequence[int]) -> list[str]:
        return [self.edge_op_names[int(codes[k])] for k in self.live_edges(codes)]

    def neighbours(self, arch: EdgeCell) -> list[EdgeCell]:
        """Every cell with exactly one edge op changed (``num_edges * (num_ops - 1)``)."""
        ops = self._checked(arch).ops
        out = []
        for k, current in enumerate(ops):
            for op in self.edge_op_names:
                if op != current:
                    out.append(EdgeCell((*ops[:k], op, *ops[k + 1 :])))
        return out

    def mutate(self, arch: EdgeCell, rng: np.random.Generator) -> EdgeCell:
        """A random neighbour that is not equivalent to ``arch`` (``arch`` if none exists)."""
        own = self.hash(arch)
        options = self.neighbours(arch)
        for i in rng.permutation(len(options)):
            cand = options[int(i)]
            if self.hash(cand) != own:
                return cand
        return arch

    # -- enumeration ------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.edge_op_names) ** self.num_edges

    def enumerate(self) -> list[EdgeCell]:
        """Every cell: all op strings, in lexicographic order of op indices.

        Equivalent strings are all kept (a benchmark trains each string separately, and the
        NAS-Bench-201 table holds one entry per string); ``hash`` tells equivalents apart.
        """
        with gc_paused():
            return list(map(EdgeCell, itertools.product(self.edge_op_names, repeat=self.num_edges)))

    # -- tensors ----------------------------------------------------------------------------
    def to_graphs(self, archs: Sequence[EdgeCell]) -> GraphBatch:
        return self.graphs_from_codes(self.codes(archs))

    def graphs_from_codes(self, codes: np.ndarray) -> GraphBatch:
        """``GraphBatch`` of cells given as op indices ``[B, num_edges]`` (fully vectorised)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, self.num_edges)
        b, n = codes.shape[0], self.max_nodes
        edge_ops = np.zeros((b, n, n), dtype=np.int64)
        edge_ops[:, self._src, self._dst] = codes
        adj = np.zeros((b, n, n), dtype=np.float32)
        adj[:, self._src, self._dst] = ~self._blocks[codes]
        node_ops = np.ones((b, n), dtype=np.int64)  # intermediate
        node_ops[:, 0] = 0
        node_ops[:, -1] = 2
        return GraphBatch(
            ops=torch.from_numpy(node_ops),
            adj=torch.from_numpy(adj),
            mask=torch.ones((b, n), dtype=torch.bool),
            edge_ops=torch.from_numpy(edge_ops),
        )
