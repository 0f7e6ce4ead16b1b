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

Cells are read in the auto-encoder's supernet form (``form="supernet"``): path codes through
the space's ``SupernetGraph``, one op node per supernet edge. So the same graph takes relaxed
cells: ``predict_probs(probs)`` takes op probabilities per edge (``[B, E, K]``, the shape of
``relaxed_shape``) in place of op indices: each op node mixes the op-token embeddings with the
probabilities, and the edge passes information with weight ``1 - P(blocking ops)``. On one-hot
input this is exactly the integer path (tests), and it is differentiable, so a relaxed
architecture ``softmax(alpha)`` can descend the predicted loss. On nb201 the supernet graph is
the auto-encoder's usual line graph; on darts it has an op node on each of the 28 supernet
edges (an integer cell: its 8 chosen edges per cell on, the others ``none``).

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

from archrank.autoencoder import GraphAutoEncoder
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


class Landscape:
    """Predicted validation loss of cells of ``space`` (see the module docstring)."""

    def __init__(self, space: SearchSpace, config: LandscapeConfig | None = None,
                 seed: int = 0) -> None:
        self.space = space
        self.config = config or LandscapeConfig()
        self.seed = int(seed)
        c = self.config
        self.ae = GraphAutoEncoder(space, seed=self.seed, form="supernet", encoder="gcn",
                                   embed_dim=c.embed_dim, hidden=c.hidden, layers=c.layers,
                                   steps=c.pretrain_steps, batch_size=256)
        assert self.ae.supernet is not None
        self.form = self.ae.supernet
        self.code_width = self.form.edges
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.head = nn.Sequential(nn.Linear(c.embed_dim, c.head_hidden), nn.ReLU(),
                                      nn.Linear(c.head_hidden, 1))
        self.y_mean, self.y_std = 0.0, 1.0
        self.fitted = False
        if c.pretrain:
            rng = np.random.default_rng([self.seed, 11])
            codes = space.random_codes(c.pretrain_cells, rng)
            self.ae.fit(codes)
        else:
            self.ae.initialise()
        self.model = self.ae.encoder_module()

    # -- prediction ---------------------------------------------------------------------------
    def _scale(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z).squeeze(1) * self.y_std + self.y_mean

    def predict_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Predicted validation loss ``[B]`` of relaxed cells ``probs`` [B, E, K]
        (differentiable)."""
        z = self.model.encode_soft(*self.form.relaxed(probs))  # type: ignore[operator]
        return self._scale(z)

    def predict_codes(self, codes: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Predicted validation loss of cells given as op indices ``[B, E]`` (integer path)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, self.code_width)
        out = []
        with torch.no_grad():
            for i in range(0, len(codes), chunk):
                cells = self.ae.cells(codes[i:i + chunk])
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
        cells = self.ae.cells(codes)
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
