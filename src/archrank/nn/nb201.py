"""The NAS-Bench-201 network (Dong & Yang, ICLR 2020) for any cell of the space.

Skeleton: stem (3x3 conv, ``channels`` filters, BN), then ``num_stages`` stages of
``cells_per_stage`` copies of the cell, separated by residual reduction blocks (ResNet basic
block, stride 2) that double the channels, then BN + ReLU, global average pooling and a linear
classifier. At ``channels=16, cells_per_stage=5, num_stages=3`` this is the benchmark network.

The cell is a DAG of 4 nodes; node j is the sum over i < j of op_ij(node i), the cell's output
is node 3. Edge order follows the official string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``:
(0->1), (0->2), (1->2), (0->3), (1->3), (2->3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from archrank.errors import InvalidArchitecture
from archrank.nn.ops import ReLUConvBN, ResidualReduction, avgpool, batchnorm, conv, dims
from archrank.nn.ops import global_avgpool as _global_avgpool

NB201_OPS: tuple[str, ...] = (
    "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3",
)
NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def check_nb201_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """The six edge ops as a tuple, or ``InvalidArchitecture`` naming what is wrong."""
    ops = tuple(ops)
    if len(ops) != len(NB201_EDGES):
        raise InvalidArchitecture(f"an NB201 cell has 6 edge ops, got {len(ops)}")
    for op in ops:
        if op not in NB201_OPS:
            raise InvalidArchitecture(
                f"unknown NB201 op {op!r}; expected one of {', '.join(NB201_OPS)}"
            )
    return ops


def edge_op(name: str, channels: int, input_kind: str) -> nn.Module:
    """The module of one NB201 edge op (``none`` has none: the edge is left out)."""
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(input_kind, channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(input_kind, channels, channels, 3)
    if name == "avg_pool_3x3":
        return avgpool(input_kind, 3, 1, padding=1, count_include_pad=False)
    raise AssertionError(name)  # "none" edges are never built


class NB201Cell(nn.Module):
    """One NB201 cell; ``none`` edges are left out (they contribute exact zeros)."""

    def __init__(self, ops: Sequence[str], channels: int, input_kind: str = "2d") -> None:
        super().__init__()
        ops = check_nb201_ops(ops)
        self.ops = ops
        self.edges = [(i, j) for (i, j), op in zip(NB201_EDGES, ops, strict=True)
                      if op != "none"]
        self.layers = nn.ModuleList(
            edge_op(op, channels, input_kind) for op in ops if op != "none"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x, None, None, None]
        for j in (1, 2, 3):
            terms = [layer(nodes[i]) for (i, dst), layer in zip(self.edges, self.layers,
                                                                strict=True) if dst == j]
            nodes[j] = sum(terms[1:], terms[0]) if terms else torch.zeros_like(x)
        return nodes[3]


class NB201Network(nn.Module):
    """The NB201 macro skeleton around one cell (see the module docstring).

    ``make_cell(channels, input_kind)`` builds each cell module (default: ``NB201Cell`` of
    ``ops``); the weight-sharing supernet (``archrank.oneshot``) passes its super-cell here, so
    a sub-network of the supernet and the stand-alone network are one skeleton, parameter
    names included.
    """

    def __init__(
        self,
        ops: Sequence[str] | None,
        *,
        channels: int = 16,
        cells_per_stage: int = 5,
        num_stages: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        input_kind: str = "2d",
        make_cell: Callable[[int, str], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        dims(input_kind)  # validates
        if make_cell is None:
            self.ops: tuple[str, ...] | None = check_nb201_ops(ops or ())
            cell_ops = self.ops

            def make_cell(c: int, kind: str) -> nn.Module:
                return NB201Cell(cell_ops, c, kind)
        else:
            self.ops = None
        self.input_kind = input_kind
        self.stem = nn.Sequential(
            conv(input_kind, in_channels, channels, 3, padding=1),
            batchnorm(input_kind, channels),
        )
        layers: list[nn.Module] = []
        c = channels
        for stage in range(num_stages):
            if stage > 0:
                layers.append(ResidualReduction(input_kind, c, 2 * c))
                c *= 2
            layers.extend(make_cell(c, input_kind) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(batchnorm(input_kind, c), nn.ReLU(inplace=False))
        self.global_pool = _global_avgpool(input_kind)
        self.classifier = nn.Linear(c, num_classes)

    def head(self, out: torch.Tensor) -> torch.Tensor:
        """Last BN + ReLU, global pooling and the classifier."""
        out = self.lastact(out)
        return self.classifier(torch.flatten(self.global_pool(out), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x)))
