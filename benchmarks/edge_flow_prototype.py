"""Op-level information in context (session 18): each op's SynFlow path flow where it sits in
one cell, scaling that edge's GATES gate. Measured on nb201 at 50 labels and not kept
(docs/benchmarks.md, "Session 18: op-level information in context").

The op feature rows of ``archrank.opinfo`` are one row per op, and on nb201 five affinely
independent rows, so a projection of them can only move where the free op embedding starts.
Information about an op that differs from cell to cell cannot be re-learned that way. The
signal tried here is the path flow through each edge: with SynFlow's linearised network (all
weights made positive, batch norm removed, float64, an all-ones input, ``R`` the sum of the
outputs), ``flow_e = sum |out_e * dR/dout_e|`` over the copies of the cell in the network.
It is zero for ``none`` edges and for edges off every input-to-output path. Its value is
``log1p``. Each GATES layer multiplies the gate of edge ``e`` by ``exp(s_e V)``; ``V`` is a
learned [1, D] matrix, initialised at zero (``edge_init=0``) or at N(0, edge_init).

    # 1. the flows of the 15,625 rows of nb201.csv at the small zc setting (C=8, N=1,
    #    3x16x16; about 0.011 s a cell), into a copy of the table OUTSIDE the project
    python benchmarks/edge_flow_prototype.py flows ../shared/data/nb201.csv /tmp/nb201_flow.csv
    # 2. GATES++ with op-level information only, the flows as the edges' signals
    python benchmarks/edge_flow_prototype.py bench predictor --space nb201 \\
        --bench /tmp/nb201_flow.csv --metric cifar10_test --predictors gates++e \\
        --train-sizes 50 --seeds 10 \\
        --set "gates++e.arch_inputs=eflow_0,eflow_1,eflow_2,eflow_3,eflow_4,eflow_5" \\
        [--set gates++e.edge_init=0.3] --json out.json
"""

from __future__ import annotations

import csv
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from archrank.nn.nb201 import NB201_EDGES, NB201Cell
from archrank.predictors.base import register
from archrank.predictors.gates import GatesLayer, GatesNet
from archrank.predictors.gates_pp import GatesPPNet, GatesPPPredictor
from archrank.zc import _remove_batchnorm
from archrank.zccache import ZCSetting

N_EDGES = len(NB201_EDGES)


def edge_flows(setting: ZCSetting, ops: list[str]) -> np.ndarray:
    """``log1p`` of the path flow through each of the cell's six edges [6]."""
    net = setting.network(ops).double()
    _remove_batchnorm(net)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    outs: list[tuple[int, torch.Tensor]] = []

    def keep(k: int) -> Any:
        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
            out = out * 1.0  # a tensor of this edge's own (skip edges return their input)
            if out.requires_grad:  # an edge fed by nothing carries no flow
                out.retain_grad()
                outs.append((k, out))
            return out
        return hook

    for cell in net.modules():
        if isinstance(cell, NB201Cell):
            live = [k for k, op in enumerate(cell.ops) if op != "none"]
            for k, layer in zip(live, cell.layers, strict=True):
                layer.register_forward_hook(keep(k))
    net(torch.ones((1, *setting.input_shape), dtype=torch.float64)).sum().backward()
    flow = np.zeros(N_EDGES)
    for k, out in outs:
        if out.grad is not None:
            flow[k] += float((out * out.grad).abs().sum().detach())
    return np.log1p(flow)


def _flows_of(archs: list[str]) -> np.ndarray:
    torch.set_num_threads(1)
    setting = ZCSetting.named("nb201", "small")
    return np.stack([edge_flows(setting, [t.split("~")[0] for t in a.split("|")
                                          if t and t != "+"]) for a in archs])


