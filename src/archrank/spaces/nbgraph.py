"""The NAS-Bench-Graph space (Qin et al., NeurIPS 2022 datasets track): GNNs for graph data.

A network has four GNN layers. Layer ``i`` (node ``i + 1``) reads the output of node
``links[i]`` (``0`` is the pre-processed input, ``1..i`` earlier layers) and applies its op;
every layer whose output no later layer reads (a leaf) feeds the output. Ops: ``gat``, ``gcn``,
``gin``, ``cheb``, ``sage``, ``arma``, ``graph`` (k-GNN), ``fc`` and ``skip`` (identity);
the ``proteins`` dataset was trained on a reduced list (``gcn``, ``sage``, ``arma``, ``fc``,
``skip``). Text form: ``0,1,2,1|gcn,gin,fc,cheb``.

Canonical hash
--------------
The benchmark keys every table by an integer (``Arch.valid_hash()`` of the ``nas-bench-graph``
package); our hash is that integer in decimal, computed by our own construction:

1. **Semantics.** ``skip`` is the identity, so a skip layer is contracted into its parent: the
   network is a tree of its non-skip layers rooted at the input, plus, for every layer, how
   many output taps read its value (a leaf taps itself; a skip leaf taps its nearest non-skip
   ancestor). Taps that land on the input itself are ignored, as the benchmark does. Two
   architectures are the same network iff these trees (with op labels and tap counts) are
   isomorphic; this gives exactly the benchmark's 26,206 classes.
2. **Representative.** The class is written back as four layers in the benchmark's own form:
   the skips not needed for taps form a chain from the input, the non-skip tree hangs from its
   end, and a layer tapped more than once (or tapped while having non-skip children) gets one
   skip child per tap. This rooted tree is numbered as one of the nine canonical link lists
   (one per rooted-tree shape), choosing among the numberings of that shape the one whose op
   indices read smallest.
3. **Key.** ``shape * 10**4 + op digits`` in base 10 (op index in the full nine-op list), as
   the benchmark encodes it, so ``hash(arch)`` indexes its tables directly; the test suite
   checks agreement with the package on every one of the 157,440 raw architectures.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from archrank.errors import InvalidArchitecture
from archrank.spaces.base import GraphBatch, SearchSpace
from archrank.spaces.edge_cell import gc_paused

NUM_LAYERS = 4
GNN_OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
PROTEINS_OPS = ("gcn", "sage", "arma", "fc", "skip")
SKIP = "skip"
# The nine rooted trees of four layers, as link lists, in the benchmark's key order.
LINK_SHAPES: tuple[tuple[int, ...], ...] = (
    (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1), (0, 0, 1, 2), (0, 0, 1, 3),
    (0, 1, 1, 1), (0, 1, 1, 2), (0, 1, 2, 2), (0, 1, 2, 3),
)
KEY_BASE = len(GNN_OPS) + 1  # the benchmark's digit base (one more than the op count)
_FULL_INDEX = {o: i for i, o in enumerate(GNN_OPS)}


@dataclass(frozen=True)
class GraphArch:
    """A NAS-Bench-Graph architecture: the input node of each layer and each layer's op."""

    links: tuple[int, ...]
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.links, tuple):
            object.__setattr__(self, "links", tuple(self.links))
        if not isinstance(self.ops, tuple):
            object.__setattr__(self, "ops", tuple(self.ops))


def _all_link_lists() -> list[tuple[int, ...]]:
    """The 24 raw link lists (layer ``i`` may read any node ``0..i``)."""
    return list(itertools.product(*(range(i + 1) for i in range(NUM_LAYERS))))


def _numberings() -> dict[tuple[int, ...], tuple[int, tuple[tuple[int, ...], ...]]]:
    """For every raw link list: its shape index and the layer orders that number it canonically.

    An order ``p`` lists the raw layers in their canonical positions: canonical layer ``q`` is
    raw layer ``p[q]``, and relabelling the tree this way yields ``LINK_SHAPES[shape]``.
    """
    shapes = {s: k for k, s in enumerate(LINK_SHAPES)}
    out = {}
    for links in _all_link_lists():
        orders = []
        for perm in itertools.permutations(range(NUM_LAYERS)):
            pos = {raw + 1: q + 1 for q, raw in enumerate(perm)}  # node -> canonical node
            pos[0] = 0
            new = tuple(pos[links[raw]] for raw in perm)
            if new in shapes:
                orders.append((shapes[new], perm))
        assert orders and len({k for k, _ in orders}) == 1, links
        out[links] = (orders[0][0], tuple(p for _, p in orders))
    return out


_NUMBERINGS = _numberings()


