"""GATES: the graph-based encoding of Ning et al. (ECCV 2020), "A Generic Graph-based Neural
Architecture Encoding Scheme for Predictor-based NAS".

An operation is a transformation of the information flowing through the cell, not a node
feature. The input node emits a learned "information" vector (each input node its own, in
spaces whose cells read several inputs); along the DAG, in topological order, every node
sums what its predecessors send (each message linearly transformed by ``W_x``), and an
operation multiplies the information it processes by a gate
``sigmoid(emb(op) W_o)``:

* operation on node (nb101, nbgraph): ``x_j = sigmoid(emb(op_j) W_o) * sum_i adj_ij x_i W_x``;
* operation on edge (nb201): ``x_j = sum_i adj_ij sigmoid(emb(op_ij) W_o) * (x_i W_x)``, where
  ``none`` edges have ``adj = 0`` (they block) and the others learn their own gate.

Several such passes are stacked: pass ``l`` also adds the node's state from pass ``l - 1``
(transformed by ``W_r``, after a ReLU), so later passes refine what earlier ones computed. The
cell's embedding concatenates, over the passes, the output node's state (and, on op-on-node
spaces, the mean state of the cell's nodes); an MLP head turns it into a score. Because a
node only sums over its predecessors and nodes are processed in a topological order,
relabelling nodes consistently (an isomorphic cell) gives the same score.

Everything is batched: tensors are node-major [N, B, D] and the only Python loops run over
the few node positions and layers, never over architectures. Gates depend on the op only, so
each layer computes a small [num_ops, D] gate table and spreads it with one-hot products.
Inference (no autograd) takes separate paths: op-on-edge cells a pass that writes into
preallocated buffers; op-on-node cells rows (``gates_rows``), where each distinct node state of
the batch is computed once (the nodes that read only input nodes are the same in many cells).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from archrank.errors import ArchrankError
from archrank.executors import available_cores
from archrank.predictors.gates_rows import CellRows, RowProgram, plan_rows
from archrank.predictors.neural import NeuralPredictor
from archrank.spaces.base import GraphBatch, SearchSpace

READOUTS = ("output", "concat", "concat_mean")
ACTIVATIONS = ("relu", "tanh", "none")


def incoming_edges(n: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Pairs i < j of ``n`` nodes ordered by target: (sources, targets, offset of each j)."""
    src, dst, offsets = [], [], [0] * (n + 1)
    for j in range(n):
        offsets[j] = len(src)
        src += list(range(j))
        dst += [j] * j
    offsets[n] = len(src)
    return torch.tensor(src, dtype=torch.long), torch.tensor(dst, dtype=torch.long), offsets


