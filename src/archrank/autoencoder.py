"""A graph auto-encoder over cells: a cell in, an embedding in the middle, the cell back out.

Learns, without labels, a fixed-length embedding of the cells of a search space (used by the
semi-supervised assessor to build its similarity graph over architectures and as its
pretrained encoder, and reusable by any method that needs cell embeddings: ``fit``,
``embed``, ``save``/``load``).

Cells are read as a ``GraphBatch`` and in *node form*: op-on-node spaces as they are;
op-on-edge spaces (NAS-Bench-201) as their line graph, where each possible edge slot
``i -> j`` becomes a node carrying the edge's op, wired ``i -> slot -> j`` when the edge passes
information (``none`` edges stay disconnected but keep their op).

Supernet form (``form="supernet"``, spaces with a weight-sharing supernet): cells come as the
space's path codes and are read in the node form of its ``SupernetGraph`` (one op node per
supernet edge, ``none`` on the unused ones), where a relaxed cell (op probabilities per edge,
``SupernetForm.relaxed``) has a place too: the gcn encoder's ``encode_soft`` of it equals the
integer path on one-hot input. On nb201 the two forms are the same tensors.

- Encoder (``encoder``): ``gcn``, dense message passing over the node form in both directions
  (GIN-style sums, residual + LayerNorm, sum readouts of every round); or ``flow``, the
  GATES-style encoder of ``predictors.gates`` (ops gate the information flowing from input to
  output, readout of the output node and node means), which embeds cells that compute alike
  close together. Then a linear map to ``embed_dim``. Isomorphic cells embed alike.
- Decoder: an MLP from the embedding alone to the node-form adjacency (upper triangle,
  Bernoulli logits), every node slot's op (softmax over the ops plus "no node") and,
  with ``path_weight > 0``, the cell's path encoding (which op sequences reach the output), so
  the embedding has to carry the whole cell and what it computes.
- Optional isometry term (``metric_weight``): pairwise embedding distances regress onto the
  distances of the cells' one-hot + path codes.
- Training: Adam (one-cycle schedule) on reconstruction, mini-batches, ``steps`` optimiser
  steps in all, deterministic for a seed. Tiny tensors: run it with 1 torch thread on a busy
  machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archrank.encodings import onehot, path_encoding, path_encoding_size
from archrank.errors import ArchrankError
from archrank.params import check_seed
from archrank.predictors.base import (
    as_cell_list,
    check_graphs,
    check_params,
    load_torch_file,
    save_torch_file,
)
from archrank.spaces.base import GraphBatch, SearchSpace

ENCODERS = ("gcn", "flow")
FORMS = ("graph", "supernet")  # cells as the space's graphs, or as path codes (supernet graph)

AE_DEFAULTS: dict[str, Any] = {
    "encoder": "gcn",     # gcn: message passing on the node form; flow: GATES-style gating
    "embed_dim": 16,      # size of the embedding
    "hidden": 64,         # width of the encoder's node states and of the decoder
    "layers": 3,          # message-passing rounds
    "readout": "concat_mean",  # flow encoder: output-node states (concat), or with node means
    "steps": 1500,        # optimiser steps aimed at (epochs = steps / batches per epoch),
    "min_epochs": 3,      # within these epochs: on a small set max_epochs binds first (200
    "max_epochs": 60,     # cells: 60 steps, not 1,500; raise it to train such a set longer)
    "batch_size": 256,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "path_weight": 0.0,   # > 0: the decoder also reconstructs the cell's path encoding
    "metric_weight": 0.0,  # > 0: embedding distances should match structural distances
}


@dataclass(frozen=True)
class NodeForm:
    """Cells as op-on-node DAGs: ``tokens`` [B, M] op ids, ``adj`` [B, M, M], ``mask`` [B, M]."""

    tokens: torch.Tensor
    adj: torch.Tensor
    mask: torch.Tensor


def vocabulary(space: SearchSpace) -> tuple[str, ...]:
    """Names of the node-form tokens: node ops, then (op-on-edge spaces) edge ops."""
    if space.op_on == "edge":
        return tuple(space.node_op_names) + tuple(f"edge:{o}" for o in space.edge_op_names)
    return tuple(space.node_op_names)


def node_form_size(space: SearchSpace) -> int:
    n = space.max_nodes
    return n + n * (n - 1) // 2 if space.op_on == "edge" else n


def pad_graphs(graphs: GraphBatch, space: SearchSpace) -> GraphBatch:
    """The batch widened to ``space.max_nodes`` with absent nodes at the end (cells are
    padded at the end, so this changes no cell)."""
    n = graphs.num_nodes
    extra = space.max_nodes - n
    if extra < 0:
        raise ArchrankError(
            f"graph batch has {n} nodes, more than the {space.max_nodes} of space {space.name!r}"
        )
    if extra == 0:
        return graphs
    return GraphBatch(
        F.pad(graphs.ops, (0, extra)),
        F.pad(graphs.adj, (0, extra, 0, extra)),
        F.pad(graphs.mask, (0, extra)),
        None if graphs.edge_ops is None else F.pad(graphs.edge_ops, (0, extra, 0, extra)),
    )


def to_node_form(graphs: GraphBatch, space: SearchSpace) -> NodeForm:
    """The node form of a batch (see the module docstring); vectorised over the batch."""
    graphs = pad_graphs(graphs, space)
    n = graphs.num_nodes
    mask = graphs.mask.bool()
    pair = mask[:, :, None] & mask[:, None, :]
    adj = graphs.adj.float() * pair
    ops = graphs.ops.long()
    if space.op_on == "node":
        tokens, out_adj, out_mask = ops, adj, mask
    else:
        if graphs.edge_ops is None:
            raise ArchrankError(
                f"space {space.name!r} puts ops on edges but the batch has no edge_ops"
            )
        b = len(graphs)
        iu, ju = torch.triu_indices(n, n, offset=1)
        s = len(iu)
        slot = torch.arange(n, n + s)
        tokens = torch.cat([ops, len(space.node_op_names) + graphs.edge_ops[:, iu, ju].long()], 1)
        out_mask = torch.cat([mask, pair[:, iu, ju]], 1)
        on = adj[:, iu, ju]  # [B, S]: 1 where the edge passes information
        out_adj = torch.zeros(b, n + s, n + s)
        out_adj[:, iu, slot] = on
        out_adj[:, slot, ju] = on
    tokens = tokens * out_mask
    return NodeForm(tokens, out_adj, out_mask)


@dataclass(frozen=True)
class Cells:
    """A batch as both encoders read it: the padded ``GraphBatch`` and its node form."""

    graphs: GraphBatch | None  # None: cells read in the supernet form (path codes)
    nf: NodeForm

    def __len__(self) -> int:
        return int(self.nf.tokens.shape[0])

    def __getitem__(self, index: Any) -> Cells:
        return Cells(None if self.graphs is None else self.graphs[index],
                     NodeForm(self.nf.tokens[index], self.nf.adj[index], self.nf.mask[index]))


def make_cells(graphs: GraphBatch | Any, space: SearchSpace) -> Cells:
    """A ``GraphBatch`` (or a list of the space's architectures) as ``Cells``, checked
    against the space: padded to its width, op indices within its vocabularies."""
    g = graphs if isinstance(graphs, GraphBatch) else space.to_graphs(list(graphs))
    check_graphs(g, space)
    g = pad_graphs(g, space)
    return Cells(g, to_node_form(g, space))


class SupernetForm:
    """Path codes and relaxed cells of a supernet space in the node form of its
    ``SupernetGraph``: fixed nodes, then an op node per supernet edge carrying the edge's op
    (token ``len(node_vocab) + op``), wired ``src -> op node -> dst`` with weight 1 where the
    op passes information, 0 where it blocks (``none``); relaxed: the op-token mixture and
    weight ``1 - P(blocking ops)``. Vectorised over the batch."""

    def __init__(self, space: SearchSpace) -> None:
        g = space.supernet_graph()
        self.space_name = space.name
        self.vocab = tuple(g.node_vocab) + tuple(f"edge:{o}" for o in g.ops)
        self.fixed, self.ops = len(g.node_tokens), len(g.ops)
        self.node_vocab = len(g.node_vocab)
        self.edges = max(e for e, _, _ in g.slots) + 1
        self.nodes = self.fixed + len(g.slots)
        self.edge_of_slot = torch.tensor([e for e, _, _ in g.slots])
        self.src = torch.tensor([i for _, i, _ in g.slots])
        self.dst = torch.tensor([j for _, _, j in g.slots])
        self.slot = torch.arange(self.fixed, self.nodes)
        self.fixed_tokens = torch.tensor(g.node_tokens)
        blocking = set(g.blocking)
        self.blocking = torch.tensor([o in blocking for o in g.ops])
        self.links = torch.zeros(self.nodes, self.nodes)
        for i, j in g.links:
            self.links[i, j] = 1.0

    def _adj(self, on: torch.Tensor) -> torch.Tensor:
        """Adjacency [B, M, M] of the fixed links plus the op nodes' wiring of weight ``on``
        [B, S]."""
        b = on.shape[0]
        rows = torch.arange(b)[:, None]
        adj = self.links.to(on.dtype).expand(b, -1, -1).clone()
        adj = adj.index_put((rows, self.src[None], self.slot[None]), on)
        return adj.index_put((rows, self.slot[None], self.dst[None]), on)

    def codes(self, codes: Any) -> NodeForm:
        """Node form of integer cells, path codes ``[B, E]`` (op indices per supernet edge)."""
        c = torch.as_tensor(np.asarray(codes, dtype=np.int64))
        if c.ndim != 2 or c.shape[1] != self.edges:
            raise ArchrankError(f"expected {self.space_name} path codes of shape [B, "
                                f"{self.edges}], got {list(c.shape)}")
        if len(c) and (int(c.min()) < 0 or int(c.max()) >= self.ops):
            raise ArchrankError(f"{self.space_name} path codes must lie in 0..{self.ops - 1}")
        per_slot = c[:, self.edge_of_slot]
        tokens = torch.cat([self.fixed_tokens.expand(len(c), -1),
                            self.node_vocab + per_slot], 1)
        on = (~self.blocking[per_slot]).float()
        return NodeForm(tokens, self._adj(on), torch.ones(tokens.shape, dtype=torch.bool))

    def relaxed(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(weights [B, M, V], adj [B, M, M], mask [B, M])`` of op probabilities ``probs``
        [B, E, K] (``_GCNEncoder.forward_soft``'s input; differentiable in ``probs``)."""
        if probs.ndim != 3 or tuple(probs.shape[1:]) != (self.edges, self.ops):
            raise ArchrankError(f"expected {self.space_name} op probabilities of shape [B, "
                                f"{self.edges}, {self.ops}], got {list(probs.shape)}")
        b = probs.shape[0]
        p = probs[:, self.edge_of_slot]  # [B, S, K] in op-node order
        edge_tok = torch.cat([p.new_zeros(b, len(self.slot), self.node_vocab), p], 2)
        fixed = F.one_hot(self.fixed_tokens, len(self.vocab)).to(p.dtype)
        weights = torch.cat([fixed.expand(b, -1, -1), edge_tok], 1)
        on = 1.0 - (p * self.blocking.to(p.dtype)).sum(2)  # [B, S]
        return weights, self._adj(on), torch.ones(b, self.nodes, dtype=torch.bool)


class _GCNEncoder(nn.Module):
    """Message passing over the node form in both directions, sum readouts of every round."""

    def __init__(self, vocab: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.self_lin = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.in_lin = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(layers))
        self.out_lin = nn.ModuleList(nn.Linear(hidden, hidden, bias=False)
                                     for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.width = hidden * (layers + 1)

    def forward(self, cells: Cells) -> torch.Tensor:
        nf = cells.nf
        return self.propagate(self.embed(nf.tokens), nf.adj, nf.mask)

    def forward_soft(self, weights: torch.Tensor, adj: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
        """Relaxed input: ``weights`` [B, M, vocab] mixes the token embeddings (one-hot rows
        give exactly ``forward``'s result), ``adj`` may be fractional; differentiable in both."""
        return self.propagate(weights @ self.embed.weight, adj, mask)

    def propagate(self, h: torch.Tensor, adj: torch.Tensor, mask: torch.Tensor
                  ) -> torch.Tensor:
        m = mask.float()[..., None]
        h = h * m
        adj_t = adj.transpose(1, 2)
        reads = [h.sum(1)]
        for lin_s, lin_i, lin_o, norm in zip(self.self_lin, self.in_lin, self.out_lin,
                                             self.norms, strict=True):
            msg = lin_s(h) + lin_i(adj_t @ h) + lin_o(adj @ h)
            h = (h + F.relu(norm(msg))) * m
            reads.append(h.sum(1))
        return torch.cat(reads, 1)


class _FlowEncoder(nn.Module):
    """GATES-style encoder (``predictors.gates.GatesNet``): ops gate the information flowing
    from the input to the output, so cells that compute alike embed alike."""

    def __init__(self, space: SearchSpace, hidden: int, layers: int, readout: str) -> None:
        super().__init__()
        from archrank.predictors.gates import GatesNet

        self.net = GatesNet.encoder(space, dim=hidden, op_dim=hidden, layers=layers,
                                    readout=readout)
        self.width = self.net.embed_width

    def forward(self, cells: Cells) -> torch.Tensor:
        assert cells.graphs is not None  # the supernet form takes the gcn encoder only
        return self.net.embed(cells.graphs)


class _Decoder(nn.Module):
    def __init__(self, embed_dim: int, hidden: int, nodes: int, vocab: int,
                 paths: int) -> None:
        super().__init__()
        self.nodes, self.vocab, self.paths = nodes, vocab, paths
        self.n_pairs = nodes * (nodes - 1) // 2
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, 2 * hidden), nn.ReLU(),
            nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(),
            nn.Linear(2 * hidden, self.n_pairs + nodes * (vocab + 1) + paths),
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.mlp(z)
        adj_logits = out[:, :self.n_pairs]
        end = self.n_pairs + self.nodes * (self.vocab + 1)
        op_logits = out[:, self.n_pairs:end].reshape(-1, self.nodes, self.vocab + 1)
        return adj_logits, op_logits, out[:, end:]


class _AutoEncoder(nn.Module):
    def __init__(self, space: SearchSpace, vocab: int, nodes: int, paths: int,
                 hp: dict[str, Any]) -> None:
        super().__init__()
        hidden, layers = int(hp["hidden"]), int(hp["layers"])
        if hp["encoder"] == "flow":
            self.body: nn.Module = _FlowEncoder(space, hidden, layers, str(hp["readout"]))
        else:
            self.body = _GCNEncoder(vocab, hidden, layers)
        self.proj = nn.Linear(int(self.body.width), int(hp["embed_dim"]))  # type: ignore[arg-type]
        self.decoder = _Decoder(int(hp["embed_dim"]), hidden, nodes, vocab, paths)

    def features(self, cells: Cells) -> torch.Tensor:
        """The encoder's wide readout, before the bottleneck."""
        return self.body(cells)

    def encode(self, cells: Cells) -> torch.Tensor:
        return self.proj(self.body(cells))

    def encode_soft(self, weights: torch.Tensor, adj: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
        """``encode`` of a relaxed node form (``_GCNEncoder.forward_soft``; gcn encoder only)."""
        if not isinstance(self.body, _GCNEncoder):
            raise ArchrankError("relaxed (probability) input needs the gcn encoder")
        return self.proj(self.body.forward_soft(weights, adj, mask))


def structural_code(graphs: GraphBatch, space: SearchSpace) -> torch.Tensor:
    """The one-hot adjacency/op code next to the path encoding: a cell's structure (what
    it is) and its function (which op sequences reach the output), as one 0/1 vector."""
    return torch.cat([onehot(graphs, space), path_encoding(graphs, space)], 1)


def _pdist(x: torch.Tensor) -> torch.Tensor:
    """Distances of all pairs i < j of the rows of ``x`` (differentiable at 0)."""
    i, j = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    return ((x[i] - x[j]).pow(2).sum(1) + 1e-9).sqrt()


class GraphAutoEncoder:
    """Unsupervised cell embeddings for one search space (scikit-learn style).

    ``fit(graphs)`` trains on any set of cells (labelled or not), ``embed(graphs)`` maps cells
    to [B, embed_dim] float32, ``reconstruction_accuracy(graphs)`` says how well cells come
    back, ``save``/``load`` round-trip a fitted model. ``graphs`` is a ``GraphBatch`` or a list
    of the space's architectures. ``encoder_module()`` hands out the trained encoder for
    methods that fine-tune it.
    """

    def __init__(self, space: SearchSpace | str, *, seed: int = 0, form: str = "graph",
                 **params: Any) -> None:
        hp = check_params("graph auto-encoder", params, AE_DEFAULTS)
        if isinstance(space, str):  # a space by name, as predictors take it
            from archrank.spaces import get_space

            space = get_space(space)
        self.space = space
        # folded into what torch and numpy take (any int, as predictors)
        self.seed = check_seed("graph auto-encoder", seed) % 2**32
        self.hp: dict[str, Any] = hp
        if self.hp["encoder"] not in ENCODERS:
            raise ArchrankError(f"unknown encoder {self.hp['encoder']!r}; choose one of: "
                                f"{', '.join(ENCODERS)}")
        for key in ("embed_dim", "hidden", "layers", "steps", "batch_size", "min_epochs",
                    "max_epochs"):
            if int(self.hp[key]) < 1:
                raise ArchrankError(f"auto-encoder parameter {key} must be at least 1, "
                                    f"got {self.hp[key]}")
        if form not in FORMS:
            raise ArchrankError(f"unknown auto-encoder form {form!r}; choose {', '.join(FORMS)}")
        if int(self.hp["min_epochs"]) > int(self.hp["max_epochs"]):
            raise ArchrankError(f"auto-encoder parameter min_epochs ({self.hp['min_epochs']}) "
                                f"exceeds max_epochs ({self.hp['max_epochs']})")
        self.form = form
        # the supernet form: cells are path codes (see the module docstring)
        self.supernet: SupernetForm | None = None
        if form == "supernet":
            if self.hp["encoder"] != "gcn" or float(self.hp["path_weight"]) > 0 \
                    or float(self.hp["metric_weight"]) > 0:
                raise ArchrankError("the supernet form takes the gcn encoder without path or "
                                    "metric terms")
            try:
                self.supernet = SupernetForm(space)
            except NotImplementedError:
                raise ArchrankError(f"space {space.name!r} has no supernet graph") from None
        self.vocab = vocabulary(space) if self.supernet is None else self.supernet.vocab
        self.nodes = node_form_size(space) if self.supernet is None else self.supernet.nodes
        self.paths = path_encoding_size(space) if float(self.hp["path_weight"]) > 0 else 0
        self.model_: _AutoEncoder | None = None
        self.history_: list[float] = []

    # -- helpers ----------------------------------------------------------------------------
    def cells(self, graphs: GraphBatch | Any) -> Cells:
        """The batch as the encoders read it (checked against the space); in the supernet
        form, ``graphs`` are path codes ``[B, E]``."""
        if self.supernet is not None:
            return Cells(None, self.supernet.codes(graphs))
        if not isinstance(graphs, GraphBatch):
            as_cell_list(graphs)
        return make_cells(graphs, self.space)

    def _targets(self, nf: NodeForm) -> tuple[torch.Tensor, torch.Tensor]:
        iu, ju = torch.triu_indices(self.nodes, self.nodes, offset=1)
        adj_t = nf.adj[:, iu, ju]
        op_t = torch.where(nf.mask, nf.tokens, torch.full_like(nf.tokens, len(self.vocab)))
        return adj_t, op_t

    def _new_model(self) -> _AutoEncoder:
        return _AutoEncoder(self.space, len(self.vocab), self.nodes, self.paths, self.hp)

    def _model(self) -> _AutoEncoder:
        if self.model_ is None:
            raise ArchrankError("graph auto-encoder is not fitted; call fit() first")
        return self.model_

    def initialise(self) -> Self:
        """A random-start model (no fitting), for methods that train the encoder themselves."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model_ = self._new_model()
        return self

    def encoder_module(self) -> nn.Module:
        """The trained auto-encoder (``features(cells)``, ``encode(cells)``, ``decoder``)."""
        return self._model()

    # -- API --------------------------------------------------------------------------------
    def fit(self, graphs: GraphBatch | Any) -> Self:
        """Train on ``graphs`` (any cells of the space; labels are never used)."""
        cells = self.cells(graphs)
        n = len(cells)
        if n == 0:
            raise ArchrankError("cannot fit the graph auto-encoder on zero cells")
        targets = self.targets(cells)
        bs = min(int(self.hp["batch_size"]), n)
        per_epoch = -(-n // bs)
        epochs = -(-int(self.hp["steps"]) // per_epoch)
        epochs = max(int(self.hp["min_epochs"]), min(int(self.hp["max_epochs"]), epochs))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            model = self._new_model()
            opt = torch.optim.Adam(model.parameters(), lr=float(self.hp["lr"]),
                                   weight_decay=float(self.hp["weight_decay"]))
            total_steps = epochs * per_epoch
            # one-cycle needs a step of warm-up and one of annealing at least (a tenth of a
            # short run is no step: torch divides by zero); a run of under 4 steps keeps lr
            sched = None if total_steps < 4 else torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=float(self.hp["lr"]), total_steps=total_steps,
                pct_start=max(0.1, 2 / total_steps))
            self.history_ = []
            model.train()
            for _ in range(epochs):
                perm = torch.randperm(n, generator=gen)
                total = 0.0
                for start in range(0, n, bs):
                    idx = perm[start:start + bs]
                    loss = self.loss(model, cells[idx], [t[idx] for t in targets])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    total += float(loss.detach()) * len(idx)
                self.history_.append(total / n)
        model.eval()
        self.model_ = model
        return self

    def targets(self, cells: Cells) -> list[torch.Tensor]:
        """What ``loss`` compares against: adjacency, ops, paths, structural code."""
        n = len(cells)
        adj_t, op_t = self._targets(cells.nf)
        path_t = path_encoding(cells.graphs, self.space) if self.paths else torch.zeros(n, 0)
        code = (structural_code(cells.graphs, self.space)
                if float(self.hp["metric_weight"]) > 0 else torch.zeros(n, 0))
        return [adj_t, op_t, path_t, code]

    def loss(self, model: nn.Module, cells: Cells, targets: list[torch.Tensor]
             ) -> torch.Tensor:
        """Reconstruction loss of a batch per cell (plus the optional path and isometry
        terms); ``model`` is this auto-encoder's module or a fine-tuned copy of it."""
        adj_t, op_t, path_t, code = targets
        z = model.encode(cells)  # type: ignore[operator]
        adj_logits, op_logits, path_logits = model.decoder(z)  # type: ignore[operator]
        loss = F.binary_cross_entropy_with_logits(adj_logits, adj_t, reduction="sum")
        loss = loss + F.cross_entropy(op_logits.transpose(1, 2), op_t, reduction="sum")
        if self.paths:
            loss = loss + float(self.hp["path_weight"]) * F.binary_cross_entropy_with_logits(
                path_logits, path_t, reduction="sum")
        loss = loss / len(cells)
        if code.shape[1]:
            # Isometry: pairwise embedding distances match the cells' structural distances,
            # so nearest neighbours in the embedding are structurally close cells.
            gap = _pdist(z) - _pdist(code)
            loss = loss + float(self.hp["metric_weight"]) * gap.pow(2).mean()
        return loss

    def embed(self, graphs: GraphBatch | Any, chunk: int = 16384) -> torch.Tensor:
        """float32 [B, embed_dim]: the embedding of each cell."""
        model = self._model()
        cells = self.cells(graphs)
        out = []
        with torch.no_grad():
            for start in range(0, len(cells), chunk):
                out.append(model.encode(cells[start:start + chunk]))
        if not out:
            return torch.zeros(0, int(self.hp["embed_dim"]))
        return torch.cat(out)

    def reconstruct(self, graphs: GraphBatch | Any) -> NodeForm:
        """The decoded node form of each cell (most likely ops, adjacency thresholded)."""
        model = self._model()
        with torch.no_grad():
            adj_logits, op_logits, _ = model.decoder(self.embed(graphs))
        m = self.nodes
        iu, ju = torch.triu_indices(m, m, offset=1)
        adj = torch.zeros(adj_logits.shape[0], m, m)
        adj[:, iu, ju] = (adj_logits > 0).float()
        ops = op_logits.argmax(-1)
        mask = ops < len(self.vocab)
        return NodeForm(torch.where(mask, ops, 0), adj, mask)

    def reconstruction_accuracy(self, graphs: GraphBatch | Any) -> dict[str, float]:
        """Fractions recovered: ``ops`` (node slots), ``adj`` (node pairs), ``cell`` (whole
        cells exactly right)."""
        cells = self.cells(graphs)
        adj_t, op_t = self._targets(cells.nf)
        adj_r, op_r = self._targets(self.reconstruct(graphs))
        op_ok = op_r == op_t
        adj_ok = adj_r == adj_t
        return {"ops": float(op_ok.float().mean()), "adj": float(adj_ok.float().mean()),
                "cell": float((op_ok.all(1) & adj_ok.all(1)).float().mean())}

    # -- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        model = self._model()
        return {"space": self.space.name, "seed": self.seed, "form": self.form,
                "hp": dict(self.hp),
                "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        self.hp.update(state["hp"])
        self.paths = path_encoding_size(self.space) if float(self.hp["path_weight"]) > 0 else 0
        model = self._new_model()
        model.load_state_dict(state["weights"])
        model.eval()
        self.model_ = model

    @classmethod
    def from_state(cls, state: dict[str, Any], space: SearchSpace | None = None
                   ) -> GraphAutoEncoder:
        if space is None:
            from archrank.spaces import get_space

            space = get_space(str(state["space"]))
        ae = cls(space, seed=int(state["seed"]), form=str(state.get("form", "graph")),
                 **state["hp"])
        ae.set_state(state)
        return ae

    def save(self, path: str | Path) -> None:
        """Write the fitted auto-encoder (a torch file, loadable with ``weights_only``)."""
        save_torch_file({"kind": "archrank.GraphAutoEncoder", **self.get_state()}, path)

    @classmethod
    def load(cls, path: str | Path) -> GraphAutoEncoder:
        """Read an auto-encoder written by ``save``."""
        blob = load_torch_file(path, "auto-encoder")
        if not isinstance(blob, dict) or blob.get("kind") != "archrank.GraphAutoEncoder":
            raise ArchrankError(f"{path}: not an archrank auto-encoder file")
        return cls.from_state(blob)


__all__ = ["AE_DEFAULTS", "ENCODERS", "FORMS", "Cells", "GraphAutoEncoder", "NodeForm",
           "SupernetForm", "make_cells", "pad_graphs", "structural_code", "to_node_form",
           "vocabulary"]
