"""A learned proxy of the validation-loss landscape over the cells of a supernet's space.

Proxy validation (Li et al., ICML 2020 / TPAMI 2022): architectures map to their predicted
validation loss through the graph auto-encoder's encoder (``archrank.autoencoder``, gcn
encoder) and a small regression head. The model is refitted on the memory of observed
``(codes, validation loss)`` pairs as the search goes on, with the auto-encoder's
reconstruction loss kept as a regulariser (``recon_weight``), so the embedding keeps
describing whole cells while the head learns the losses. The encoder starts from an
unsupervised pre-training on random cells (``pretrain=True``) or from a random start
(``pretrain=False``; the docs record that pre-training ranked worse for GATES on nb201, so the
benchmark decides).

Relaxed input: ``predict_probs(probs)`` takes op probabilities per edge (``[B, E, K]``) in
place of op indices: each edge slot of the node form mixes the op-token embeddings with the
probabilities, and the edge passes information with weight ``1 - P(blocking ops)``. On one-hot
input this is exactly the integer path (tests), and it is differentiable, so a relaxed
architecture ``softmax(alpha)`` can descend the predicted loss. Op-on-edge spaces only: on
darts the landscape predicts integer cells alone (proxy-ea).

Every fit is full-batch Adam from a fresh optimiser, so the model is a function of its
weights and the memory alone: ``state_dict``/``load_state_dict`` restore it exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archrank.autoencoder import GraphAutoEncoder, to_node_form, vocabulary
from archrank.errors import ArchrankError
from archrank.spaces.base import SearchSpace


@dataclass(frozen=True)
class LandscapeConfig:
    """Size and training of the landscape model."""

    embed_dim: int = 16
    hidden: int = 32
    layers: int = 2
    head_hidden: int = 32
    pretrain: bool = True       # unsupervised auto-encoder pre-training on random cells
    pretrain_cells: int = 2000
    pretrain_steps: int = 300
    recon_weight: float = 0.1   # reconstruction loss as a regulariser while fitting losses
    fit_steps: int = 30         # Adam steps per refit (full batch over the memory)
    lr: float = 3e-3


class SoftNodeForm:
    """Builds the relaxed node form of op probabilities per edge (see the module docstring)."""

    def __init__(self, space: SearchSpace) -> None:
        if space.op_on != "edge":
            raise ArchrankError(f"the landscape needs an op-on-edge space, not {space.name!r}")
        n = space.max_nodes
        self.n = n
        self.vocab = len(vocabulary(space))
        self.node_vocab = len(space.node_op_names)
        self.ops = len(space.edge_op_names)
        edges = [tuple(e) for e in space.edges]  # type: ignore[attr-defined]
        iu, ju = torch.triu_indices(n, n, offset=1)
        self.iu, self.ju = iu, ju
        slots = [(int(i), int(j)) for i, j in zip(iu, ju, strict=True)]
        # edge of each triu slot (every slot is an edge of a full edge-cell DAG)
        self.edge_of_slot = torch.tensor([edges.index(p) for p in slots])
        blocking = set(getattr(space, "blocking", ()))
        self.blocking = torch.tensor([o in blocking for o in space.edge_op_names])
        ref = to_node_form(space.graphs_from_codes(  # type: ignore[attr-defined]
            np.zeros((1, len(edges)), dtype=np.int64)), space)
        self.node_tokens = F.one_hot(ref.tokens[0, :n], self.vocab).float()  # [n, V]
        self.mask = ref.mask[0]

    def __call__(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(weights [B, M, V], adj [B, M, M], mask [B, M])`` of ``probs`` [B, E, K]."""
        b, s = probs.shape[0], len(self.iu)
        p = probs[:, self.edge_of_slot]  # [B, S, K] in slot order
        edge_tok = torch.cat([p.new_zeros(b, s, self.node_vocab), p], 2)
        weights = torch.cat([self.node_tokens.to(p.dtype).expand(b, -1, -1), edge_tok], 1)
        on = 1.0 - (p * self.blocking.to(p.dtype)).sum(2)  # [B, S]
        slot = torch.arange(self.n, self.n + s)
        adj = p.new_zeros(b, self.n + s, self.n + s)
        adj = adj.index_put((torch.arange(b)[:, None], self.iu[None], slot[None]), on)
        adj = adj.index_put((torch.arange(b)[:, None], slot[None], self.ju[None]), on)
        return weights, adj, self.mask.expand(b, -1)


