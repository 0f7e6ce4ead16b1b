"""NAS-Bench-101 (Ying et al., ICML 2019): the op-on-node cell space of the benchmark.

A cell has at most 7 vertices and 9 edges; interior vertices are 3x3 or 1x1 conv-bn-relu or
3x3 max-pool.  The canonical hash is the benchmark's own module hash, so it is the key of the
official tables; the space holds exactly 423,624 unique cells.
"""

from __future__ import annotations

from typing import ClassVar

from archrank.spaces.node_cell import Cell, NodeCellSpace

NB101_OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
NB101_SIZE = 423_624


class NB101Space(NodeCellSpace):
    """The NAS-Bench-101 cell space (``NodeCellSpace`` with the benchmark's config)."""

    name: ClassVar[str] = "nb101"
    description: ClassVar[str] = "NAS-Bench-101: ops on <= 7 nodes, <= 9 edges"

    def __init__(self) -> None:
        super().__init__(
            ops=NB101_OPS,
            max_vertices=7,
            max_edges=9,
            name="nb101",
            description=self.description,
            size=NB101_SIZE,
        )


__all__ = ["NB101_OPS", "NB101_SIZE", "Cell", "NB101Space"]
