"""Semi-supervised assessor (SSA) of Tang et al. (CVPR 2020), predictor name ``ssa``.

Few cells have measured accuracies but the space has many more, and similar cells perform
alike. SSA therefore

1. makes every cell of a pool (labelled and unlabelled) a node of a graph over architectures,
   joined to its nearest cells (``archrank.archgraph``: symmetric kNN, Gaussian kernel,
   self-loops, ``D^-1/2 A D^-1/2``, sparse);
2. trains a GCN over this graph on the labelled nodes: a node's input is a cell encoder
   applied to its cell (trained jointly), and every layer mixes a node's own state with the
   kernel-weighted states of its graph neighbours, labelled or not, so the unlabelled cells
   shape every score.

In the paper the neighbours are found in the embedding of a graph auto-encoder trained
without labels on the whole pool (``archrank.autoencoder``), whose embedding is also the GCN's
input: ``graph_on=embedding, features=embedding+onehot, node_encoder=ae, head_hidden=0``. On
NAS-Bench-201 and -101 two changes ranked better (docs/benchmarks.md): the node encoder is a
GATES network with GATES's training recipe (``node_encoder=gates``; a reconstruction-pretrained
encoder ranked worse), and the neighbours are found by the cells' structural codes, one-hot
adjacency/ops plus path encoding (``graph_on=onehot+path``), which the auto-encoder's
embedding approximates. The auto-encoder is trained only when something reads it.

Choices (defaults in ``SSA_DEFAULTS``):

- unlabelled pool: ``fit(..., unlabeled=)`` when given; otherwise the whole space when it has
  at most ``pool_size`` cells (NAS-Bench-201: 15,625; NAS-Bench-Graph: 26,206), else
  ``pool_size`` cells sampled uniformly (NB101);
- graph: ``k = 10`` nearest neighbours by Euclidean distance (the paper thresholds a kernel;
  kNN bounds the degree, see ``archgraph``);
- GCN layer: ``h_i <- relu(W_s h_i + g W_n sum_j A_hat_ij h_j)`` (a separate self weight and a
  gate ``g`` starting at 0, so the model decides how much to trust neighbours), MLP head on
  all layers' states;
- training: pairwise hinge ranking loss (``losses.py``), Adam with a cosine schedule, batch
  and learning rate as GATES (``neural.auto_batch_size``, ``neural.auto_lr``), dropout, early
  stopping on a held-out labelled slice from ``early_stop_min`` labelled cells, ``ensemble``
  members with different seeds over one graph; with ``node_encoder=ae`` the reconstruction
  loss of pool cells can be kept as a regulariser (``recon_weight``);
- scale: neighbour states are *historical* (GNNAutoScale, Fey et al. 2021): every
  ``refresh_every`` steps one no-grad pass computes every node's layer states; between
  refreshes a step runs the encoder only on the labelled batch and reads its neighbours'
  aggregated states from that pass. A step costs the same whether the graph has 15k or 400k
  nodes;
- inductive prediction: a cell already in the graph (same graph tensors) gets its node's
  score; a new cell is joined to its ``k`` nearest graph nodes by the same vectors and kernel
  and run through the layers with the graph's nodes as fixed neighbours (it receives
  messages, it sends none, so the graph's scores do not move).

The auto-encoder depends only on the set of cells (sorted by tensor key before training), so
refits on the same pool with the same seed (a guided search refitting as labels arrive; a
benchmark fitting several training sizes) reuse it from a small in-process cache.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archrank.archgraph import METRICS, ArchGraph, build_knn_graph
from archrank.autoencoder import ENCODERS, Cells, GraphAutoEncoder, make_cells, pad_graphs
from archrank.encodings import onehot, path_encoding
from archrank.errors import ArchrankError
from archrank.predictors.base import Predictor, check_graphs, check_params
from archrank.predictors.losses import LOSSES, make_loss
from archrank.predictors.neural import (
    auto_batch_size,
    auto_lr,
    available_cores,
    kendall_tau_fast,
    torch_threads,
)
from archrank.spaces.base import GraphBatch, SearchSpace

SSA_DEFAULTS: dict[str, Any] = {
    # unlabelled pool and graph over architectures
    "pool_size": 30000,      # whole space if it has at most this many cells, else a sample
    "k": 10,                 # neighbours of each cell in embedding space
    "metric": "euclidean",   # euclidean | cosine
    "graph_on": "onehot+path",  # vectors the neighbours are found in, '+'-joined: embedding
                              # (the auto-encoder's: raw when alone, each part standardised
                              # per dimension when joined with another), onehot, path
    "kernel": True,          # Gaussian kernel edge weights (else unit weights)
    # graph auto-encoder (pretrained without labels on the pool)
    "encoder": "flow",       # flow (GATES-style) | gcn (message passing on the node form)
    "embed_dim": 16,
    "ae_hidden": 32,
    "ae_layers": 3,
    "ae_readout": "concat_mean",  # flow encoder readout: concat | concat_mean
    "ae_steps": 500,         # optimiser steps of the auto-encoder
    "ae_batch_size": 256,
    "ae_path_weight": 1.0,   # the decoder also reconstructs path encodings
    "ae_metric_weight": 0.0,  # > 0: embedding distances match structural distances
    "ae_seed": None,         # seed of the auto-encoder (None: the predictor's seed); fix it
                             # to share one auto-encoder between refits with other seeds
    # GCN over the architecture graph
    "features": "none",      # frozen node inputs, '+'-joined: embedding, onehot, path
                             # (or none)
    "finetune": True,        # an encoder's readout is a node input, trained jointly
    "node_encoder": "gates",    # that encoder: ae (the auto-encoder's, fine-tuned) | gates (a
                             # fresh GATES network, predictors.gates defaults)
    "encoder_dim": 64,       # node_encoder=gates: width of its states (GATES's default)
    "head_hidden": 128,      # MLP head on the layers' states (0: linear)
    "recon_weight": 0.0,     # joint loss: weight of the reconstruction of pool cells
    "recon_batch": 128,
    "hidden": 64,
    "layers": 2,             # graph layers (0: no graph, an ablation)
    "dropout": 0.1,
    "steps": 1000,           # optimiser steps per member
    "batch_size": None,      # labelled cells per step; None: as GATES (a quarter of the
                             # labelled set within [64, 256], all of it when fewer)
    "refresh_every": 100,    # steps between recomputations of the neighbours' states
    "lr": None,              # None: as GATES, 1e-3 at batch 64, scaled with the batch
    "weight_decay": 1e-4,
    "loss": "hinge",         # hinge | mse | combined (losses.py)
    "margin": 0.1,
    "mse_weight": 1.0,
    "early_stop_min": 2000,  # hold out a labelled slice for early stopping from this many
                             # labelled cells (as GATES)
    "val_fraction": 0.1,
    "ensemble": 3,           # members with different seeds over one graph, averaged
    "threads": 1,            # torch threads while fitting/scoring (None: every core)
}
FEATURES = ("embedding", "onehot", "path")
NODE_ENCODERS = ("ae", "gates")

# (space, seed, auto-encoder params, fingerprint of the pool) -> (auto-encoder state, embeddings)
_AE_CACHE: OrderedDict[tuple[Any, ...], tuple[dict[str, Any], torch.Tensor]] = OrderedDict()
_AE_CACHE_SIZE = 4
_POOL_CACHE: dict[tuple[Any, ...], GraphBatch] = {}


def _space_key(space: Any) -> tuple[Any, ...]:
    """A space's identity for the caches: its name and its op vocabularies (a table's own
    NAS-Bench-Graph space, proteins' five ops, shares the name of the nine-op one)."""
    return (space.name, tuple(space.node_op_names), tuple(space.edge_op_names))


