"""DARTS, first order (Liu et al., ICLR 2019), as a baseline on the engine's supernet.

Every edge runs all its ops, mixed with ``softmax(alpha)`` (``Supernet.forward_mixed``).
``DartsSampler`` plugs into ``SupernetTrainer`` through the sampler's ``forward`` hook: at each
step it first moves ``alpha`` by Adam on the loss of a validation batch (first order: the
weights are taken as they are), then hands the trainer the mixed-op logits of the training
batch with ``alpha`` fixed, and the trainer takes its usual SGD step on the weights. So DARTS
shares the trainer's recipe, schedule, checkpoints (``alpha`` and its optimiser are the
sampler's state), progress and resume. Single process only (``alpha`` is not synchronised,
and the mixed forward bypasses DDP's: the trainer refuses it under ``torchrun``).

Alpha's Adam (betas 0.5 / 0.999, weight decay 1e-3, as the original) steps at 3e-3, ten times
the original's 3e-4: there 50 CIFAR-10 epochs are ~19,500 alpha steps, here 50 MNIST-1D epochs
are ~1,250, and Adam moves a parameter about one learning rate a step, so alpha travels about as
far over the search (3.8 vs 5.9 units) instead of 16 times less.

The final cell is the space's discretisation of the op weights (``SearchSpace.discretize``):
on nb201 the strongest op of every edge (``none`` included, as in the NAS-Bench-201 baseline,
which is why DARTS collapses to parameter-free cells there); on darts, per node, the two
edges whose strongest op other than ``none`` is strongest, as DARTS does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archrank.datasets import ArrayDataset
from archrank.oneshot.sampler import ArchSampler, alpha_info
from archrank.spaces.base import SearchSpace


class DartsSampler(ArchSampler):
    """First-order DARTS as a trainer sampler (see the module docstring)."""

    name = "darts"
    distributed = False  # the mixed forward bypasses DDP's, and alpha is not synchronised

    def __init__(self, space: SearchSpace, seed: int = 0, *, dataset: ArrayDataset,
                 alpha_lr: float = 3e-3, val_batch: int = 128) -> None:
        super().__init__(space, seed)
        self.dataset = dataset
        self.alpha_lr, self.val_batch = float(alpha_lr), int(val_batch)
        self.alpha = torch.zeros(space.relaxed_shape(), requires_grad=True)
        self.optimizer = torch.optim.Adam([self.alpha], lr=self.alpha_lr, betas=(0.5, 0.999),
                                          weight_decay=1e-3)

    def sample(self, step: int) -> np.ndarray:
        """The current argmax cell (the trainer trains the mixture, see ``forward``)."""
        return self.final_codes()

    def final_codes(self) -> np.ndarray:
        """The space's discrete cell of ``softmax(alpha)`` (``SearchSpace.discretize``)."""
        return self.space.discretize(F.softmax(self.alpha.detach(), -1).numpy())

    def forward(self, model: Any, x: torch.Tensor, codes: tuple[int, ...], step: int
                ) -> torch.Tensor:
        net = getattr(model, "module", model)
        data = self.dataset
        idx = np.random.default_rng([self.seed, int(step), 9]).choice(
            len(data.y_val), size=min(self.val_batch, len(data.y_val)), replace=False)
        device = x.device
        xv = torch.from_numpy(data.x_val[idx]).to(device)
        yv = torch.from_numpy(data.y_val[idx]).to(device)
        val_loss = F.cross_entropy(net.forward_mixed(xv, F.softmax(self.alpha, -1)), yv)
        (grad,) = torch.autograd.grad(val_loss, [self.alpha])  # weights' grads untouched
        self.alpha.grad = grad
        self.optimizer.step()
        self.alpha.grad = None
        return net.forward_mixed(x, F.softmax(self.alpha.detach(), -1))

    def info(self) -> dict[str, Any]:
        return alpha_info(self.alpha)

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