def write_flows(table: str, out: str, workers: int = 2) -> None:
    """``table`` (nb201.csv) with the six ``eflow_k`` columns added, written to ``out``."""
    with open(table, newline="") as f:
        rows = list(csv.reader(f))
    col = rows[0].index("arch")
    archs = [r[col] for r in rows[1:]]
    parts = [archs[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        done = list(pool.map(_flows_of, parts))
    flows = np.empty((len(archs), N_EDGES))
    for i, part in enumerate(done):
        flows[i::workers] = part
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(rows[0] + [f"eflow_{k}" for k in range(N_EDGES)])
        for row, flow in zip(rows[1:], flows, strict=True):
            writer.writerow(row + [f"{v:.6f}" for v in flow])


class EdgeSignalLayer(GatesLayer):
    """A GATES layer whose edge gates are scaled by ``exp(s_e V)``."""

    def edge_gates(self, edges: dict[str, Any], table: torch.Tensor) -> torch.Tensor:
        gates = super().edge_gates(edges, table)
        return gates * torch.exp(self.edge_signal(edges["edge_signal"]))


class EdgeSignalGates(GatesNet):
    """GatesNet whose layers read ``edge_signal`` [E, B, 1], set before ``embed``."""

    signal: torch.Tensor

    def edge_inputs(self, g: Any) -> dict[str, Any]:
        return {**super().edge_inputs(g), "edge_signal": self.signal}


class EdgeSignalNet(GatesPPNet):
    """The first six arch inputs are the edges' signals; the rest go to the head as usual."""

    def __init__(self, *, gates: dict[str, Any], n_arch: int, edge_init: float,
                 **kw: Any) -> None:
        super().__init__(gates=gates, n_arch=n_arch - N_EDGES, **kw)
        self.gates = EdgeSignalGates(mlp_hidden=1, mlp_layers=0, dropout=0.0, **gates)
        del self.gates.head
        for layer in self.gates.layers:
            layer.__class__ = EdgeSignalLayer
            layer.edge_signal = nn.Linear(1, layer.transform.weight.shape[0], bias=False)
            nn.init.normal_(layer.edge_signal.weight, 0.0, edge_init) if edge_init else \
                nn.init.zeros_(layer.edge_signal.weight)

    def forward(self, g: Any, arch: torch.Tensor | None = None, with_aux: bool = False) -> Any:
        assert arch is not None
        self.gates.signal = arch[:, :N_EDGES].t().unsqueeze(-1)
        return super().forward(g, arch[:, N_EDGES:], with_aux)


class EdgeSignalGatesPP(GatesPPPredictor):
    """GATES++ with each edge's signal scaling its gate (see the module docstring)."""

    name: ClassVar[str] = "gates++e"
    defaults: ClassVar[dict[str, Any]] = {**GatesPPPredictor.defaults, "edge_init": 0.0}

    def build_model(self) -> nn.Module:
        base = super().build_model()  # GATES++'s network, for its settings and op features
        hp, layer = self.hp, base.gates.layers[0]
        gates = {"op_on": "edge", "n_ops": layer.op_emb.num_embeddings,
                 "op_dim": int(hp["op_dim"]), "dim": int(hp["dim"]),
                 "layers": int(hp["layers"]), "readout": self.readout(),
                 "activation": str(hp["activation"]),
                 "op_features": getattr(layer, "op_features", None), "num_inputs": 1}
        net = EdgeSignalNet(gates=gates, n_arch=len(self.arch_inputs),
                            edge_init=float(hp["edge_init"]),
                            arch_hidden=int(hp["arch_hidden"]), n_aux=len(self.aux_targets),
                            mlp_hidden=int(hp["mlp_hidden"]),
                            mlp_layers=int(hp["mlp_layers"]), dropout=float(hp["dropout"]))
        net.gates.load_state_dict(base.gates.state_dict(), strict=False)  # the same start
        return net


if __name__ == "__main__":
    if sys.argv[1:2] == ["flows"]:
        write_flows(sys.argv[2], sys.argv[3])
        sys.exit(0)
    register("gates++e", f"{__name__}:EdgeSignalGatesPP")
    from archrank.cli import run

    sys.exit(run(sys.argv[1:]))
