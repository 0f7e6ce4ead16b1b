"""NAS-Bench-201 (NATS-Bench topology) cell space: 4 nodes, 6 edges, 5 ops, 15,625 cells.

The official cell string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` lists, for nodes 1..3, the op
on the edge from every earlier node. Everything else (hashing, sampling, tensors) is the
generic ``EdgeCellSpace``.
"""

from __future__ import annotations

from archrank.spaces.edge_cell import EdgeCell, EdgeCellSpace

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


class NB201Space(EdgeCellSpace):
    """The NAS-Bench-201 cell space (operation on edge)."""

    name = "nb201"
    description = "NAS-Bench-201 / NATS-Bench topology cells (op on edge, 4 nodes)"

    def __init__(self) -> None:
        super().__init__(NB201_OPS, 4)


__all__ = ["NB201_OPS", "EdgeCell", "NB201Space"]
