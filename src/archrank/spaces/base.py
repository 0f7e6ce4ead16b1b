"""The search-space abstraction shared by every space, encoder and strategy.

A search space knows its architectures: how to parse and format them, which are valid, a
canonical hash under which equivalent cells collide, how to sample, mutate and (when finite)
enumerate them, and how to turn a batch of them into dense graph tensors (``GraphBatch``).
Architectures are immutable, hashable values owned by their space; everything else in
archrank talks to them only through the space.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import torch

from archrank.errors import ArchrankError, InvalidArchitecture

A = TypeVar("A")


@dataclass(frozen=True)
class GraphBatch:
    """A batch of cells as dense tensors, nodes in topological order (edges go from i to j > i).

    ops:      int64 [B, N]     op index of each node in ``space.node_op_names`` (0 on padding)
    adj:      float32 [B, N, N] ``adj[b, i, j] = 1`` for an edge i -> j that carries information
    mask:     bool [B, N]      which nodes exist: nodes ``0 .. space.num_inputs - 1`` are the
                               inputs (one in most spaces, two in ``darts``), the last real
                               node (index ``mask.sum() - 1``) the output; smaller cells are
                               padded at the end
    edge_ops: int64 [B, N, N]  op-on-edge spaces only: op index in ``space.edge_op_names`` of
                               edge i -> j; an edge whose op blocks information (``none``) has
                               ``adj = 0``.
    """

    ops: torch.Tensor
    adj: torch.Tensor
    mask: torch.Tensor
    edge_ops: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.ops.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.ops.shape[1])

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(
            self.ops.to(device),
            self.adj.to(device),
            self.mask.to(device),
            None if self.edge_ops is None else self.edge_ops.to(device),
        )

    def __getitem__(self, index: Any) -> GraphBatch:
        """Select cells by slice, index array or boolean mask."""
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        return GraphBatch(
            self.ops[index],
            self.adj[index],
            self.mask[index],
            None if self.edge_ops is None else self.edge_ops[index],
        )

    @staticmethod
    def cat(batches: Sequence[GraphBatch]) -> GraphBatch:
        edge = [b.edge_ops for b in batches]
        return GraphBatch(
            torch.cat([b.ops for b in batches]),
            torch.cat([b.adj for b in batches]),
            torch.cat([b.mask for b in batches]),
            None if any(e is None for e in edge) else torch.cat(edge),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class SupernetGraph:
    """A supernet's cell as one op-on-node graph with an op node per relaxed edge.

    Why: a relaxed cell (op weights on every supernet edge, DARTS's alpha) and an integer cell
    (one op per edge, ``none`` where the edge is unused) must read alike, so that the encoders'
    relaxed-input path equals their integer path on one-hot input. The graph has the fixed
    nodes first (tokens ``node_tokens``, indices into ``node_vocab``), then one op node per
    entry of ``slots``: ``(edge, src, dst)`` wires fixed node ``src`` -> op node -> fixed node
    ``dst`` for relaxed edge ``edge`` (a row of ``relaxed_shape()``), with the weight of the
    edge's ops that pass information (all but ``blocking``). ``links`` are the fixed edges
    between fixed nodes. ``ops`` are the K candidate ops of an edge (path code k = ``ops[k]``).
    """

    node_vocab: tuple[str, ...]
    node_tokens: tuple[int, ...]
    slots: tuple[tuple[int, int, int], ...]
    ops: tuple[str, ...]
    blocking: tuple[str, ...] = ("none",)
    links: tuple[tuple[int, int], ...] = ()


def as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    """``rng`` itself, or a generator seeded with it when it is an int seed (a one-line
    error for anything else)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ArchrankError(f"rng must be a numpy Generator or a seed of at least 0, got "
                        f"{rng!r}"[:200])


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class SearchSpace(ABC, Generic[A]):
    """A set of architectures with the operations every method needs.

    Subclasses set ``name``, ``op_on``, ``node_op_names`` (vocabulary of ``GraphBatch.ops``),
    ``edge_op_names`` (op-on-edge spaces), ``max_nodes`` (``GraphBatch`` width) and, when a
    cell reads more than one input, ``num_inputs``, and list in ``record_fields`` the table
    columns an architecture is read from.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    op_on: ClassVar[Literal["node", "edge"]]
    record_fields: ClassVar[tuple[str, ...]]
    node_op_names: tuple[str, ...]
    edge_op_names: tuple[str, ...] = ()
    max_nodes: int
    num_inputs: ClassVar[int] = 1
    cell_type: ClassVar[type | None] = None  # the class of the space's cells (check_cell)

    def check_cell(self, arch: Any) -> None:
        """A one-line ``InvalidArchitecture`` unless ``arch`` is a cell object of this space's
        kind: text or another space's cell otherwise failed deep inside with an
        ``AttributeError`` on a missing field."""
        kind = self.cell_type
        if kind is None or isinstance(arch, kind):
            return
        hint = f" (read text with get_space({self.name!r}).parse)" if isinstance(arch, str) else ""
        raise InvalidArchitecture(f"expected {_article(kind.__name__)} {kind.__name__} of space "
                                  f"{self.name}, got {type(arch).__name__}{hint}")

    def check_cells(self, archs: Sequence[Any]) -> None:
        """``check_cell`` of each of ``archs`` (the failure path of a batch method)."""
        for arch in archs:
            self.check_cell(arch)

    def __deepcopy__(self, memo: dict[int, Any]) -> SearchSpace[A]:
        """A space is configuration, its caches (hash tables, enumerations) are derived: a
        deep copy of a model or predictor (``copy.deepcopy``, scikit-learn's ``clone``)
        shares it rather than copying hundreds of megabytes."""
        return self

    def with_vocabulary(self, node_ops: Sequence[str],
                        edge_ops: Sequence[str]) -> SearchSpace[A] | None:
        """This kind of space over other op names (a saved model's), or ``None`` where the
        kind has no such variants."""
        return None

    # -- text and records -------------------------------------------------------------------
    @abstractmethod
    def parse(self, text: str) -> A:
        """Read an architecture from the space's text form; ``InvalidArchitecture`` if bad."""

    @abstractmethod
    def format(self, arch: A) -> str:
        """The space's text form of ``arch`` (``parse(format(a)) == a``)."""

    @abstractmethod
    def from_record(self, record: Mapping[str, Any]) -> A:
        """Read an architecture from a table row or JSON object (fields ``record_fields``).

        Raises ``InvalidArchitecture`` naming the field that is wrong.
        """

    @abstractmethod
    def to_record(self, arch: A) -> dict[str, Any]:
        """A JSON-serialisable dict with ``hash`` and the ``record_fields``."""

    # -- identity ---------------------------------------------------------------------------
    @abstractmethod
    def hash(self, arch: A) -> str:
        """Canonical hash: equal for isomorphic or otherwise equivalent cells."""

    def hash_many(self, archs: Sequence[A]) -> list[str]:
        """``hash`` of each of ``archs``; spaces with a vectorised hash override it (darts:
        hashing a genotype alone costs milliseconds, a batch microseconds a cell)."""
        return [self.hash(a) for a in archs]

    def validate(self, arch: A) -> A:
        """Return the canonical (e.g. pruned) form of ``arch`` or raise ``InvalidArchitecture``."""
        return arch

    # -- sampling and neighbourhoods --------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator | int) -> list[A]:
        """``n`` architectures drawn uniformly from the valid cells (with replacement);
        ``rng`` a numpy ``Generator`` or an int seed. The checks live here so that every
        space refuses a bad count alike (numpy's errors named neither the count nor the
        space)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ArchrankError(f"cannot sample {n!r} cells: give a count of at least 0")
        return self._sample(int(n), as_generator(rng))

    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> list[A]:
        """``sample`` with its arguments checked."""

    def random_codes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly drawn cells as the space's integer path codes ``[n, P]`` (what a
        weight-sharing supernet runs; spaces without a supernet have none)."""
        raise NotImplementedError(f"space {self.name!r} has no path codes")

    # -- the supernet's path codes (spaces with a weight-sharing supernet) ------------------
    def fair_codes(self, rng: np.random.Generator) -> np.ndarray:
        """One round of fair paths ``[K, P]``: over its K paths every op slot runs each of
        its K candidate ops exactly once (FairNAS-style strict fairness)."""
        raise NotImplementedError(f"space {self.name!r} has no path codes")

    def relaxed_shape(self) -> tuple[int, int]:
        """``(E, K)`` of a continuous relaxation's op weights (DARTS's alpha): K candidate
        ops, ``none`` included, on each of E supernet edges."""
        raise NotImplementedError(f"space {self.name!r} has no relaxation")

    def discretize(self, weights: np.ndarray) -> np.ndarray:
        """Path codes ``[P]`` of the cell a relaxation's op weights ``[E, K]`` select."""
        raise NotImplementedError(f"space {self.name!r} has no relaxation")

    def supernet_graph(self) -> SupernetGraph:
        """The supernet cell as a graph with an op node per relaxed edge (``SupernetGraph``),
        in which path codes and relaxations of them are read alike."""
        raise NotImplementedError(f"space {self.name!r} has no relaxation")

    def live_ops(self, codes: Sequence[int]) -> list[str]:
        """Names of the ops on some input-to-output path of the cell ``codes``."""
        raise NotImplementedError(f"space {self.name!r} has no path codes")

    def normal_live_ops(self, codes: Sequence[int]) -> list[str]:
        """``live_ops`` of the normal cell, where the known collapse of weight-sharing
        searches shows (a cell of skips and pools); spaces with one cell: all of them."""
        return self.live_ops(codes)

    def canonical(self, arch: A) -> A:
        """The one cell a group of cells that hash alike is represented by wherever a value
        is computed once per hash (the cell itself where the space has no rule)."""
        return arch

    def prune(self, arch: A) -> A:
        """``arch`` with every op off the input-to-output paths removed (such an op computes
        on zeros: it costs FLOPs and adds nothing); the cell itself where the space has no
        such ops."""
        return arch

    @abstractmethod
    def neighbours(self, arch: A) -> list[A]:
        """Every valid architecture one edit away (one op or one edge changed)."""

    def mutate(self, arch: A, rng: np.random.Generator) -> A:
        """A random valid neighbour of ``arch``."""
        nbs, own = self.neighbours(arch), self.hash(arch)
        options = [n for n, h in zip(nbs, self.hash_many(nbs), strict=True) if h != own]
        if not options:
            return arch
        return options[int(rng.integers(len(options)))]

    # -- enumeration ------------------------------------------------------------------------
    @property
    def size(self) -> int | None:
        """Number of cells ``enumerate`` yields when known, else ``None`` (on edge-cell
        spaces op strings, several of which may hash alike: ``distinct_cells``)."""
        return None

    def distinct_cells(self) -> int | None:
        """Number of distinct cells (hashes) when known, else ``None``."""
        return self.size

    @property
    def enumerable(self) -> bool:
        """Whether ``enumerate`` is practical (the whole space can be scored at once)."""
        return self.size is not None

    def enumerate(self) -> list[A]:
        """Every cell of the space: ``size`` of them, one per canonical hash on node-op
        spaces but every op string on edge-cell spaces (nb201: all 15,625, which hash to
        8,765 distinct cells; ``distinct_cells``), so callers that need one per hash keep
        the first of each (``CandidateSet`` does)."""
        raise NotImplementedError(f"space {self.name!r} cannot be enumerated")

    # -- tensors ----------------------------------------------------------------------------
    @abstractmethod
    def to_graphs(self, archs: Sequence[A]) -> GraphBatch:
        """Dense graph tensors of ``archs`` (see ``GraphBatch``)."""
