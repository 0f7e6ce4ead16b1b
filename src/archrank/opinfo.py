"""What each operation of a search space computes, as a feature vector (GATES++'s op-level
information).

A predictor that only learns a free embedding per op knows nothing of an op it has seen in few
labelled cells; one built from these features starts with similar embeddings for ops that
compute similar things (a 1x1 and a 3x3 convolution, average and max pooling). ``op_features
(space)`` describes every op of the vocabulary GATES gates with (edge ops on nb201, node ops,
input and output included, on nb101, nbgraph and darts):

family       one-hot: zero, identity, conv, pool, input, output, linear, graph_conv, attention
aggregation  one-hot: how the op combines its inputs (none, sum, mean, max, sym_norm,
             attention): a convolution sums over its window, average / max pooling take the
             mean / max, the GNN ops of nbgraph their own neighbourhood aggregation
kernel       window size (0 where none), divided by 3
dilation     the window's dilation (2 for darts's dilated convolutions), 0 where none
separable    1 for depth-wise separable convolutions (darts's sep_conv and dil_conv)
has_params   whether the op has weights
hops         graph hops the op reaches (ChebConv K=2), 1 for other message passing
weights      weight matrices of the op, divided by 3 (GIN's MLP has 2, ARMA 3, SAGE 2, ...)
root         1 when a node's own state gets a weight of its own next to its neighbours'
             (SAGE, GraphConv, ARMA, Chebyshev's T0 term), 0 when it is summed with them
             (GIN's (1 + eps) x, GCN's and GAT's self-loops)
params       parameters and
flops        multiply-accumulates the op adds to the benchmark network where it sits
             (``archrank.nn`` counting: on nb201 one edge of every cell at C=16, N=5,
             3x32x32; on nb101 one vertex of every cell at 128 channels, 3 cells per stack,
             vertex width = its stack's width), scaled to the largest op of the space, as
             ``log1p`` (``costs="log"``) or as a plain fraction (``costs="linear"``: a 1x1
             convolution about 1/9 of a 3x3, where the log scale makes it 0.86 of it and the
             two rows near duplicates); nbgraph has no network skeleton here, so its two
             columns are relative (``weights`` for both); on darts one op of a normal
             cell of the first stage (C=36, 32x32)
reduces      (darts only) 1 for the reduction cell's output node
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from archrank.errors import ArchrankError

FAMILIES = ("zero", "identity", "conv", "pool", "input", "output", "linear", "graph_conv",
            "attention")
AGGREGATIONS = ("none", "sum", "mean", "max", "sym_norm", "attention")
NUMERIC = ("kernel", "dilation", "separable", "has_params", "hops", "weights", "root",
           "params", "flops")
COLUMNS = (*(f"family_{f}" for f in FAMILIES), *(f"agg_{a}" for a in AGGREGATIONS), *NUMERIC)

# op -> (family, aggregation, kernel, separable, hops, weight matrices); root: _ROOT
_OPS: dict[str, tuple[str, str, int, int, int, int]] = {
    # nb201 (ops on edges)
    "none": ("zero", "none", 0, 0, 0, 0),
    "skip_connect": ("identity", "none", 0, 0, 0, 0),
    "nor_conv_1x1": ("conv", "sum", 1, 0, 0, 1),
    "nor_conv_3x3": ("conv", "sum", 3, 0, 0, 1),
    "avg_pool_3x3": ("pool", "mean", 3, 0, 0, 0),
    # nb101 (ops on nodes)
    "input": ("input", "none", 0, 0, 0, 0),
    "output": ("output", "sum", 0, 0, 0, 0),  # sums / concatenates its inputs
    "conv3x3-bn-relu": ("conv", "sum", 3, 0, 0, 1),
    "conv1x1-bn-relu": ("conv", "sum", 1, 0, 0, 1),
    "maxpool3x3": ("pool", "max", 3, 0, 0, 0),
    # nbgraph (PyG layers of NAS-Bench-Graph)
    "gat": ("attention", "attention", 0, 0, 1, 1),
    "gcn": ("graph_conv", "sym_norm", 0, 0, 1, 1),
    "gin": ("graph_conv", "sum", 0, 0, 1, 2),
    "cheb": ("graph_conv", "sym_norm", 0, 0, 2, 2),
    "sage": ("graph_conv", "mean", 0, 0, 1, 2),
    "arma": ("graph_conv", "sym_norm", 0, 0, 1, 3),
    "graph": ("graph_conv", "sum", 0, 0, 1, 2),
    "fc": ("linear", "none", 0, 0, 0, 1),
    "skip": ("identity", "none", 0, 0, 0, 0),
    # darts (ops on nodes; skip_connect and avg pooling as on nb201): a separable convolution
    # is applied twice (depth-wise + point-wise, twice: 4 weight matrices), a dilated one once;
    # each cell's output node concatenates its intermediate nodes
    "max_pool_3x3": ("pool", "max", 3, 0, 0, 0),
    "sep_conv_3x3": ("conv", "sum", 3, 1, 0, 4),
    "sep_conv_5x5": ("conv", "sum", 5, 1, 0, 4),
    "dil_conv_3x3": ("conv", "sum", 3, 1, 0, 2),
    "dil_conv_5x5": ("conv", "sum", 5, 1, 0, 2),
    "normal_concat": ("output", "sum", 0, 0, 0, 0),
    "reduce_concat": ("output", "sum", 0, 0, 0, 0),
}
# ops that compute something else in one space: darts's output node only joins the two
# cells' output nodes in the graph (the network computes nothing there)
_SPACE_OPS: dict[str, dict[str, tuple[str, str, int, int, int, int]]] = {
    "darts": {"output": ("output", "none", 0, 0, 0, 0)}}
_DILATION = {"dil_conv_3x3": 2, "dil_conv_5x5": 2}  # other windowed ops: 1
# an extra column for spaces with reduction cells (darts): which output node halves the
# resolution. Appended only there, so the other spaces' tables (and the saved predictors
# built on them) keep their shape.
_REDUCES = frozenset({"reduce_concat"})


_ROOT = frozenset({"sage", "graph", "arma", "cheb"})


@dataclass(frozen=True)
class OpTable:
    """Feature rows of a space's ops, in the order of its op vocabulary."""

    space: str
    ops: tuple[str, ...]
    columns: tuple[str, ...]
    matrix: np.ndarray  # float32 [len(ops), len(columns)]

    def row(self, op: str) -> dict[str, float]:
        return dict(zip(self.columns, self.matrix[self.ops.index(op)].tolist(), strict=True))


