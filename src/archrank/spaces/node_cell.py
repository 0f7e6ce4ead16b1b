"""Operation-on-node DAG cell spaces (NAS-Bench-101 and any user-defined variant).

A cell is a DAG in topological order: vertex 0 is the input, the last vertex the output, and
each interior vertex carries one operation.  Vertices not on an input -> output path do not
affect the network and are pruned, so every ``Cell`` this module hands out is pruned and its
adjacency matrix strictly upper triangular.  A new space of this kind is a config::

    NodeCellSpace(ops=("conv3x3", "conv1x1", "maxpool"), max_vertices=6, max_edges=8,
                  name="my-cells")

Text form (``parse``/``format``): the row-major 0/1 adjacency bits, ``|``, the comma-separated
ops, e.g. ``0110000100010000|input,conv3x3-bn-relu,maxpool3x3,output`` for the 4-vertex cell
0->1, 0->2, 1->3, 2->3.  ``parse`` also takes the JSON object
``{"adjacency": [[0, 1], [0, 0]], "ops": ["input", "output"]}``.

Whole-space work (enumeration, uniform sampling, scoring every cell) runs on arrays cached on
disk (``archrank.cache``), never on per-cell Python objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from archrank.cache import atomic_path, cache_path
from archrank.errors import ArchrankError, InvalidArchitecture
from archrank.spaces import dag_enum
from archrank.spaces.base import GraphBatch, SearchSpace
from archrank.spaces.graph_hash import INPUT_LABEL, OUTPUT_LABEL, module_hash, reachable_mask

CACHE_FORMAT = 1  # bump when the cached arrays change meaning


@dataclass(frozen=True, slots=True)
class Cell:
    """An op-on-node cell: adjacency rows and one op name per vertex (input first, output last).

    Get cells from their space (``parse``, ``from_record``, ``make``, ``sample``...), which
    prunes and validates them; the constructor itself checks nothing, so that building the
    423,624 cells of NB101 stays cheap.
    """

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    @property
    def num_vertices(self) -> int:
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        return sum(map(sum, self.matrix))

    def to_numpy(self) -> np.ndarray:
        """The adjacency matrix as an ``int8`` array."""
        return np.array(self.matrix, dtype=np.int8).reshape(len(self.ops), len(self.ops))


@dataclass(frozen=True)
class CellArrays:
    """A set of cells as arrays (the whole enumerated space), one row per cell.

    matrices:     uint8 [M, V, V] adjacency, zero padded after ``num_vertices``
    ops:          int8  [M, V]    index in ``space.node_op_names``, 0 on padding
    num_vertices: int8  [M]
    hashes:       ``S32`` [M]     module hash (hex, ASCII bytes), sorted ascending
    """

    matrices: np.ndarray
    ops: np.ndarray
    num_vertices: np.ndarray
    hashes: np.ndarray

    def __len__(self) -> int:
        return int(self.num_vertices.shape[0])


class NodeCellSpace(SearchSpace[Cell]):
    """DAG cells with ops on nodes: at most ``max_vertices`` vertices and ``max_edges`` edges.

    ``ops`` are the interior operations; ``node_op_names`` = ``("input", *ops, "output")`` is
    the vocabulary of ``GraphBatch.ops``.  The canonical hash is the NAS-Bench-101 module hash
    with labels input -1, output -2 and interior op ``i`` -> ``i``, so isomorphic cells hash
    alike.  ``size`` may be given when known; otherwise it is known once the space has been
    enumerated (and cached).
    """

    op_on: ClassVar[Literal["node", "edge"]] = "node"
    record_fields: ClassVar[tuple[str, ...]] = ("adjacency", "ops")
    cell_type = Cell
    # Enumerations bigger than this are refused (memory), and sampling falls back to rejection.
    max_enumeration: ClassVar[int] = 5_000_000

    def __init__(
        self,
        ops: Sequence[str],
        max_vertices: int,
        max_edges: int,
        name: str = "cells",
        description: str = "",
        size: int | None = None,
    ) -> None:
        ops = tuple(ops)
        if not ops or len(set(ops)) != len(ops) or {"input", "output"} & set(ops):
            raise ValueError(f"ops must be distinct interior op names, got {ops}")
        if max_vertices < 2 or max_edges < 1:
            raise ValueError("a cell needs at least 2 vertices and 1 edge")
        self.name = name  # type: ignore[misc]  (class-level on the base, per instance here)
        self.description = description or (
            f"op-on-node cells, <= {max_vertices} vertices, <= {max_edges} edges, "
            f"ops {', '.join(ops)}"
        )
        self.ops = ops
        self.max_vertices = max_vertices
        self.max_edges = max_edges
        self.max_nodes = max_vertices
        self.node_op_names = ("input", *ops, "output")
        self._op_index = {op: i for i, op in enumerate(self.node_op_names)}
        self._known_size = size
        self._arrays: CellArrays | None = None
        self._lock = threading.Lock()
        self._hash_cached = lru_cache(maxsize=1 << 17)(self._compute_hash)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the config only (worker processes reload the enumeration from the cache)."""
        state = self.__dict__.copy()
        for key in ("_arrays", "_lock", "_hash_cached"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._arrays = None
        self._lock = threading.Lock()
        self._hash_cached = lru_cache(maxsize=1 << 17)(self._compute_hash)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, ops={self.ops}, "
            f"max_vertices={self.max_vertices}, max_edges={self.max_edges})"
        )

    # -- building and validating --------------------------------------------------------------
    def make(self, matrix: Any, ops: Sequence[str]) -> Cell:
        """The pruned, validated cell of ``matrix`` (n x n 0/1) and ``ops`` (n names)."""
        return self._build(self._read_adjacency(matrix), self._read_ops(ops))

    def validate(self, arch: Cell) -> Cell:
        self.check_cell(arch)
        return self._build(self._read_adjacency(arch.matrix), list(arch.ops))

    def _fail(self, detail: str) -> InvalidArchitecture:
        return InvalidArchitecture(f"invalid {self.name} cell: {detail}")

    def _build(self, matrix: np.ndarray, ops: list[str]) -> Cell:
        n = matrix.shape[0]
        if len(ops) != n:
            raise self._fail(
                f"{len(ops)} ops for a {n}-vertex adjacency matrix (one op per vertex needed)"
            )
        if n < 2:
            raise self._fail("a cell needs at least an input and an output vertex")
        self._check_ops(ops)
        self._check_dag(matrix)
        keep = reachable_mask(matrix)
        if not (keep[0] and keep[-1]):
            raise self._fail(f"input and output are not connected (no path from 0 to {n - 1})")
        idx = np.flatnonzero(keep)
        pruned = matrix[np.ix_(idx, idx)]
        if len(idx) > self.max_vertices:
            raise self._fail(
                f"{len(idx)} vertices after pruning, more than the maximum of {self.max_vertices}"
            )
        edges = int(pruned.sum())
        if edges > self.max_edges:
            raise self._fail(
                f"{edges} edges after pruning, more than the maximum of {self.max_edges}"
            )
        names = self.node_op_names
        return Cell(
            tuple(tuple(row) for row in pruned.tolist()),
            tuple(names[self._op_index[ops[i]]] for i in idx.tolist()),
        )

    def _check_ops(self, ops: list[str]) -> None:
        if ops[0] != "input":
            raise self._fail(f"the first op must be 'input', got {ops[0]!r}")
        if ops[-1] != "output":
            raise self._fail(f"the last op must be 'output', got {ops[-1]!r}")
        for v, op in enumerate(ops[1:-1], start=1):
            if op not in self.ops:
                if op in ("input", "output"):
                    where = "first" if op == "input" else "last"
                    problem = f"{op!r} at vertex {v} (it may only be the {where} op)"
                else:
                    problem = f"unknown op {op!r} at vertex {v}"
                raise self._fail(f"{problem}; valid interior ops: {', '.join(self.ops)}")

    def _check_dag(self, matrix: np.ndarray) -> None:
        lower = np.argwhere(np.tril(matrix))
        if len(lower) == 0:
            return
        n = matrix.shape[0]
        if np.any(np.diagonal(matrix)):
            v = int(np.flatnonzero(np.diagonal(matrix))[0])
            raise self._fail(f"adjacency is cyclic (self-loop on vertex {v})")
        # Kahn's algorithm: vertices left over lie on (or behind) a cycle.
        indeg = matrix.sum(axis=0).astype(np.int64)
        ready = [v for v in range(n) if indeg[v] == 0]
        seen = 0
        while ready:
            v = ready.pop()
            seen += 1
            for w in np.flatnonzero(matrix[v]).tolist():
                indeg[w] -= 1
                if indeg[w] == 0:
                    ready.append(w)
        if seen < n:
            raise self._fail("adjacency is cyclic (the graph has a directed cycle)")
        i, j = (int(x) for x in lower[0])
        raise self._fail(
            f"adjacency is not a DAG in topological order: edge {i}->{j} points backwards "
            "(the matrix must be strictly upper triangular)"
        )

    def _json(self, text: str, field: str) -> Any:
        """``text`` parsed as JSON, or a clear error naming ``field``."""
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._fail(f"{field} is not valid JSON ({exc.msg})") from None

    def _read_adjacency(self, value: Any) -> np.ndarray:
        """Square 0/1 matrix from a bit string, JSON text, nested lists or an array."""
        if isinstance(value, str):
            text = value.strip()
            if not text.startswith("["):
                return self._bits_to_matrix(text)
            value = self._json(text, "adjacency")
        if isinstance(value, np.ndarray):
            array = value
        else:
            if not isinstance(value, list | tuple) or not all(
                isinstance(row, list | tuple) for row in value
            ):
                raise self._fail(
                    "adjacency must be an n*n 0/1 string or a list of n rows of n 0/1 values"
                )
            n = len(value)
            for i, row in enumerate(value):
                if len(row) != n:
                    raise self._fail(
                        f"adjacency is not square: {n} rows but row {i} has {len(row)} entries"
                    )
            try:
                array = np.array(value, dtype=object).reshape(n, n)
            except ValueError:
                raise self._fail("adjacency rows must hold numbers") from None
        if array.ndim != 2 or array.shape[0] != array.shape[1]:
            raise self._fail(f"adjacency must be a square matrix, got shape {array.shape}")
        flat = array.ravel().tolist()
        for x in flat:
            if isinstance(x, bool) or x not in (0, 1):
                raise self._fail(f"adjacency entries must be 0 or 1, got {x!r}")
        return np.array(flat, dtype=np.int8).reshape(array.shape)

    def _bits_to_matrix(self, text: str) -> np.ndarray:
        bits = "".join(text.split())
        bad = next((ch for ch in bits if ch not in "01"), None)
        if bad is not None:
            raise self._fail(f"adjacency entries must be 0 or 1, got {bad!r} in {text!r}")
        n = math.isqrt(len(bits))
        if n == 0 or n * n != len(bits):
            raise self._fail(
                f"adjacency string has {len(bits)} bits, not a square n*n (row-major 0/1)"
            )
        return (np.frombuffer(bits.encode(), dtype=np.uint8) - ord("0")).astype(np.int8).reshape(
            n, n
        )

    def _read_ops(self, value: Any) -> list[str]:
        if isinstance(value, str):
            text = value.strip()
            if not text.startswith("["):
                return [op.strip() for op in text.split(",")]
            value = self._json(text, "ops")
        if not isinstance(value, list | tuple) or not all(isinstance(op, str) for op in value):
            raise self._fail("ops must be comma-separated names or a list of names")
        return [op.strip() for op in value]

    # -- text and records ---------------------------------------------------------------------
    def parse(self, text: str) -> Cell:
        """Read ``BITS|op,op,...`` or the JSON object ``{"adjacency": ..., "ops": ...}``."""
        if not isinstance(text, str):
            raise self._fail(f"expected text, got {type(text).__name__}")
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                obj = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise self._fail(f"not valid JSON ({exc.msg}): {_clip(stripped)}") from None
            if not isinstance(obj, dict):
                raise self._fail("JSON form must be an object with 'adjacency' and 'ops'")
            return self.from_record(obj)
        if stripped.count("|") != 1:
            raise self._fail(
                f"cannot read {_clip(stripped)!r}: expected 'BITS|op,op,...' (row-major "
                "adjacency bits, then ops), e.g. '0110000100010000|input,"
                f"{self.ops[0]},{self.ops[-1]},output', or JSON "
                '{"adjacency": [[...]], "ops": [...]}'
            )
        bits, ops = stripped.split("|")
        return self._build(self._bits_to_matrix(bits), self._read_ops(ops))

    def format(self, arch: Cell) -> str:
        self.check_cell(arch)
        bits = "".join(str(b) for row in arch.matrix for b in row)
        return f"{bits}|{','.join(arch.ops)}"

    def from_record(self, record: Mapping[str, Any]) -> Cell:
        missing = [f for f in self.record_fields if f not in record or record[f] is None]
        if missing:
            needs = ", ".join(self.record_fields)
            raise self._fail(f"missing field {missing[0]!r} (needs {needs})")
        return self._build(
            self._read_adjacency(record["adjacency"]), self._read_ops(record["ops"])
        )

    def to_record(self, arch: Cell) -> dict[str, Any]:
        return {
            "hash": self.hash(arch),
            "adjacency": [list(row) for row in arch.matrix],
            "ops": list(arch.ops),
        }

    # -- identity -----------------------------------------------------------------------------
    def labels(self, arch: Cell) -> list[int]:
        """Module-hash labels of ``arch``'s vertices: input -1, output -2, interior op index."""
        index = self._op_index
        last = len(self.node_op_names) - 1
        out = []
        for op in arch.ops:
            i = index.get(op)
            if i is None:
                raise self._fail(f"unknown op {op!r}; valid interior ops: {', '.join(self.ops)}")
            out.append(INPUT_LABEL if i == 0 else OUTPUT_LABEL if i == last else i - 1)
        return out

    def hash(self, arch: Cell) -> str:
        self.check_cell(arch)
        return self._hash_cached(arch)

    def _compute_hash(self, arch: Cell) -> str:
        return module_hash(np.array(arch.matrix, dtype=np.int8), self.labels(arch))

    # -- sampling and neighbourhoods ----------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator) -> list[Cell]:
        """``n`` cells drawn uniformly (with replacement) from the unique valid cells.

        Exact: indices into the cached enumeration (computed on first use; about 20 s for
        NB101 on 2 cores, then loaded from the cache in well under a second).  A space too big
        to enumerate falls back to ``sample_specs``, which is not uniform over unique cells.
        """
        if self.enumeration_feasible():
            arrays = self.enumeration()
            return self.cells_at(rng.integers(len(arrays), size=n))
        return self.sample_specs(n, rng)

    def sample_specs(self, n: int, rng: np.random.Generator) -> list[Cell]:
        """NB101-paper style sampling: random full-size specs, kept when valid.

        Each edge is drawn with probability ``min(1/2, max_edges / possible edges)``.  Uniform
        over raw specs, hence biased towards cells with many equivalent specs: only for spaces
        too big to enumerate.
        """
        v = self.max_vertices
        p = min(0.5, self.max_edges / (v * (v - 1) / 2))
        out: list[Cell] = []
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 10_000 + 1_000 * n:
                raise ArchrankError(f"could not sample valid {self.name} cells (too rare)")
            matrix = np.triu(rng.random((v, v)) < p, 1).astype(np.int8)
            ops = ["input", *(self.ops[i] for i in rng.integers(len(self.ops), size=v - 2))]
            try:
                out.append(self._build(matrix, [*ops, "output"]))
            except InvalidArchitecture:
                continue
        return out

    def _edits(self, arch: Cell) -> list[tuple[str, int, int, int]]:
        """Every single edit of ``arch``: ``(kind, a, b, op)``.

        ``op``: change vertex ``a``'s op to ``ops[op]``; ``flip``: toggle edge ``a -> b``;
        ``insert``: add a vertex with ``ops[op]`` on a new path ``a -> new -> b`` (in NB101's
        unpruned 7-vertex view, one edge flip that connects a dangling vertex).
        """
        n = arch.num_vertices
        k = len(self.ops)
        edits: list[tuple[str, int, int, int]] = []
        for v in range(1, n - 1):
            current = self._op_index[arch.ops[v]] - 1
            edits.extend(("op", v, 0, o) for o in range(k) if o != current)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        edits.extend(("flip", i, j, 0) for i, j in pairs)
        if n < self.max_vertices:
            edits.extend(("insert", i, j, o) for i, j in pairs for o in range(k))
        return edits

    def _apply(self, arch: Cell, edit: tuple[str, int, int, int]) -> Cell | None:
        kind, a, b, o = edit
        matrix = np.array(arch.matrix, dtype=np.int8)
        ops = list(arch.ops)
        if kind == "op":
            ops[a] = self.ops[o]
        elif kind == "flip":
            matrix[a, b] ^= 1
        else:  # insert the new vertex at position b, between a and b
            matrix = np.insert(np.insert(matrix, b, 0, axis=0), b, 0, axis=1)
            matrix[a, b] = 1
            matrix[b, b + 1] = 1
            ops.insert(b, self.ops[o])
        try:
            return self._build(matrix, ops)
        except InvalidArchitecture:
            return None

    def neighbours(self, arch: Cell) -> list[Cell]:
        """Valid cells one edit away (op change, edge flip, vertex insertion), pruned, by hash."""
        own = self.hash(arch)
        seen = {own}
        out = []
        for edit in self._edits(arch):
            cell = self._apply(arch, edit)
            if cell is None:
                continue
            h = self.hash(cell)
            if h not in seen:
                seen.add(h)
                out.append(cell)
        return out

    def mutate(self, arch: Cell, rng: np.random.Generator) -> Cell:
        """A random valid neighbour: the first valid edit in a random order of all edits.

        Uniform over valid edits (not over distinct neighbours) and much cheaper than building
        the whole neighbourhood.
        """
        own = self.hash(arch)  # checks the cell
        edits = self._edits(arch)
        for k in rng.permutation(len(edits)).tolist():
            cell = self._apply(arch, edits[k])
            if cell is not None and self.hash(cell) != own:
                return cell
        return arch

    # -- enumeration --------------------------------------------------------------------------
    @property
    def size(self) -> int | None:
        if self._known_size is not None:
            return self._known_size
        if self._arrays is not None:
            return len(self._arrays)
        path = self.cache_path
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    return int(data["num_vertices"].shape[0])
            except Exception:  # a broken cache is rebuilt by enumeration()
                return None
        return None

    def enumeration_feasible(self) -> bool:
        """Whether the whole space fits the enumerator (vertex count and number of cells)."""
        bits = self.max_vertices * (self.max_vertices - 1) // 2
        if bits > 21:
            return False
        if self._known_size is not None or self._arrays is not None:
            return True
        return self.count_upper_bound() <= self.max_enumeration

    def count_upper_bound(self) -> int:
        """Number of non-isomorphic cells (Burnside over the automorphisms, no hashing).

        Equals ``size`` unless two non-isomorphic cells share a module hash.
        """
        k = len(self.ops)
        total = 0
        for n in range(2, self.max_vertices + 1):
            _, autos = dag_enum.unique_graphs(n, self.max_edges)
            for group in autos:
                fixed = sum(k ** _cycles(sigma) for sigma in group.tolist())
                total += fixed // len(group)
        return total

    @property
    def cache_path(self) -> Path:
        """The enumeration's cache file (it need not exist)."""
        key = json.dumps([CACHE_FORMAT, self.ops, self.max_vertices, self.max_edges])
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in self.name)
        return cache_path(f"enum-{safe}-{digest}.npz", create=False)

    def enumeration(self) -> CellArrays:
        """The whole space as arrays, sorted by hash: from memory, the cache, or computed.

        Computing it (and writing the cache) happens once per machine; a missing, corrupt or
        stale cache file is simply rebuilt.
        """
        if self._arrays is not None:
            return self._arrays
        with self._lock:
            if self._arrays is None:
                arrays = self._load_cache()
                if arrays is None:
                    arrays = self._compute_enumeration()
                    self._save_cache(arrays)
                self._arrays = arrays
        return self._arrays

    def enumerate(self) -> list[Cell]:
        """Every unique valid cell, one per module hash, in hash order."""
        arrays = self.enumeration()
        return self.cells_at(np.arange(len(arrays)))

    def enumerate_records(self) -> Iterator[dict[str, Any]]:
        """``to_record`` of every cell, straight from the arrays (no hashing)."""
        arrays = self.enumeration()
        mat_lists, mat_inv = self._matrix_groups(arrays, None, lambda m: m)
        op_lists, ops_inv = self._ops_groups(arrays, None, list)
        hashes = arrays.hashes.astype(str).tolist()
        for h, a, o in zip(hashes, mat_inv.tolist(), ops_inv.tolist(), strict=True):
            yield {"hash": h, "adjacency": mat_lists[a], "ops": op_lists[o]}

    def enumerate_json_lines(self) -> Iterator[str]:
        """``json.dumps(to_record(cell))`` of every cell, from pre-serialised pieces (fast)."""
        arrays = self.enumeration()
        mat_json, mat_inv = self._matrix_groups(arrays, None, json.dumps)
        ops_json, ops_inv = self._ops_groups(arrays, None, lambda names: json.dumps(list(names)))
        hashes = arrays.hashes.astype(str).tolist()
        for h, a, o in zip(hashes, mat_inv.tolist(), ops_inv.tolist(), strict=True):
            yield f'{{"hash": "{h}", "adjacency": {mat_json[a]}, "ops": {ops_json[o]}}}'

    def hashes(self) -> list[str]:
        """Hash of every enumerated cell, in ``enumerate()`` order."""
        return self.enumeration().hashes.astype(str).tolist()

    def index_of(self, hashes: Sequence[str]) -> np.ndarray:
        """Row of each hash in the enumeration (``-1`` when not a cell of the space)."""
        table = self.enumeration().hashes
        keys = np.array(list(hashes), dtype="S32")
        pos = np.searchsorted(table, keys).clip(0, max(len(table) - 1, 0))
        found = table[pos] == keys if len(table) else np.zeros(len(keys), dtype=bool)
        return np.where(found, pos, -1)

    def cells_at(self, indices: np.ndarray | Sequence[int]) -> list[Cell]:
        """The enumerated cells at ``indices`` (cells sharing a matrix or ops share tuples)."""
        arrays = self.enumeration()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return []
        mat_tuples, mat_inv = self._matrix_groups(
            arrays, idx, lambda m: tuple(tuple(r) for r in m)
        )
        op_tuples, ops_inv = self._ops_groups(arrays, idx, tuple)
        return [
            Cell(mat_tuples[a], op_tuples[o])
            for a, o in zip(mat_inv.tolist(), ops_inv.tolist(), strict=True)
        ]

    def _matrix_groups(
        self, arrays: CellArrays, idx: np.ndarray | None, convert: Any
    ) -> tuple[list[Any], np.ndarray]:
        """``convert(n x n nested list)`` per distinct matrix among rows ``idx``, and inverse."""
        mats = arrays.matrices if idx is None else arrays.matrices[idx]
        nv = arrays.num_vertices if idx is None else arrays.num_vertices[idx]
        flat = mats.reshape(len(mats), -1).astype(np.int64)
        codes = flat @ (np.int64(1) << np.arange(flat.shape[1], dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        out = [
            convert(mats[i, :n, :n].tolist())
            for i, n in zip(first.tolist(), nv[first].tolist(), strict=True)
        ]
        return out, inverse.reshape(-1)

    def _ops_groups(
        self, arrays: CellArrays, idx: np.ndarray | None, convert: Any
    ) -> tuple[list[Any], np.ndarray]:
        """``convert(op names)`` per distinct ops row among rows ``idx``, and inverse."""
        ops = arrays.ops if idx is None else arrays.ops[idx]
        nv = arrays.num_vertices if idx is None else arrays.num_vertices[idx]
        base = len(self.node_op_names)
        codes = ops.astype(np.int64) @ (base ** np.arange(ops.shape[1], dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        names = self.node_op_names
        out = [
            convert(names[k] for k in ops[i, :n].tolist())
            for i, n in zip(first.tolist(), nv[first].tolist(), strict=True)
        ]
        return out, inverse.reshape(-1)

    def enumerate_graphs(self) -> GraphBatch:
        """``to_graphs(enumerate())`` built directly from the arrays (fast: scores the space)."""
        arrays = self.enumeration()
        return self._graphs_from_arrays(arrays.matrices, arrays.ops, arrays.num_vertices)

    def _graphs_from_arrays(
        self, matrices: np.ndarray, ops: np.ndarray, num_vertices: np.ndarray
    ) -> GraphBatch:
        mask = np.arange(self.max_vertices)[None, :] < num_vertices[:, None]
        return GraphBatch(
            ops=torch.from_numpy(ops.astype(np.int64)),
            adj=torch.from_numpy(matrices.astype(np.float32)),
            mask=torch.from_numpy(mask),
        )

    def _compute_enumeration(self) -> CellArrays:
        if not self.enumeration_feasible():
            raise ArchrankError(
                f"space {self.name!r} is too large to enumerate ({self.max_vertices} vertices, "
                f"{len(self.ops)} ops); sample it instead"
            )
        # a minute or more for NB101 the first time on a machine: said, not silent (the
        # CLI prints the ``archrank`` logger's notices on standard error)
        logging.getLogger("archrank").info(
            "enumerating every %s cell once (cached for later use in %s)", self.name,
            self.cache_path.parent)
        cells = dag_enum.enumerate_cells(len(self.ops), self.max_vertices, self.max_edges)
        labels = cells.labels.astype(np.int16)
        ops = np.where(labels >= 0, labels + 1, 0)
        ops = np.where(labels == OUTPUT_LABEL, len(self.node_op_names) - 1, ops)
        return CellArrays(cells.matrices, ops.astype(np.int8), cells.num_vertices, cells.hashes)

    def _save_cache(self, arrays: CellArrays) -> None:
        path = self.cache_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "xb") as fh:
                np.savez_compressed(
                    fh,
                    matrices=arrays.matrices,
                    ops=arrays.ops,
                    num_vertices=arrays.num_vertices,
                    hashes=arrays.hashes,
                )
        except OSError:  # a read-only cache only costs recomputation next time
            return

    def _load_cache(self) -> CellArrays | None:
        path = self.cache_path
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = CellArrays(
                    data["matrices"], data["ops"], data["num_vertices"], data["hashes"]
                )
        except Exception:  # corrupt or foreign file: rebuild it
            return None
        m, v = len(arrays), self.max_vertices
        ok = (
            arrays.matrices.shape == (m, v, v)
            and arrays.ops.shape == (m, v)
            and arrays.hashes.shape == (m,)
            and arrays.hashes.dtype == np.dtype("S32")
            and (self._known_size is None or m == self._known_size)
        )
        return arrays if ok else None

    # -- tensors ------------------------------------------------------------------------------
    def to_graphs(self, archs: Sequence[Cell]) -> GraphBatch:
        """Dense tensors of ``archs``; work is per distinct matrix / ops tuple, not per cell."""
        v = self.max_vertices
        if len(archs) == 0:
            return self._graphs_from_arrays(
                np.zeros((0, v, v), np.uint8), np.zeros((0, v), np.int8), np.zeros(0, np.int8)
            )
        try:
            mats, mat_inv = _dedupe([a.matrix for a in archs])
            opss, ops_inv = _dedupe([a.ops for a in archs])
        except AttributeError:  # text or another space's cell
            self.check_cells(archs)
            raise
        mat_arr = np.zeros((len(mats), v, v), dtype=np.uint8)
        mat_n = np.empty(len(mats), dtype=np.int64)
        for u, m in enumerate(mats):
            n = len(m)
            if n > v:
                raise self._fail(f"{n} vertices, more than the maximum of {v}")
            mat_n[u] = n
            if n:
                mat_arr[u, :n, :n] = m
        ops_arr = np.zeros((len(opss), v), dtype=np.int8)
        ops_n = np.empty(len(opss), dtype=np.int64)
        index = self._op_index
        for u, ops in enumerate(opss):
            if len(ops) > v:
                raise self._fail(f"{len(ops)} vertices, more than the maximum of {v}")
            try:
                ops_arr[u, : len(ops)] = [index[op] for op in ops]
            except KeyError as exc:
                raise self._fail(
                    f"unknown op {exc.args[0]!r}; valid ops: {', '.join(self.node_op_names)}"
                ) from None
            ops_n[u] = len(ops)
        nv = ops_n[ops_inv]
        if not np.array_equal(mat_n[mat_inv], nv):
            bad = int(np.flatnonzero(mat_n[mat_inv] != nv)[0])
            raise self._fail(f"cell {bad}: adjacency size and number of ops differ")
        return self._graphs_from_arrays(mat_arr[mat_inv], ops_arr[ops_inv], nv)


def _cycles(perm: Sequence[int]) -> int:
    """Number of cycles of a permutation given as a list."""
    seen = [False] * len(perm)
    count = 0
    for start in range(len(perm)):
        if not seen[start]:
            count += 1
            v = start
            while not seen[v]:
                seen[v] = True
                v = perm[v]
    return count


def _dedupe(objs: list[Hashable]) -> tuple[list[Any], np.ndarray]:
    """Distinct values of ``objs`` and the inverse index; identical objects are hashed once."""
    ids = np.fromiter(map(id, objs), dtype=np.uint64, count=len(objs))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    table: dict[Any, int] = {}
    by_value = np.empty(len(first), dtype=np.int64)
    for k, i in enumerate(first.tolist()):
        by_value[k] = table.setdefault(objs[i], len(table))
    return list(table), by_value[inverse.reshape(-1)]


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