def _threads(threads: int | None) -> AbstractContextManager[None]:
    """Run with ``threads`` intra-op threads (None: every available core), then restore.

    SSA's steps work on small tensors (a batch of cells, a few rows of the graph), where more
    threads only add synchronisation: on the shared 2-core machine, with other jobs running,
    ``tests/test_ssa.py`` took 249 s with 2 threads and 15 s with 1. Hence the default of 1.
    """
    return torch_threads(int(threads) if threads else available_cores())


# -- cell keys --------------------------------------------------------------------------------
def graph_keys(graphs: GraphBatch, space: SearchSpace) -> np.ndarray:
    """uint8 [B, L]: the cell's dense tensors (padded to the space's width) as bytes.

    Equal rows mean equal ``to_graphs`` output, i.e. the same cell as the space writes it;
    ``graphs_from_keys`` inverts it.
    """
    g = pad_graphs(graphs, space)
    b = len(g)
    parts = [g.ops.reshape(b, -1).to(torch.uint8), g.mask.reshape(b, -1).to(torch.uint8),
             g.adj.reshape(b, -1).to(torch.uint8)]
    if g.edge_ops is not None:
        parts.append(g.edge_ops.reshape(b, -1).to(torch.uint8))
    return np.ascontiguousarray(torch.cat(parts, 1).numpy())