class GatesLayer(nn.Module):
    """One topological pass of GATES over a batch of cells.

    Tensors are node-major, [N, B, D], so that one node's states are a contiguous [B, D]
    block (written in place by the inference path).
    """

    def __init__(self, n_ops: int, op_dim: int, dim: int, op_on: str, residual: bool,
                 num_inputs: int = 1, op_features: torch.Tensor | None = None,
                 op_rank: int = 0) -> None:
        super().__init__()
        self.op_on = op_on
        self.op_emb = nn.Embedding(n_ops, op_dim)
        # GATES++: the op embedding is a learned projection of the op's features (what it
        # computes, ``archrank.opinfo``) plus the free embedding above; with ``op_rank`` r > 0
        # it is the features alone through an r-wide bottleneck (the free part held at zero),
        # so that the ops' embeddings span r directions placed by what the ops compute
        self.op_proj: nn.Module | None = None
        if op_features is not None:
            self.register_buffer("op_features", op_features.float().clone())
            width = op_features.shape[1]
            if op_rank > 0:
                self.op_proj = nn.Sequential(nn.Linear(width, op_rank),
                                             nn.Linear(op_rank, op_dim))
                with torch.no_grad():
                    self.op_emb.weight.zero_()
                self.op_emb.weight.requires_grad_(False)
            else:
                self.op_proj = nn.Linear(width, op_dim)
        self.gate = nn.Linear(op_dim, dim)                # W_o (with bias)
        self.transform = nn.Linear(dim, dim, bias=False)  # W_x
        self.input_state = nn.Parameter(torch.randn(dim) / dim**0.5)
        # cells with several inputs (darts: the two previous cells) learn one state per input
        self.num_inputs = int(num_inputs)
        self.extra_inputs = (nn.Parameter(torch.randn(num_inputs - 1, dim) / dim**0.5)
                             if num_inputs > 1 else None)
        self.residual = nn.Linear(dim, dim, bias=False) if residual else None

    def gate_table(self) -> torch.Tensor:
        """``sigmoid(emb(op) W_o)`` of every op [num_ops, D]."""
        emb = self.op_emb.weight
        if self.op_proj is not None:
            emb = emb + self.op_proj(self.op_features)
        return torch.sigmoid(self.gate(emb))

    def forward(self, edges: dict[str, Any], prev: torch.Tensor | None) -> torch.Tensor:
        """States [N, B, D] of every node after one pass; ``prev`` is the last pass's.

        ``edges`` (from ``GatesNet.edge_inputs``) is shared by every layer: per edge i -> j
        (the E pairs i < j, ordered by target) either ``coef`` [E, B] (adjacency, op-on-node)
        or ``edge_onehot`` [E, B, K] (one-hot edge op, all zero where ``adj = 0``), and
        ``node_onehot`` [N, B, K] for op-on-node spaces. Gates come from one-hot products
        rather than index lookups: cheaper to differentiate for these tiny vocabularies.
        Without autograd, op-on-edge spaces take ``_pass_inplace``; op-on-node spaces do not
        come here but go through ``run_rows`` (``GatesNet.embed``).
        """
        table = self.gate_table()
        if self.op_on == "edge":
            weight = self.edge_gates(edges, table)            # [E, B, D]: gate of edge i -> j
            node_gate = None
        else:
            weight = edges["coef"].unsqueeze(-1)              # [E, B, 1]: adj of edge i -> j
            node_gate = edges["node_onehot"] @ table          # [N, B, D]
        res = None
        if self.residual is not None and prev is not None:
            res = (self.residual(prev) if torch.is_grad_enabled()
                   else self._residual_inplace(prev))
        n, batch = edges["n"], edges["batch"]
        x = self.input_state.expand(batch, -1)
        if res is not None:
            x = x + res[0]
        offsets = edges["offsets"]
        if not torch.is_grad_enabled():
            assert node_gate is None, "op-on-node inference runs on rows (run_rows)"
            return self._pass_inplace(x, weight, res, offsets, n)
        # Split / unbind once (their backward is one cat / stack) rather than indexing per
        # node, whose backward would zero-fill a full-size gradient each time.
        w_in = torch.split(weight, [offsets[j + 1] - offsets[j] for j in range(n)])
        gates = node_gate.unbind(0) if node_gate is not None else None
        res_n = res.unbind(0) if res is not None else None
        states, sent = [x], []
        for j in range(1, n):
            sent.append(self.transform(x))
            if j < self.num_inputs:  # another input node: its own learned state
                x = self.extra_inputs[j - 1].expand(batch, -1)  # type: ignore[index]
                if res_n is not None:
                    x = x + res_n[j]
                states.append(x)
                continue
            x = (w_in[j] * torch.stack(sent)).sum(dim=0)  # sum over the j incoming edges
            if gates is not None:
                x = gates[j] * x
            if res_n is not None:
                x = x + res_n[j]
            states.append(x)
        return torch.stack(states)

    def edge_gates(self, edges: dict[str, Any], table: torch.Tensor) -> torch.Tensor:
        """Gate of every edge [E, B, D] from the one-hot edge ops and the gate table (a
        subclass may change it with more of ``edges``: benchmarks/edge_flow_prototype.py)."""
        return edges["edge_onehot"] @ table

    def _residual_inplace(self, prev: torch.Tensor) -> torch.Tensor:
        """``W_r prev`` without autograd; the input nodes' states are the same in every cell
        (learned constants, plus residuals of constants), so their rows are computed once."""
        m = self.num_inputs
        assert self.residual is not None
        out = torch.empty_like(prev)
        torch.matmul(prev[m:], self.residual.weight.t(), out=out[m:])
        out[:m] = torch.matmul(prev[:m, :1], self.residual.weight.t())
        return out

    def _pass_inplace(self, x: torch.Tensor, weight: torch.Tensor, res: torch.Tensor | None,
                      offsets: list[int], n: int) -> torch.Tensor:
        """The same pass without autograd (op-on-edge spaces): preallocated buffers,
        in-place writes."""
        states = x.new_empty(n, x.shape[0], x.shape[1])
        sent = torch.empty_like(states)
        states[0] = x
        w_t = self.transform.weight.t()
        for j in range(1, n):
            if j - 1 < self.num_inputs:  # an input node: one row, the same in every cell
                sent[j - 1] = torch.mm(states[j - 1, :1], w_t)
            else:
                torch.mm(states[j - 1], w_t, out=sent[j - 1])
            if j < self.num_inputs:
                states[j] = self.extra_inputs[j - 1]  # type: ignore[index]
                if res is not None:
                    states[j].add_(res[j])
                continue
            prod = weight[offsets[j]:offsets[j + 1]] * sent[:j]
            torch.sum(prod, dim=0, out=states[j])
            if res is not None:
                states[j].add_(res[j])
        return states

    def run_rows(self, prog: RowProgram, prev: torch.Tensor | None,
                 ext_sent: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over a row program (``gates_rows``, op-on-node spaces, no autograd):
        states and messages [rows, D]. ``prev``: this program's states after the last pass's
        activation; ``ext_sent``: the shared table's messages in this pass."""
        dim = self.transform.weight.shape[0]
        states = self.transform.weight.new_empty(prog.rows, dim)
        sent = torch.empty_like(states)  # rows of nodes without successors stay unset
        states[0] = 0.0
        sent[0] = 0.0
        first = prog.first
        res = None
        if self.residual is not None and prev is not None:  # row r's is res[r - 1]
            res = torch.mm(prev[1:], self.residual.weight.t())
        w_t = self.transform.weight.t()
        if prog.inputs:
            states[1] = self.input_state
            if prog.inputs > 1:
                assert self.extra_inputs is not None
                states[2:first] = self.extra_inputs
            if res is not None:
                states[1:first].add_(res[:prog.inputs])
            torch.mm(states[1:first], w_t, out=sent[1:first])
        gate = F.embedding(prog.ops, self.gate_table())
        for blk in prog.blocks:
            a, b = blk.a, blk.b
            x = None
            if blk.ext is not None:
                assert ext_sent is not None
                x = F.embedding_bag(blk.ext, ext_sent, mode="sum", per_sample_weights=blk.ext_w)
            if blk.own is not None:
                y = F.embedding_bag(blk.own, sent, mode="sum", per_sample_weights=blk.own_w)
                x = y if x is None else x.add_(y)
            assert x is not None
            torch.mul(x, gate[a - first:b - first], out=states[a:b])
            if res is not None:
                states[a:b].add_(res[a - 1:b - 1])
            if blk.stop > a:
                torch.mm(states[a:blk.stop], w_t, out=sent[a:blk.stop])
        return states, sent


def auto_readout(space: SearchSpace) -> str:
    """GATES's ``auto`` readout, chosen by measurement (docs/benchmarks.md): the output node's
    states of every pass (``concat``) on op-on-edge spaces, where the 4-node nb201 cell's
    output node sees everything; with the mean over nodes (``concat_mean``) on op-on-node
    spaces, where it ranked nb101 better."""
    return "concat" if space.op_on == "edge" else "concat_mean"


def op_count(space: SearchSpace) -> int:
    """Size of the op vocabulary GATES gates with: edge ops or node ops."""
    return len(space.edge_op_names if space.op_on == "edge" else space.node_op_names)


def mlp_trunk(width: int, hidden: int, layers: int, dropout: float) -> tuple[nn.Sequential,
                                                                              int]:
    """The hidden layers of GATES's MLP head and their output width."""
    head: list[nn.Module] = []
    for _ in range(layers):
        head += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*head), width