def canonical_form(links: Sequence[int], ops: Sequence[str]) -> tuple[int, tuple[int, ...]]:
    """``(shape index, op indices in GNN_OPS)`` of the class representative (see module doc).

    ``links``/``ops`` must be valid and not all ``skip``.
    """
    n = NUM_LAYERS
    is_skip = [op == SKIP for op in ops]
    # eff[v]: node whose value node v carries (skips pass their parent's value on)
    eff = [0] * (n + 1)
    has_child = [False] * (n + 1)
    for v in range(1, n + 1):
        parent = links[v - 1]
        has_child[parent] = True
        eff[v] = eff[parent] if is_skip[v - 1] else v
    taps = [0] * (n + 1)
    for v in range(1, n + 1):
        if not has_child[v]:
            taps[eff[v]] += 1
    real = [v for v in range(1, n + 1) if not is_skip[v - 1]]
    tparent = {v: eff[links[v - 1]] for v in real}
    tchildren = {v: 0 for v in real}
    for v in real:
        if tparent[v]:
            tchildren[tparent[v]] += 1
    tap_skips = {v: taps[v] if (tchildren[v] or taps[v] > 1) else 0 for v in real}
    free = n - len(real) - sum(tap_skips.values())
    # Build the representative tree in creation order (parents before children): a chain of
    # the free skips, the real layers (in their original order), then the tap skips.
    parent_of: list[int] = []  # node numbers 1..4 in creation order; 0 = input
    labels: list[int] = []
    for _ in range(free):
        parent_of.append(len(parent_of))  # previous chain node (or the input)
        labels.append(_FULL_INDEX[SKIP])
    anchor = free  # last chain node, or the input
    new_id: dict[int, int] = {}
    for v in real:
        parent_of.append(anchor if tparent[v] == 0 else new_id[tparent[v]])
        labels.append(_FULL_INDEX[ops[v - 1]])
        new_id[v] = len(parent_of)
    for v in real:
        for _ in range(tap_skips[v]):
            parent_of.append(new_id[v])
            labels.append(_FULL_INDEX[SKIP])
    shape, orders = _NUMBERINGS[tuple(parent_of)]
    return shape, min(tuple(labels[raw] for raw in p) for p in orders)


def encode_key(shape: int, codes: Sequence[int]) -> int:
    """The benchmark's integer key of a canonical ``(shape, op indices)``."""
    key = shape
    for c in codes:
        key = key * KEY_BASE + c
    return key


def decode_key(key: int) -> tuple[tuple[int, ...], tuple[str, ...]] | None:
    """``(links, ops)`` written in a benchmark key, or ``None`` if it encodes no architecture."""
    if not isinstance(key, int) or key < 0:
        return None
    digits = []
    for _ in range(NUM_LAYERS):
        key, d = divmod(key, KEY_BASE)
        digits.append(d)
    if key >= len(LINK_SHAPES) or any(d >= len(GNN_OPS) for d in digits):
        return None
    return LINK_SHAPES[key], tuple(GNN_OPS[d] for d in reversed(digits))