class Landscape:
    """Predicted validation loss of cells of ``space`` (see the module docstring)."""

    def __init__(self, space: SearchSpace, config: LandscapeConfig | None = None,
                 seed: int = 0) -> None:
        self.space = space
        self.config = config or LandscapeConfig()
        self.seed = int(seed)
        c = self.config
        self.ae = GraphAutoEncoder(space, seed=self.seed, encoder="gcn",
                                   embed_dim=c.embed_dim, hidden=c.hidden, layers=c.layers,
                                   steps=c.pretrain_steps, batch_size=256)
        # the relaxed input exists for op-on-edge spaces (a darts edge's op mixture has no
        # place in its genotype graph yet): elsewhere only integer cells are predicted
        self.soft = SoftNodeForm(space) if self.relaxes(space) else None
        self.code_width = space.relaxed_shape()[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.head = nn.Sequential(nn.Linear(c.embed_dim, c.head_hidden), nn.ReLU(),
                                      nn.Linear(c.head_hidden, 1))
        self.y_mean, self.y_std = 0.0, 1.0
        self.fitted = False
        if c.pretrain:
            rng = np.random.default_rng([self.seed, 11])
            codes = space.random_codes(c.pretrain_cells, rng)
            self.ae.fit(space.graphs_from_codes(codes))  # type: ignore[attr-defined]
        else:
            self.ae.initialise()
        self.model = self.ae.encoder_module()

    @staticmethod
    def relaxes(space: SearchSpace) -> bool:
        """Whether the landscape of ``space`` takes relaxed cells (``predict_probs``)."""
        return space.op_on == "edge"

    # -- prediction ---------------------------------------------------------------------------
    def _scale(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z).squeeze(1) * self.y_std + self.y_mean

    def predict_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Predicted validation loss ``[B]`` of relaxed cells ``probs`` [B, E, K]
        (differentiable)."""
        if self.soft is None:
            raise ArchrankError(f"the landscape of {self.space.name!r} takes no relaxed cells")
        z = self.model.encode_soft(*self.soft(probs))  # type: ignore[operator]
        return self._scale(z)

    def predict_codes(self, codes: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Predicted validation loss of cells given as op indices ``[B, E]`` (integer path)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, self.code_width)
        out = []
        with torch.no_grad():
            for i in range(0, len(codes), chunk):
                cells = self.ae.cells(self.space.graphs_from_codes(codes[i:i + chunk]))  # type: ignore[attr-defined]
                out.append(self._scale(self.model.encode(cells)))  # type: ignore[operator]
        return torch.cat(out).numpy() if out else np.zeros(0)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, codes: np.ndarray, losses: np.ndarray, steps: int | None = None) -> float:
        """Continue training on the memory ``(codes, losses)``; returns the last fit loss."""
        c = self.config
        y = torch.as_tensor(np.asarray(losses, dtype=np.float64), dtype=torch.float32)
        if len(y) < 2:
            return float("nan")
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) if float(y.std()) > 1e-8 else 1.0
        target = (y - self.y_mean) / self.y_std
        cells = self.ae.cells(self.space.graphs_from_codes(codes))  # type: ignore[attr-defined]
        recon_targets = self.ae.targets(cells)
        params = list(self.model.parameters()) + list(self.head.parameters())
        opt = torch.optim.Adam(params, lr=c.lr)
        self.model.train()
        value = float("nan")
        for _ in range(int(steps if steps is not None else c.fit_steps)):
            pred = self.head(self.model.encode(cells)).squeeze(1)  # type: ignore[operator]
            loss = F.mse_loss(pred, target)
            if c.recon_weight > 0:
                loss = loss + c.recon_weight * self.ae.loss(self.model, cells, recon_targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
        self.model.eval()
        self.fitted = True
        return value

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "seed": self.seed,
                "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "head": {k: v.detach().clone() for k, v in self.head.state_dict().items()},
                "y_mean": self.y_mean, "y_std": self.y_std, "fitted": self.fitted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.y_mean, self.y_std = float(state["y_mean"]), float(state["y_std"])
        self.fitted = bool(state["fitted"])