class GatesNet(nn.Module):
    """Stacked GATES passes, output-node readout, MLP head: ``GraphBatch -> scores [B]``."""

    def __init__(self, *, op_on: str, n_ops: int, op_dim: int, dim: int, layers: int,
                 readout: str, mlp_hidden: int, mlp_layers: int, dropout: float,
                 activation: str, num_inputs: int = 1,
                 op_features: torch.Tensor | None = None, op_rank: int = 0) -> None:
        super().__init__()
        self.readout = readout
        self.op_on = op_on
        self.layers = nn.ModuleList(
            GatesLayer(n_ops, op_dim, dim, op_on, residual=k > 0, num_inputs=num_inputs,
                       op_features=op_features, op_rank=op_rank)
            for k in range(layers)
        )
        self.act = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "none": nn.Identity()}[activation]
        if readout not in READOUTS:
            raise ArchrankError(f"unknown readout {readout!r}; choose one of: "
                                f"{', '.join(READOUTS)}")
        width = {"output": dim, "concat": dim * layers, "concat_mean": 2 * dim * layers}[readout]
        self.embed_width = width  # size of ``embed``'s output
        trunk, width = mlp_trunk(width, mlp_hidden, mlp_layers, dropout)
        self.head = nn.Sequential(*trunk, nn.Linear(width, 1))

    @classmethod
    def encoder(cls, space: SearchSpace, *, dim: int, op_dim: int, layers: int, readout: str,
                activation: str = "relu") -> GatesNet:
        """The passes and readout alone, for models that only call ``embed`` (the head is a
        bare linear layer left unused)."""
        return cls(op_on=space.op_on, n_ops=op_count(space), op_dim=op_dim, dim=dim,
                   layers=layers, readout=readout, mlp_hidden=1, mlp_layers=0, dropout=0.0,
                   activation=activation, num_inputs=space.num_inputs)

    def edge_inputs(self, g: GraphBatch) -> dict[str, Any]:
        """Node-major inputs of the layers, computed once per batch (see ``GatesLayer``)."""
        batch, n = g.ops.shape
        src, dst, offsets = incoming_edges(n)
        src, dst = src.to(g.adj.device), dst.to(g.adj.device)
        present = g.adj[:, src, dst].t().contiguous()  # [E, B]
        n_ops = self.layers[0].op_emb.num_embeddings
        out: dict[str, Any] = {"offsets": offsets, "n": n, "batch": batch}
        if self.op_on == "edge":
            assert g.edge_ops is not None
            onehot = F.one_hot(g.edge_ops[:, src, dst].t(), n_ops).to(present.dtype)
            out["edge_onehot"] = onehot * present.unsqueeze(-1)  # none / absent edges: zero
        else:
            out["coef"] = present
            out["node_onehot"] = F.one_hot(g.ops.t(), n_ops).to(present.dtype)
        # which node is the output (the last real one), as a [N, B, 1] selector
        n_real = g.mask.sum(dim=1)
        last = F.one_hot((n_real - 1).clamp(min=0), n).t().to(present.dtype)
        out["output"] = last.unsqueeze(-1)
        first = int(n_real[0]) if batch else 0
        out["last"] = first - 1 if batch and bool((n_real == first).all()) else None
        if self.readout == "concat_mean":
            out["mean"] = (g.mask.t().to(present.dtype) / n_real.clamp(min=1)).unsqueeze(-1)
        return out

    def embed(self, g: GraphBatch | CellRows) -> torch.Tensor:
        """Cell embeddings [B, D'] (output-node state, or its states from every pass).

        Without autograd, op-on-node cells are scored as rows (``gates_rows``: each distinct
        node state once); ``g`` may be a chunk of such a plan, built once for an ensemble."""
        if not torch.is_grad_enabled() and self.op_on == "node":
            if isinstance(g, GraphBatch):
                if len(g) == 0:
                    return self.layers[0].input_state.new_zeros(0, self.embed_width)
                g = plan_rows(g, self.layers[0].num_inputs, len(g))[0]
            return self._embed_rows(g)
        assert isinstance(g, GraphBatch)
        edges = self.edge_inputs(g)
        fast = not torch.is_grad_enabled()
        last = edges["last"] if fast else None
        prev, outs = None, []
        for k, layer in enumerate(self.layers):
            h = layer(edges, prev)  # [N, B, D]
            if last is not None:  # every cell's output is node ``last``: read it
                outs.append(h[last].clone())  # h may be overwritten below
            else:
                outs.append((h * edges["output"]).sum(0))
            if self.readout == "concat_mean":
                outs.append((h * edges["mean"]).sum(0))
            if k + 1 == len(self.layers):
                prev = h
            elif fast and isinstance(self.act, nn.ReLU):
                prev = h.relu_()  # inference: h is not needed any more
            else:
                prev = self.act(h)
        return outs[-1] if self.readout == "output" else torch.cat(outs, dim=-1)

    def _embed_rows(self, part: CellRows) -> torch.Tensor:
        """``embed`` of a chunk of rows: the shared rows' tables first (once per model and
        plan), then the chunk's private rows; readouts gather each cell's rows from both."""
        tables = part.shared.tables(self, lambda: self._run_program(part.shared.program))
        prog, prev, outs = part.program, None, []
        relu = isinstance(self.act, nn.ReLU)
        for k, layer in enumerate(self.layers):
            ext_states, ext_sent = tables[k]
            h, _ = layer.run_rows(prog, prev, ext_sent)
            outs.append(h[part.out_own].add_(ext_states[part.out_ext]))
            if self.readout == "concat_mean":
                w = part.node_weights
                outs.append(F.embedding_bag(part.nodes_own, h, mode="sum", per_sample_weights=w)
                            .add_(F.embedding_bag(part.nodes_ext, ext_states, mode="sum",
                                                  per_sample_weights=w)))
            if k + 1 < len(self.layers):
                prev = h.relu_() if relu else self.act(h)
        return outs[-1] if self.readout == "output" else torch.cat(outs, dim=-1)

    def _run_program(self, prog: RowProgram) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every pass over the shared rows: states and messages of each pass."""
        prev, kept = None, []
        for k, layer in enumerate(self.layers):
            h, sent = layer.run_rows(prog, prev, None)
            kept.append((h, sent))
            if k + 1 < len(self.layers):
                prev = self.act(h)
        return kept

    def forward(self, g: GraphBatch | CellRows) -> torch.Tensor:
        return self.head(self.embed(g)).squeeze(-1)


class GatesPredictor(NeuralPredictor):
    """GATES encoder + MLP head, trained with the pairwise hinge ranking loss by default."""

    name: ClassVar[str] = "gates"
    positive_params: ClassVar[tuple[str, ...]] = ("op_dim", "dim", "mlp_hidden", "layers")
    defaults: ClassVar[dict[str, Any]] = {
        "op_dim": 48,
        "dim": 64,
        "layers": 3,
        "readout": "auto",
        "mlp_hidden": 128,
        "mlp_layers": 2,
        "dropout": 0.1,
        "activation": "relu",
    }

    def __init__(self, space: SearchSpace, *, seed: int = 0, **params: Any) -> None:
        super().__init__(space, seed=seed, **params)
        if self.hp["readout"] not in ("auto", *READOUTS):
            raise ArchrankError(f"unknown readout {self.hp['readout']!r}; choose one of: "
                                f"auto, {', '.join(READOUTS)}")
        if self.hp["activation"] not in ACTIVATIONS:
            raise ArchrankError(f"unknown activation {self.hp['activation']!r}; choose one "
                                f"of: {', '.join(ACTIVATIONS)}")

    def readout(self) -> str:
        """The cell embedding: ``readout``, or ``auto_readout`` of the space for ``auto``."""
        readout = str(self.hp["readout"])
        return auto_readout(self.space) if readout == "auto" else readout

    def _inference_parts(self, graphs: GraphBatch, chunk: int) -> list[tuple[int, Any]]:
        """Op-on-node spaces: the batch as rows (``gates_rows``), planned once for every
        ensemble member; chunks hold about 7 x ``predict_chunk`` private rows, as many
        cells as that takes (darts: ~5.6 rows a cell instead of 21 nodes)."""
        if self.space.op_on != "node":
            return super()._inference_parts(graphs, chunk)
        cells = int(self.hp["predict_chunk"])
        workers = 1 if self.device_.type != "cpu" else int(self.hp["threads"]
                                                           or available_cores())
        cells = max(1, min(8 * cells, -(-len(graphs) // workers)))
        rows = 7 * int(self.hp["predict_chunk"]) if self.device_.type == "cpu" else None
        parts = plan_rows(graphs.to(self.device_), self.space.num_inputs, cells, rows)
        starts = [0]
        for part in parts[:-1]:
            starts.append(starts[-1] + len(part))
        return list(zip(starts, parts, strict=True))

    def build_model(self) -> nn.Module:
        hp = self.hp
        return GatesNet(
            op_on=self.space.op_on, n_ops=op_count(self.space), op_dim=int(hp["op_dim"]),
            dim=int(hp["dim"]), layers=int(hp["layers"]), readout=self.readout(),
            mlp_hidden=int(hp["mlp_hidden"]), mlp_layers=int(hp["mlp_layers"]),
            dropout=float(hp["dropout"]), activation=str(hp["activation"]),
            num_inputs=self.space.num_inputs,
        )