def _costs_nb201(ops: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Params and MACs one edge of every cell adds to the benchmark NB201 network."""
    from archrank.nn.counting import nb201_costs

    cells = [[op] + ["none"] * 5 for op in ops] + [["none"] * 6]
    costs = nb201_costs(cells)
    base_p, base_f = costs["params"][-1], costs["flops"][-1]
    return {op: (float(costs["params"][i] - base_p), float(costs["flops"][i] - base_f))
            for i, op in enumerate(ops)}


def _costs_nb101(ops: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Params and MACs one vertex of every cell adds to the benchmark NB101 network, the
    vertex as wide as its stack (128, 256, 512 channels at 32, 16, 8 pixels; 3 cells each)."""
    from archrank.nn import BENCHMARK_SIZE
    from archrank.nn.counting import count_flops, count_params
    from archrank.nn.ops import ConvBNReLU

    size = BENCHMARK_SIZE["nb101"]
    out = {}
    for op in ops:
        family, _, kernel, *_ = _OPS[op]
        params = flops = 0.0
        if family == "conv":
            c, px = size["width"], 32
            for _ in range(3):
                layer = ConvBNReLU("2d", c, c, kernel)
                params += size["depth"] * count_params(layer)
                flops += size["depth"] * count_flops(layer, (c, px, px))
                c, px = 2 * c, px // 2
        out[op] = (params, flops)
    return out


def _costs_darts(ops: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Params and MACs of one op of a normal cell of the benchmark DARTS network's first stage
    (C=36 channels at 32x32, stride 1; what an op costs elsewhere scales alike)."""
    from archrank.nn import BENCHMARK_SIZE
    from archrank.nn.counting import count_flops, count_params
    from archrank.nn.darts import darts_op

    c = BENCHMARK_SIZE["darts"]["width"]
    out = {}
    for op in ops:
        if _OPS[op][0] in ("conv", "pool", "identity"):
            module = darts_op(op, "2d", c, 1)
            out[op] = (float(count_params(module)), float(count_flops(module, (c, 32, 32))))
        else:
            out[op] = (0.0, 0.0)
    return out


COST_SCALES = ("log", "linear")


def op_features(space: Any, costs: str = "log") -> OpTable:
    """The feature table of ``space``'s op vocabulary (see the module docstring).

    ``costs``: how the ``params`` / ``flops`` columns are scaled to the largest op: ``log``
    (``log1p``) or ``linear`` (a plain fraction, so a 1x1 convolution is about 1/9 of a 3x3
    one rather than 0.86 of it on the log scale)."""
    if costs not in COST_SCALES:
        raise ArchrankError(f"op cost scale must be one of {', '.join(COST_SCALES)}, "
                            f"not {costs!r}")
    ops = tuple(space.edge_op_names if space.op_on == "edge" else space.node_op_names)
    described = {**_OPS, **_SPACE_OPS.get(space.name, {})}
    unknown = [op for op in ops if op not in described]
    if unknown:
        raise ArchrankError(f"no op description for {unknown[0]!r} of space {space.name!r}")
    if space.name == "nb201":
        raw = _costs_nb201(ops)
    elif space.name == "nb101":
        raw = _costs_nb101(ops)
    elif space.name == "darts":
        raw = _costs_darts(ops)
    else:  # no skeleton: relative cost from the weight matrices
        raw = {op: (float(described[op][5]), float(described[op][5])) for op in ops}
    scale = math.log1p if costs == "log" else float
    top_p = max(scale(p) for p, _ in raw.values()) or 1.0
    top_f = max(scale(f) for _, f in raw.values()) or 1.0
    rows = []
    for op in ops:
        family, agg, kernel, separable, hops, weights = described[op]
        params, flops = raw[op]
        numeric = [kernel / 3, float(_DILATION.get(op, 1) if kernel > 0 else 0),
                   float(separable), float(weights > 0),
                   float(hops), weights / 3, float(op in _ROOT), scale(params) / top_p,
                   scale(flops) / top_f]
        rows.append([float(f == family) for f in FAMILIES]
                    + [float(a == agg) for a in AGGREGATIONS] + numeric)
    columns = COLUMNS
    if any(op in _REDUCES for op in ops):
        columns = (*COLUMNS, "reduces")
        rows = [[*row, float(op in _REDUCES)] for row, op in zip(rows, ops, strict=True)]
    return OpTable(space.name, ops, columns, np.asarray(rows, dtype=np.float32))
