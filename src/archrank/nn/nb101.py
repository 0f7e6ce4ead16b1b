"""The NAS-Bench-101 network (Ying et al., ICML 2019) for any cell of the space.

Skeleton: stem (3x3 conv-BN-ReLU, ``stem_channels`` filters), ``num_stacks`` stacks of
``cells_per_stack`` cells with 2x2 max pooling between stacks and the channels doubled at each
new stack, global average pooling and a dense classifier. At ``stem_channels=128,
num_stacks=3, cells_per_stack=3`` on 3x32x32 inputs this is the benchmark network (its
parameter counts equal the benchmark's, see tests/test_nn.py).

Inside a cell the output channels are split among the vertices feeding the output (their
outputs are concatenated), following the benchmark's channel rule (``vertex_channels``):
interior vertices fed by the input get a 1x1 projection of it, other inputs of a vertex are
truncated to its channel count and summed, and an input->output edge adds a 1x1 projection of
the input to the concatenation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from archrank.errors import InvalidArchitecture
from archrank.nn.ops import ConvBNReLU, dims, global_avgpool, maxpool
from archrank.spaces.graph_hash import prune

NB101_OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
_KERNEL = {"conv3x3-bn-relu": 3, "conv1x1-bn-relu": 1}


def check_nb101_cell(matrix: Sequence[Sequence[int]] | np.ndarray,
                     ops: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Validate and prune a cell; returns ``(matrix, ops)`` or raises ``InvalidArchitecture``."""
    m = np.asarray(matrix, dtype=np.int64)
    ops = list(ops)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InvalidArchitecture(f"NB101 adjacency must be square, got shape {m.shape}")
    n = m.shape[0]
    if len(ops) != n:
        raise InvalidArchitecture(f"NB101 cell has {n} vertices but {len(ops)} ops")
    if n < 2 or ops[0] != "input" or ops[-1] != "output":
        raise InvalidArchitecture("NB101 ops must start with 'input' and end with 'output'")
    bad = [op for op in ops[1:-1] if op not in NB101_OPS]
    if bad:
        raise InvalidArchitecture(
            f"unknown NB101 op {bad[0]!r}; expected one of {', '.join(NB101_OPS)}")
    if not np.isin(m, (0, 1)).all() or np.tril(m).any():
        raise InvalidArchitecture("NB101 adjacency must be 0/1 and strictly upper triangular")
    pruned = prune(m, ops)
    if pruned is None:
        raise InvalidArchitecture("NB101 cell has no path from input to output")
    return np.asarray(pruned[0], dtype=np.int64), list(pruned[1])


def vertex_channels_batch(in_channels: int, out_channels: int,
                          matrices: np.ndarray) -> np.ndarray:
    """Channels of every vertex of a batch of pruned cells with the same vertex count.

    ``matrices`` is ``[B, n, n]``; returns ``int64 [B, n]``. The benchmark's rule: the
    output's channels are split evenly among the interior vertices feeding it (the first
    ``out % k`` of them get one more), and every other interior vertex takes the largest
    channel count among its interior successors.
    """
    m = np.asarray(matrices, dtype=bool)
    b, n, _ = m.shape
    vc = np.zeros((b, n), dtype=np.int64)
    vc[:, 0] = in_channels
    vc[:, n - 1] = out_channels
    if n == 2:
        return vc
    feeds = m[:, 1 : n - 1, n - 1]  # interior vertex -> output
    k = np.maximum(feeds.sum(axis=1), 1)
    base, extra = out_channels // k, out_channels % k
    order = np.cumsum(feeds, axis=1) - 1  # rank among the feeding vertices
    vc[:, 1 : n - 1] = np.where(feeds, base[:, None] + (order < extra[:, None]), 0)
    for v in range(n - 3, 0, -1):
        succ = np.where(m[:, v, v + 1 : n - 1], vc[:, v + 1 : n - 1], 0).max(axis=1)
        vc[:, v] = np.where(feeds[:, v - 1], vc[:, v], np.maximum(vc[:, v], succ))
    return vc


def vertex_channels(in_channels: int, out_channels: int, matrix: np.ndarray) -> list[int]:
    """``vertex_channels_batch`` for one cell."""
    return vertex_channels_batch(in_channels, out_channels, np.asarray(matrix)[None])[0].tolist()


class NB101Cell(nn.Module):
    """One NB101 cell mapping ``c_in`` to ``c_out`` channels (same spatial size)."""

    def __init__(self, matrix: np.ndarray, ops: Sequence[str], c_in: int, c_out: int,
                 input_kind: str = "2d", bn_momentum: float = 0.1, bn_eps: float = 1e-5) -> None:
        super().__init__()
        m = np.asarray(matrix, dtype=bool)
        n = m.shape[0]
        self.n = n
        self.matrix = m.tolist()
        self.channels = vertex_channels(c_in, c_out, m)
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        self.proj = nn.ModuleDict({
            str(t): ConvBNReLU(input_kind, c_in, self.channels[t], 1, **bn)
            for t in range(1, n - 1) if m[0, t]
        })
        self.vertex_ops = nn.ModuleList()
        for t in range(1, n - 1):
            if ops[t] == "maxpool3x3":
                self.vertex_ops.append(maxpool(input_kind, 3, 1, padding=1))
            else:
                ch = self.channels[t]
                self.vertex_ops.append(ConvBNReLU(input_kind, ch, ch, _KERNEL[ops[t]], **bn))
        self.out_proj = ConvBNReLU(input_kind, c_in, c_out, 1, **bn) if m[0, n - 1] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, n, ch = self.matrix, self.n, self.channels
        tensors = [x]
        to_output = []
        for t in range(1, n - 1):
            terms = [tensors[s][:, : ch[t]] for s in range(1, t) if m[s][t]]
            if m[0][t]:
                terms.append(self.proj[str(t)](x))
            value = self.vertex_ops[t - 1](sum(terms[1:], terms[0]))
            tensors.append(value)
            if m[t][n - 1]:
                to_output.append(value)
        if not to_output:
            assert self.out_proj is not None
            return self.out_proj(x)
        out = torch.cat(to_output, 1) if len(to_output) > 1 else to_output[0]
        if self.out_proj is not None:
            out = out + self.out_proj(x)
        return out


class NB101Network(nn.Module):
    """The NB101 macro skeleton around one cell (see the module docstring)."""

    def __init__(
        self,
        matrix: Sequence[Sequence[int]] | np.ndarray,
        ops: Sequence[str],
        *,
        stem_channels: int = 128,
        num_stacks: int = 3,
        cells_per_stack: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        input_kind: str = "2d",
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        dims(input_kind)
        m, ops = check_nb101_cell(matrix, ops)
        self.matrix, self.ops = m, tuple(ops)
        self.input_kind = input_kind
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        self.stem = ConvBNReLU(input_kind, in_channels, stem_channels, 3, **bn)
        layers: list[nn.Module] = []
        c_in = c = stem_channels
        for stack in range(num_stacks):
            if stack > 0:
                # TensorFlow's "same" 2x2/2 pooling rounds odd sizes up.
                layers.append(maxpool(input_kind, 2, 2, ceil_mode=True))
                c *= 2
            for _ in range(cells_per_stack):
                layers.append(NB101Cell(m, ops, c_in, c, input_kind, **bn))
                c_in = c
        self.cells = nn.Sequential(*layers)
        self.global_pool = global_avgpool(input_kind)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.cells(self.stem(x))
        return self.classifier(torch.flatten(self.global_pool(out), 1))