def _as_int(value: Any) -> int | None:
    """An integer written as int, integral float or text; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


class NBGraphSpace(SearchSpace[GraphArch]):
    """NAS-Bench-Graph architectures over ``gnn_ops`` (the nine ops, or proteins' five).

    Architectures are values as written (``parse`` keeps the text's layer order); ``hash``,
    ``validate``, ``enumerate`` and ``to_graphs`` work on the canonical representative, so
    equivalent architectures get identical graphs and keys.
    """

    name = "nbgraph"
    description = "NAS-Bench-Graph GNNs (op on node, 4 layers, 9 datasets)"
    op_on = "node"
    record_fields = ("links", "ops")
    cell_type = GraphArch
    max_nodes = NUM_LAYERS + 2

    def __init__(self, gnn_ops: Sequence[str] = GNN_OPS) -> None:
        gnn_ops = tuple(gnn_ops)
        unknown = [o for o in gnn_ops if o not in _FULL_INDEX]
        if unknown or not gnn_ops or len(set(gnn_ops)) != len(gnn_ops):
            raise ValueError(f"gnn_ops must be distinct ops of {GNN_OPS}, got {gnn_ops}")
        if all(o == SKIP for o in gnn_ops):
            raise ValueError("gnn_ops needs at least one op other than skip")
        self.gnn_ops = gnn_ops
        self.node_op_names = ("input", *gnn_ops, "output")
        self._op_index = {o: i for i, o in enumerate(gnn_ops)}
        self._canon: dict[GraphArch, GraphArch] = {}
        if gnn_ops != GNN_OPS:
            self.description = (  # type: ignore[misc]
                f"NAS-Bench-Graph GNNs restricted to {', '.join(gnn_ops)}"
            )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_canon"] = {}
        state.pop("_enumerated", None)
        state.pop("_by_key", None)
        return state

    def __repr__(self) -> str:
        return f"NBGraphSpace(gnn_ops={self.gnn_ops})"

    def with_vocabulary(self, node_ops: Sequence[str],
                        edge_ops: Sequence[str]) -> NBGraphSpace | None:
        """The space over the GNN ops between ``input`` and ``output`` of ``node_ops``."""
        ops = list(node_ops)
        if edge_ops or len(ops) < 3 or ops[0] != "input" or ops[-1] != "output":
            return None
        try:
            return NBGraphSpace(ops[1:-1])
        except ValueError:
            return None

    # -- text and records -------------------------------------------------------------------
    def _fail(self, what: Any, problem: str) -> InvalidArchitecture:
        text = what if isinstance(what, str) else repr(what)
        if len(text) > 100:
            text = text[:97] + "..."
        return InvalidArchitecture(f"invalid nbgraph architecture {text!r}: {problem}")

    def _build(self, links: Sequence[Any], ops: Sequence[Any], shown: Any) -> GraphArch:
        if len(links) != NUM_LAYERS:
            raise self._fail(shown, f"expected {NUM_LAYERS} links, got {len(links)}")
        if len(ops) != NUM_LAYERS:
            raise self._fail(shown, f"expected {NUM_LAYERS} ops, got {len(ops)}")
        clean_links = []
        for i, link in enumerate(links):
            value = _as_int(link)
            if value is None:
                raise self._fail(shown, f"link {i + 1} must be an integer, got {link!r}")
            if not 0 <= value <= i:
                raise self._fail(
                    shown,
                    f"layer {i + 1} reads node {value}, but may only read nodes 0..{i} "
                    "(0 = input, j = layer j)",
                )
            clean_links.append(value)
        clean_ops = []
        for op in ops:
            name = op.strip() if isinstance(op, str) else op
            if name not in self._op_index:
                raise self._fail(
                    shown, f"unknown op {op!r}; valid ops: {', '.join(self.gnn_ops)}"
                )
            clean_ops.append(name)
        if all(op == SKIP for op in clean_ops):
            raise self._fail(shown, "every layer is skip (the network has no GNN layer)")
        return GraphArch(tuple(clean_links), tuple(clean_ops))

    def parse(self, text: str) -> GraphArch:
        """Read ``links|ops``, e.g. ``0,1,2,1|gcn,gin,fc,cheb``."""
        if not isinstance(text, str):
            raise InvalidArchitecture(
                f"invalid nbgraph architecture: expected text, got {type(text).__name__}"
            )
        parts = text.strip().split("|")
        if len(parts) != 2:
            raise self._fail(text, "expected 'links|ops', e.g. '0,1,2,1|gcn,gin,fc,cheb'")
        return self._build(parts[0].split(","), parts[1].split(","), text)

    def format(self, arch: GraphArch) -> str:
        arch = self._checked(arch)
        return ",".join(map(str, arch.links)) + "|" + ",".join(arch.ops)

    def from_record(self, record: Mapping[str, Any]) -> GraphArch:
        missing = [f for f in self.record_fields if f not in record or record[f] is None]
        if missing:
            raise InvalidArchitecture(
                f"missing field {missing[0]!r} (nbgraph rows need 'links' and 'ops')"
            )
        links, ops = record["links"], record["ops"]
        links = links.tolist() if isinstance(links, np.ndarray) else links
        ops = ops.tolist() if isinstance(ops, np.ndarray) else ops
        if isinstance(links, str):
            links = links.strip().strip("[]").split(",")
        if isinstance(ops, str):
            ops = [o.strip().strip("'\"") for o in ops.strip().strip("[]").split(",")]
        if not isinstance(links, Sequence) or not isinstance(ops, Sequence):
            raise InvalidArchitecture("fields 'links' and 'ops' must be lists or 'a,b,c,d' text")
        return self._build(list(links), list(ops), {"links": record["links"], "ops": record["ops"]})

    def to_record(self, arch: GraphArch) -> dict[str, Any]:
        arch = self._checked(arch)
        return {"hash": self.hash(arch), "links": list(arch.links), "ops": list(arch.ops)}

    def _checked(self, arch: Any) -> GraphArch:
        self.check_cell(arch)
        if arch in self._canon:
            return arch
        return self._build(arch.links, arch.ops, f"{arch.links}|{arch.ops}")

    # -- identity ---------------------------------------------------------------------------
    def canonical(self, arch: GraphArch) -> GraphArch:
        """The representative of ``arch``'s class (the architecture the benchmark keys)."""
        rep = self._canon.get(arch)
        if rep is None:
            arch = self._checked(arch)
            shape, codes = canonical_form(arch.links, arch.ops)
            rep = GraphArch(LINK_SHAPES[shape], tuple(GNN_OPS[c] for c in codes))
            self._canon[arch] = rep
            self._canon.setdefault(rep, rep)
        return rep

    def validate(self, arch: GraphArch) -> GraphArch:
        return self.canonical(arch)

    def key(self, arch: GraphArch) -> int:
        """The benchmark's integer key (``nas_bench_graph.Arch(...).valid_hash()``)."""
        rep = self.canonical(arch)
        return encode_key(LINK_SHAPES.index(rep.links), [_FULL_INDEX[o] for o in rep.ops])

    def hash(self, arch: GraphArch) -> str:
        return str(self.key(arch))

    def from_key(self, key: int) -> GraphArch | None:
        """The architecture a benchmark key stands for (``None`` if it is no key of this space)."""
        return self._by_key.get(key) if isinstance(key, int) else None

    @cached_property
    def _by_key(self) -> dict[int, GraphArch]:
        return {self.key(a): a for a in self._enumerated}

    # -- sampling and neighbourhoods --------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator) -> list[GraphArch]:
        """Uniform over the distinct architectures (one per benchmark key)."""
        cells = self._enumerated
        return [cells[i] for i in rng.integers(0, len(cells), size=int(n))]

    def neighbours(self, arch: GraphArch) -> list[GraphArch]:
        """Every valid architecture with one layer's op or one layer's input changed."""
        arch = self._checked(arch)
        out = []
        for i in range(NUM_LAYERS):
            for op in self.gnn_ops:
                if op != arch.ops[i]:
                    ops = (*arch.ops[:i], op, *arch.ops[i + 1 :])
                    if not all(o == SKIP for o in ops):
                        out.append(GraphArch(arch.links, ops))
            for link in range(i + 1):
                if link != arch.links[i]:
                    out.append(GraphArch((*arch.links[:i], link, *arch.links[i + 1 :]), arch.ops))
        return out

    # -- enumeration ------------------------------------------------------------------------
    @cached_property
    def _enumerated(self) -> list[GraphArch]:
        """The representatives: canonical link lists whose canonical form is themselves."""
        with gc_paused():
            return self._find_representatives()

    def _find_representatives(self) -> list[GraphArch]:
        out = []
        skip = _FULL_INDEX[SKIP]
        codes_all = [_FULL_INDEX[o] for o in self.gnn_ops]
        for shape, links in enumerate(LINK_SHAPES):
            orders = _NUMBERINGS[links][1]  # the shape's automorphisms
            for codes in itertools.product(sorted(codes_all), repeat=NUM_LAYERS):
                if all(c == skip for c in codes) or any(
                    tuple(codes[i] for i in p) < codes for p in orders
                ):
                    continue  # not the smallest numbering of its own tree: not canonical
                ops = tuple(GNN_OPS[c] for c in codes)
                if canonical_form(links, ops) == (shape, codes):
                    arch = GraphArch(links, ops)
                    self._canon[arch] = arch
                    out.append(arch)
        return out

    @property
    def size(self) -> int:
        return len(self._enumerated)

    def enumerate(self) -> list[GraphArch]:
        """Every distinct architecture (26,206 with all ops; 2,021 for proteins), key order."""
        return list(self._enumerated)

    # -- tensors ----------------------------------------------------------------------------
    def to_graphs(self, archs: Sequence[GraphArch]) -> GraphBatch:
        """Node 0 input, nodes 1..4 the layers of the representative, node 5 the output.

        Edges: ``links[i] -> i + 1`` and every leaf layer ``-> 5``.
        """
        index = self._op_index
        with gc_paused():
            reps = [self.canonical(a) for a in archs]
            b, n = len(reps), self.max_nodes
            links = np.array([r.links for r in reps], dtype=np.int64).reshape(b, NUM_LAYERS)
            codes = np.array([[index[o] for o in r.ops] for r in reps], dtype=np.int64)
        codes = codes.reshape(b, NUM_LAYERS)
        rows = np.arange(b)[:, None]
        layers = np.arange(1, NUM_LAYERS + 1)[None, :]
        adj = np.zeros((b, n, n), dtype=np.float32)
        adj[rows, links, layers] = 1.0
        leaf = adj[:, 1 : NUM_LAYERS + 1, :].sum(axis=2) == 0  # [B, 4]: no later layer reads it
        adj[:, 1 : NUM_LAYERS + 1, n - 1] = leaf
        ops = np.empty((b, n), dtype=np.int64)
        ops[:, 0] = 0
        ops[:, 1 : NUM_LAYERS + 1] = codes + 1
        ops[:, n - 1] = len(self.node_op_names) - 1
        return GraphBatch(
            ops=torch.from_numpy(ops),
            adj=torch.from_numpy(adj),
            mask=torch.ones((b, n), dtype=torch.bool),
        )


__all__ = [
    "GNN_OPS",
    "LINK_SHAPES",
    "PROTEINS_OPS",
    "GraphArch",
    "NBGraphSpace",
    "canonical_form",
    "decode_key",
    "encode_key",
]