def graphs_from_keys(keys: np.ndarray, space: SearchSpace) -> GraphBatch:
    """The ``GraphBatch`` whose ``graph_keys`` are ``keys``."""
    n = space.max_nodes
    t = torch.from_numpy(np.ascontiguousarray(keys)).long()
    b = t.shape[0]
    ops, mask = t[:, :n], t[:, n:2 * n].bool()
    adj = t[:, 2 * n:2 * n + n * n].reshape(b, n, n).float()
    edge_ops = t[:, 2 * n + n * n:].reshape(b, n, n) if space.op_on == "edge" else None
    return GraphBatch(ops, adj, mask, edge_ops)


def _void(keys: np.ndarray) -> np.ndarray:
    return keys.view(np.dtype((np.void, keys.shape[1]))).reshape(-1)


# -- the network ------------------------------------------------------------------------------
class _GatesFeatures(nn.Module):
    """A fresh GATES network (``predictors.gates``) as the node encoder: ``features(cells)``
    is its cell embedding, the same interface as the auto-encoder's module."""

    def __init__(self, space: SearchSpace, dim: int) -> None:
        super().__init__()
        from archrank.predictors.gates import GatesNet, GatesPredictor, auto_readout

        hp = GatesPredictor.defaults
        self.net = GatesNet.encoder(space, dim=dim,
                                    op_dim=max(1, dim * int(hp["op_dim"]) // int(hp["dim"])),
                                    layers=int(hp["layers"]), readout=auto_readout(space),
                                    activation=str(hp["activation"]))
        self.width = self.net.embed_width

    def features(self, cells: Cells) -> torch.Tensor:
        return self.net.embed(cells.graphs)


class _SSANet(nn.Module):
    """Node inputs (fine-tuned encoder readout + frozen features), ``layers`` graph layers
    ``a <- relu(W_s a + W_n agg)`` where ``agg = A_hat a`` over the architecture graph, and a
    linear head on every layer's state."""

    def __init__(self, encoder: nn.Module | None, enc_width: int, static_dim: int,
                 hidden: int, layers: int, dropout: float, head_hidden: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.enc_proj = nn.Linear(enc_width, hidden) if encoder is not None else None
        in_dim = static_dim + (hidden if encoder is not None else 0)
        self.inp = nn.Linear(in_dim, hidden)
        self.self_lins = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.nbr_lins = nn.ModuleList(nn.Linear(hidden, hidden, bias=False)
                                      for _ in range(layers))
        # Neighbour gates start at 0: the net starts as the plain fine-tuned encoder and
        # learns how much the similar cells' states should count (ReZero-style).
        self.nbr_gates = nn.Parameter(torch.zeros(layers))
        width = hidden * (layers + 1)
        self.head: nn.Module = (nn.Linear(width, 1) if head_hidden < 1 else nn.Sequential(
            nn.Linear(width, head_hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(head_hidden, 1)))
        self.dropout = dropout

    def inputs(self, cells: Cells, static: torch.Tensor) -> torch.Tensor:
        parts = [static] if static.shape[1] else []
        if self.encoder is not None and self.enc_proj is not None:
            parts.append(F.relu(self.enc_proj(self.encoder.features(cells))))  # type: ignore[operator]
        x = F.dropout(torch.cat(parts, 1), self.dropout, self.training)
        return F.relu(self.inp(x))

    def layer(self, i: int, a: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        a = F.dropout(a, self.dropout, self.training)
        return F.relu(self.self_lins[i](a) + self.nbr_gates[i] * self.nbr_lins[i](agg))

    def forward(self, cells: Cells, static: torch.Tensor, aggs: list[torch.Tensor]
                ) -> torch.Tensor:
        """Scores of a batch whose neighbour aggregates (one per layer) are given."""
        a = self.inputs(cells, static)
        states = [a]
        for i, agg in enumerate(aggs):
            a = self.layer(i, a, agg)
            states.append(a)
        return self.head(torch.cat(states, 1)).squeeze(1)

    def full_pass(self, cells: Cells, static: torch.Tensor, graph: ArchGraph,
                  chunk: int = 8192) -> list[torch.Tensor]:
        """Every node's state before each layer and after the last (no grad, eval)."""
        with torch.no_grad():
            a = torch.cat([self.inputs(cells[s:s + chunk], static[s:s + chunk])
                           for s in range(0, len(cells), chunk)])
            states = [a]
            for i in range(len(self.self_lins)):
                a = self.layer(i, a, graph.propagate(a))
                states.append(a)
        return states

    def scores(self, states: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return self.head(torch.cat(states, 1)).squeeze(1)

    def attached(self, cells: Cells, static: torch.Tensor, states: list[torch.Tensor],
                 nbr: torch.Tensor, w: torch.Tensor, w_self: torch.Tensor) -> torch.Tensor:
        """Scores of new nodes joined to graph nodes ``nbr`` [Q, k] (weights ``w``,
        self-loop ``w_self``), the graph's states held fixed."""
        with torch.no_grad():
            a = self.inputs(cells, static)
            outs = [a]
            for i, h_graph in enumerate(states[:-1]):
                agg = (w[..., None] * h_graph[nbr]).sum(1) + w_self[:, None] * a
                a = self.layer(i, a, agg)
                outs.append(a)
            return self.head(torch.cat(outs, 1)).squeeze(1)


# -- the predictor ----------------------------------------------------------------------------
class SSAPredictor(Predictor):
    """Semi-supervised assessor: auto-encoder embedding -> kNN graph of cells -> GCN."""

    name: ClassVar[str] = "ssa"

    def __init__(self, space: SearchSpace, *, seed: int = 0, **params: Any) -> None:
        hp = check_params("predictor 'ssa'", params, self.param_defaults())
        super().__init__(space, seed=seed, **params)
        self.hp: dict[str, Any] = hp
        self._check_hp()
        self.ae_: GraphAutoEncoder | None = None
        self.graph_: ArchGraph | None = None
        self.z_: torch.Tensor | None = None          # [N, D] embeddings of the graph's nodes
        self.gz_: torch.Tensor | None = None         # [N, G] vectors the graph was built on
        self.static_: torch.Tensor | None = None     # [N, F] frozen node inputs
        self.keys_: np.ndarray | None = None         # [N, L] sorted unique cell keys
        self.cells_: Cells | None = None             # the graph's cells
        self.target_: torch.Tensor | None = None     # [N] standardised targets, NaN unlabelled
        self.scores_: torch.Tensor | None = None     # [N] standardised scores of the nodes
        self.models_: list[_SSANet] = []
        self.z_mean_ = torch.zeros(0)
        self.z_std_ = torch.ones(0)
        self.y_mean_ = 0.0
        self.y_std_ = 1.0
        self.history_: list[dict[str, Any]] = []
        self._states: list[list[torch.Tensor]] = []
        self._key_index: dict[bytes, int] | None = None

    def param_defaults(self) -> dict[str, Any]:
        return dict(SSA_DEFAULTS)

    def check_build(self) -> None:
        """Path encodings (``path`` in graph_on / features, the auto-encoder's path
        reconstruction) exist only where paths can be listed: refused here, not at the first
        fit of a search, with the setting that avoids them."""
        from archrank.encodings import path_vocabulary

        hp = self.hp
        wanted = [k for k in ("graph_on", "features") if "path" in str(hp[k]).split("+")]
        if self.uses_auto_encoder() and float(hp["ae_path_weight"]) > 0:
            wanted.append("ae_path_weight")
        if wanted:
            try:
                path_vocabulary(self.space)
            except ArchrankError:
                raise ArchrankError(
                    f"ssa {', '.join(f'{k}={hp[k]}' for k in wanted)} needs path encodings, "
                    f"which space {self.space.name!r} does not have; use graph_on=onehot "
                    "(and ae_path_weight=0 with the auto-encoder)") from None

    def _check_hp(self) -> None:
        hp = self.hp
        for key in ("features", "graph_on"):
            if key == "features" and hp[key] == "none":
                if not bool(hp["finetune"]):
                    raise ArchrankError("ssa needs node inputs: features=none requires "
                                        "finetune=true")
                continue
            if any(p not in FEATURES for p in str(hp[key]).split("+")):
                raise ArchrankError(f"bad {key} {hp[key]!r}: join one or more of "
                                    f"{', '.join(FEATURES)} with '+'")
        for key, allowed in (("metric", METRICS), ("loss", LOSSES), ("encoder", ENCODERS),
                             ("node_encoder", NODE_ENCODERS)):
            if hp[key] not in allowed:
                raise ArchrankError(f"unknown {key} {hp[key]!r}; choose one of: "
                                    f"{', '.join(allowed)}")
        if int(hp["layers"]) < 0:
            raise ArchrankError(f"ssa parameter layers must be at least 0, got {hp['layers']}")
        if not 0 < float(hp["val_fraction"]) < 1:
            raise ArchrankError(f"ssa parameter val_fraction must lie in (0, 1), got "
                                f"{hp['val_fraction']}")
        if not 0 <= float(hp["dropout"]) < 1:
            raise ArchrankError(f"ssa parameter dropout must lie in [0, 1), got {hp['dropout']}")
        if hp["batch_size"] is not None and int(hp["batch_size"]) < 2:
            raise ArchrankError(f"ssa parameter batch_size must be at least 2 (a batch of one "
                                f"cell has no pair to rank), got {hp['batch_size']}")
        for key in ("k", "pool_size", "embed_dim", "hidden", "steps", "ensemble",
                    "refresh_every", "ae_steps", "ae_hidden", "ae_layers", "encoder_dim"):
            if int(hp[key]) < 1:
                raise ArchrankError(f"ssa parameter {key} must be at least 1, got {hp[key]}")

    # -- pool and auto-encoder --------------------------------------------------------------
    def uses_auto_encoder(self) -> bool:
        """Whether anything reads the auto-encoder: its embedding joins the graph or is a node
        input, or its encoder is the fine-tuned node encoder. If not, fit skips training it."""
        hp = self.hp
        return ("embedding" in str(hp["graph_on"]).split("+")
                or "embedding" in str(hp["features"]).split("+")
                or (bool(hp["finetune"]) and hp["node_encoder"] == "ae"))

    def default_pool(self) -> GraphBatch:
        """Unlabelled cells when ``fit`` is given none: the whole space if small enough,
        else ``pool_size`` uniform samples (seeded)."""
        size = self.space.size
        limit = int(self.hp["pool_size"])
        if size is not None and size <= limit and self.space.enumerable:
            key = _space_key(self.space)
            if key not in _POOL_CACHE:
                _POOL_CACHE[key] = self.space.to_graphs(self.space.enumerate())
            return _POOL_CACHE[key]
        rng = np.random.default_rng(self.library_seed)
        return self.space.to_graphs(self.space.sample(limit, rng))

    def _ae_params(self) -> dict[str, Any]:
        hp = self.hp
        return {"encoder": str(hp["encoder"]), "embed_dim": int(hp["embed_dim"]),
                "hidden": int(hp["ae_hidden"]), "layers": int(hp["ae_layers"]),
                "readout": str(hp["ae_readout"]),
                "steps": int(hp["ae_steps"]), "batch_size": int(hp["ae_batch_size"]),
                "path_weight": float(hp["ae_path_weight"]),
                "metric_weight": float(hp["ae_metric_weight"])}

    def _auto_encoder(self, pool: GraphBatch, keys: np.ndarray
                      ) -> tuple[GraphAutoEncoder, torch.Tensor]:
        params = self._ae_params()
        fingerprint = hashlib.sha1(keys.tobytes()).hexdigest()
        seed = self.library_seed if self.hp["ae_seed"] is None else int(self.hp["ae_seed"])
        cache_key = (_space_key(self.space), seed, tuple(sorted(params.items())), fingerprint)
        if cache_key in _AE_CACHE:
            _AE_CACHE.move_to_end(cache_key)
            state, z = _AE_CACHE[cache_key]
            return GraphAutoEncoder.from_state(state, self.space), z
        ae = GraphAutoEncoder(self.space, seed=seed, **params).fit(pool)
        z = ae.embed(pool)
        _AE_CACHE[cache_key] = (ae.get_state(), z)
        while len(_AE_CACHE) > _AE_CACHE_SIZE:
            _AE_CACHE.popitem(last=False)
        return ae, z

    def _static(self, graphs: GraphBatch, z: torch.Tensor) -> torch.Tensor:
        """Frozen node inputs: standardised embedding, one-hot code, path encoding."""
        return self._vectors(graphs, z, str(self.hp["features"]))

    def _graph_vectors(self, graphs: GraphBatch, z: torch.Tensor) -> torch.Tensor:
        """The vectors whose nearest neighbours join the graph (``graph_on``)."""
        if self.hp["graph_on"] == "embedding":
            return z
        return self._vectors(graphs, z, str(self.hp["graph_on"]))

    def _vectors(self, graphs: GraphBatch, z: torch.Tensor, spec: str) -> torch.Tensor:
        parts = [torch.zeros(len(graphs), 0)]
        wanted = spec.split("+")
        if "embedding" in wanted:
            parts.append((z - self.z_mean_) / self.z_std_)
        if "onehot" in wanted:
            parts.append(onehot(graphs, self.space))
        if "path" in wanted:
            parts.append(path_encoding(graphs, self.space))
        return torch.cat(parts, 1).float()

    # -- fit --------------------------------------------------------------------------------
    def _fit(self, graphs: GraphBatch, y: np.ndarray, unlabeled: GraphBatch | None) -> None:
        with _threads(self.hp["threads"]):
            self._fit_inner(graphs, y, unlabeled)

    def _fit_inner(self, graphs: GraphBatch, y: np.ndarray, unlabeled: GraphBatch | None
                   ) -> None:
        check_graphs(graphs, self.space)
        pool_u = self.default_pool() if unlabeled is None else unlabeled
        if len(pool_u):
            check_graphs(pool_u, self.space)
        both = GraphBatch.cat([pad_graphs(graphs, self.space), pad_graphs(pool_u, self.space)])
        raw = graph_keys(both, self.space)
        # Nodes: the distinct cells, in key order (so the fit does not depend on input order).
        _, first, inverse = np.unique(_void(raw), return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        nodes = both[torch.from_numpy(first)]
        keys = raw[first]
        n_nodes = len(first)
        if n_nodes <= int(self.hp["k"]):
            raise ArchrankError(
                f"ssa needs more than k={self.hp['k']} distinct cells (labelled + unlabelled), "
                f"got {n_nodes}"
            )
        # Targets: standardised, averaged over duplicate labelled cells.
        self.y_mean_ = float(y.mean())
        std = float(y.std())
        self.y_std_ = std if std > 1e-12 else 1.0
        lab_idx = torch.from_numpy(inverse[:len(graphs)])
        ysum = torch.zeros(n_nodes, dtype=torch.float64).index_add_(
            0, lab_idx, torch.from_numpy((y - self.y_mean_) / self.y_std_))
        ycnt = torch.zeros(n_nodes, dtype=torch.float64).index_add_(
            0, lab_idx, torch.ones(len(graphs), dtype=torch.float64))
        labelled = ycnt > 0
        target = (ysum / ycnt.clamp(min=1)).float()

        if self.uses_auto_encoder():
            ae, z = self._auto_encoder(nodes, keys)
        else:
            ae, z = None, torch.zeros(n_nodes, 0)
        self.ae_, self.z_, self.keys_ = ae, z, keys
        self.z_mean_ = z.mean(0)
        self.z_std_ = z.std(0).clamp(min=1e-6) if z.shape[1] else torch.ones(0)
        self.gz_ = self._graph_vectors(nodes, z)
        self.graph_ = build_knn_graph(self.gz_, int(self.hp["k"]), metric=self.hp["metric"],
                                      kernel=bool(self.hp["kernel"]))
        self.cells_ = make_cells(nodes, self.space)
        self.static_ = self._static(nodes, z)
        self.target_ = torch.where(labelled, target, torch.full_like(target, float("nan")))
        self._key_index = None
        self._train(labelled.nonzero().squeeze(1), target)

    def _new_net(self) -> _SSANet:
        assert self.static_ is not None
        encoder = None
        width = 0
        if bool(self.hp["finetune"]) and self.hp["node_encoder"] == "gates":
            encoder = _GatesFeatures(self.space, int(self.hp["encoder_dim"]))
            width = encoder.width
        elif bool(self.hp["finetune"]):
            assert self.ae_ is not None
            encoder = copy.deepcopy(self.ae_.encoder_module())
            width = int(encoder.body.width)  # type: ignore[union-attr,arg-type]
        return _SSANet(encoder, width, self.static_.shape[1], int(self.hp["hidden"]),
                       int(self.hp["layers"]), float(self.hp["dropout"]),
                       int(self.hp["head_hidden"]))

    def _train(self, lab: torch.Tensor, target: torch.Tensor) -> None:
        self.models_, self.history_, self._states = [], [], []
        for member in range(int(self.hp["ensemble"])):
            seed = self.library_seed * 1_000_003 + member * 7919
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net, states = self._train_member(lab, target, seed, member)
            self.models_.append(net)
            self._states.append(states)
        self._set_scores()

    def _train_member(self, lab: torch.Tensor, target: torch.Tensor, seed: int, member: int
                      ) -> tuple[_SSANet, list[torch.Tensor]]:
        assert self.cells_ is not None and self.static_ is not None
        assert self.graph_ is not None
        cells, static, graph, ae = self.cells_, self.static_, self.graph_, self.ae_
        hp = self.hp
        loss_fn = make_loss(hp["loss"], float(hp["margin"]), float(hp["mse_weight"]))
        recon_w = (float(hp["recon_weight"]) if bool(hp["finetune"])
                   and hp["node_encoder"] == "ae" else 0.0)
        recon_targets = ae.targets(cells) if recon_w > 0 and ae is not None else []
        gen = torch.Generator().manual_seed(seed)
        order = lab[torch.randperm(len(lab), generator=gen)]
        n_val = 0
        if len(lab) >= int(hp["early_stop_min"]):  # at most half (as the shared loop)
            n_val = min(len(lab) // 2, max(20, round(len(lab) * float(hp["val_fraction"]))))
        val, train = order[:n_val], order[n_val:]
        net = self._new_net()
        bs = auto_batch_size(len(train), hp["batch_size"])
        opt = torch.optim.Adam(net.parameters(), lr=auto_lr(bs, hp["lr"]),
                               weight_decay=float(hp["weight_decay"]), foreach=True)
        steps = int(hp["steps"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        refresh = int(hp["refresh_every"])
        eval_every = max(1, steps // 40)
        best_tau, best_state, best_step = -2.0, None, steps
        aggs: list[torch.Tensor] = []
        for step in range(steps + 1):
            if int(hp["layers"]) and step % refresh == 0 and step < steps:
                net.eval()  # historical neighbour states for the next ``refresh`` steps
                aggs = [graph.propagate(h) for h in net.full_pass(cells, static, graph)[:-1]]
            if n_val and (step % eval_every == 0 or step == steps):
                net.eval()
                with torch.no_grad():
                    out = net(cells[val], static[val], [a[val] for a in aggs])
                tau = kendall_tau_fast(out, target[val])
                if tau > best_tau:
                    best_tau, best_step = tau, step
                    best_state = copy.deepcopy(net.state_dict())
            if step == steps:
                break
            net.train()
            rows = train if bs == len(train) else train[
                torch.randperm(len(train), generator=gen)[:bs]]
            loss = loss_fn(net(cells[rows], static[rows], [a[rows] for a in aggs]),
                           target[rows])
            if recon_w > 0 and net.encoder is not None and ae is not None:
                pick = torch.randint(len(cells), (int(hp["recon_batch"]),), generator=gen)
                loss = loss + recon_w * ae.loss(net.encoder, cells[pick],
                                                [t[pick] for t in recon_targets])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % eval_every == 0 and not bool(torch.isfinite(loss.detach())):
                raise ArchrankError(f"predictor 'ssa' diverged (loss {float(loss)} at step "
                                    f"{step + 1}); lower its lr")
        if best_state is not None:
            net.load_state_dict(best_state)
            self.history_.append({"member": member, "best_step": best_step,
                                  "best_val_tau": best_tau})
        net.eval()
        return net, net.full_pass(cells, static, graph)

    def _set_scores(self) -> None:
        self.scores_ = torch.stack([m.scores(s) for m, s in zip(self.models_, self._states,
                                                               strict=True)]).mean(0)

    # -- predict ----------------------------------------------------------------------------
    def lookup(self, graphs: GraphBatch) -> np.ndarray:
        """Graph node of each cell (-1 for cells not in the graph)."""
        assert self.keys_ is not None
        if self._key_index is None:
            self._key_index = {row.tobytes(): i for i, row in enumerate(self.keys_)}
        index = self._key_index
        return np.fromiter((index.get(row.tobytes(), -1)
                            for row in graph_keys(graphs, self.space)),
                           dtype=np.int64, count=len(graphs))

    def _predict(self, graphs: GraphBatch) -> np.ndarray:
        return self.predict_scores(graphs) * self.y_std_ + self.y_mean_

    def predict_scores(self, graphs: GraphBatch, transductive: bool = True) -> np.ndarray:
        """Standardised scores; ``transductive=False`` attaches every cell as a new node
        (even cells already in the graph), which is how unseen cells are scored."""
        if not self.fitted_:
            raise ArchrankError("predictor 'ssa' is not fitted; call fit() first")
        check_graphs(graphs, self.space)
        assert self.scores_ is not None
        node = self.lookup(graphs) if transductive else np.full(len(graphs), -1)
        out = np.empty(len(graphs), dtype=np.float64)
        hit = node >= 0
        out[hit] = self.scores_[torch.from_numpy(node[hit])].numpy()
        if (~hit).any():
            with _threads(self.hp["threads"]):
                out[~hit] = self._inductive(graphs[torch.from_numpy(~hit)]).numpy()
        return out

    def _inductive(self, graphs: GraphBatch, chunk: int = 8192) -> torch.Tensor:
        assert self.graph_ is not None and self.z_ is not None
        parts = []
        for start in range(0, len(graphs), chunk):
            g = pad_graphs(graphs[start:start + chunk], self.space)
            cells = make_cells(g, self.space)
            z = self.ae_.embed(g) if self.ae_ is not None else torch.zeros(len(g), 0)
            static = self._static(g, z)
            nbr, w, w_self = self.graph_.attach(self._graph_vectors(g, z), self.gz_)
            parts.append(torch.stack([
                m.attached(cells, static, states, nbr, w, w_self)
                for m, states in zip(self.models_, self._states, strict=True)
            ]).mean(0))
        return torch.cat(parts).double()

    # -- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        assert self.graph_ is not None and self.keys_ is not None
        return {
            "hp": dict(self.hp),
            "ae": None if self.ae_ is None else self.ae_.get_state(),
            "graph": self.graph_.get_state(),
            "z": self.z_, "keys": torch.from_numpy(self.keys_), "target": self.target_,
            "z_mean": self.z_mean_, "z_std": self.z_std_,
            "y_mean": self.y_mean_, "y_std": self.y_std_,
            "members": [{k: v.detach().clone() for k, v in m.state_dict().items()}
                        for m in self.models_],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.hp.update(state["hp"])
        self.ae_ = (None if state["ae"] is None
                    else GraphAutoEncoder.from_state(state["ae"], self.space))
        self.graph_ = ArchGraph.from_state(state["graph"])
        self.z_ = state["z"]
        self.keys_ = state["keys"].numpy()
        self.target_ = state["target"]
        self.z_mean_, self.z_std_ = state["z_mean"], state["z_std"]
        self.y_mean_, self.y_std_ = float(state["y_mean"]), float(state["y_std"])
        nodes = graphs_from_keys(self.keys_, self.space)
        self.cells_ = make_cells(nodes, self.space)
        self.static_ = self._static(nodes, self.z_)
        self.gz_ = self._graph_vectors(nodes, self.z_)
        self.models_, self._states = [], []
        for weights in state["members"]:
            net = self._new_net()
            net.load_state_dict(weights)
            net.eval()
            self.models_.append(net)
            self._states.append(net.full_pass(self.cells_, self.static_, self.graph_))
        self._key_index = None
        self._set_scores()


__all__ = ["SSA_DEFAULTS", "SSAPredictor", "graph_keys", "graphs_from_keys"]
