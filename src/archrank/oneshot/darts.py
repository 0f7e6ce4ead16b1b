"""DARTS, first order (Liu et al., ICLR 2019), as a baseline on the engine's supernet.

Every edge runs all its ops, mixed with ``softmax(alpha)`` (``Supernet.forward_mixed``). Each
step first moves ``alpha`` by Adam on the loss of a validation batch (first order: the
weights are taken as they are), then the weights by the training recipe's SGD (cosine
schedule) on a training batch with ``alpha`` fixed. The final cell takes the strongest op of
every edge (``none`` included, as in the NAS-Bench-201 baseline, which is why DARTS collapses
to parameter-free cells there).

Durable like ``SupernetTrainer``: a ``Checkpoint`` after every epoch (sampler ``"darts"``,
``alpha`` and its optimiser in ``sampler_state``), deterministic for a seed (batch orders and
validation batches from ``(seed, epoch)`` and ``(seed, step)``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archrank.datasets import ArrayDataset
from archrank.errors import ArchrankError
from archrank.nn import torch_threads
from archrank.oneshot.checkpoint import Checkpoint
from archrank.oneshot.supernet import Supernet
from archrank.oneshot.trainer import StepCallback, _to_cpu, resolve_device
from archrank.oracles.training import TrainRecipe


class DartsSearch:
    """First-order DARTS over ``supernet`` (see the module docstring)."""

    name = "darts"

    def __init__(self, supernet: Supernet, dataset: ArrayDataset, recipe: TrainRecipe, *,
                 seed: int = 0, dataset_spec: str | None = None, alpha_lr: float = 3e-3,
                 val_batch: int = 128, threads: int = 1, device: str | None = "cpu") -> None:
        space = supernet.space
        self.supernet, self.dataset, self.recipe = supernet, dataset, recipe
        self.seed, self.alpha_lr, self.val_batch = int(seed), float(alpha_lr), int(val_batch)
        self.dataset_spec = dataset_spec or dataset.name
        self.threads, self.device = int(threads), resolve_device(device)
        self.alpha = torch.zeros(space.num_edges, len(space.edge_op_names))  # type: ignore[attr-defined]
        self.epoch = self.step = 0
        self.history: list[float] = []
        self.seconds = 0.0
        self._opt_state: dict[str, Any] = {}
        self._alpha_opt_state: dict[str, Any] = {}

    @classmethod
    def resume(cls, ckpt: Checkpoint, **kwargs: Any) -> DartsSearch:
        if ckpt.sampler != cls.name:
            raise ArchrankError(f"{ckpt.path}: a {ckpt.sampler} checkpoint, not a darts one")
        search = cls(ckpt.supernet(), ckpt.dataset(), ckpt.recipe, seed=ckpt.seed,
                     dataset_spec=ckpt.dataset_spec, **kwargs)
        search.epoch, search.step = ckpt.epoch, ckpt.step
        search.history, search.seconds = list(ckpt.history), ckpt.seconds
        search._opt_state = ckpt.optimizer
        if ckpt.sampler_state:
            search.alpha = ckpt.sampler_state["alpha"].clone()
            search._alpha_opt_state = ckpt.sampler_state["alpha_opt"]
        return search

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            setting=self.supernet.setting, recipe=self.recipe, sampler=self.name,
            seed=self.seed, dataset_spec=self.dataset_spec, data=self.dataset.describe(),
            epoch=self.epoch, step=self.step, history=list(self.history), seconds=self.seconds,
            model={k: v.detach().cpu().clone() for k, v in self.supernet.state_dict().items()},
            optimizer=_to_cpu(self._opt_state),
            sampler_state={"alpha": self.alpha.clone(),
                           "alpha_opt": _to_cpu(self._alpha_opt_state)})

    def final_codes(self) -> np.ndarray:
        return self.alpha.argmax(1).numpy().astype(np.int64)

    def steps_per_epoch(self) -> int:
        return len(self.dataset.y_train) // min(self.recipe.batch_size,
                                                len(self.dataset.y_train))

    def train(self, checkpoint: str | Path | None = None,
              on_step: StepCallback | None = None) -> DartsSearch:
        with torch_threads(self.threads):
            return self._train(checkpoint, on_step)

    def _train(self, checkpoint: str | Path | None, on_step: StepCallback | None
               ) -> DartsSearch:
        recipe, device = self.recipe, self.device
        net = self.supernet.to(device)
        opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              nesterov=recipe.nesterov and recipe.momentum > 0,
                              weight_decay=recipe.weight_decay)
        alpha = self.alpha.clone().to(device).requires_grad_(True)
        alpha_opt = torch.optim.Adam([alpha], lr=self.alpha_lr, betas=(0.5, 0.999),
                                     weight_decay=1e-3)
        if self._opt_state:
            opt.load_state_dict(self._opt_state)
        if self._alpha_opt_state:
            alpha_opt.load_state_dict(self._alpha_opt_state)
        data = self.dataset
        x_tr, y_tr = (torch.from_numpy(data.x_train).to(device),
                      torch.from_numpy(data.y_train).to(device))
        x_va, y_va = (torch.from_numpy(data.x_val).to(device),
                      torch.from_numpy(data.y_val).to(device))
        n, batch = len(y_tr), min(recipe.batch_size, len(y_tr))
        steps = self.steps_per_epoch()
        total = steps * recipe.epochs
        net.train()
        while self.epoch < recipe.epochs:
            start = time.perf_counter()
            perm = torch.from_numpy(
                np.random.default_rng([self.seed, self.epoch]).permutation(n)).to(device)
            losses = []
            for s in range(steps):
                vidx = torch.from_numpy(np.random.default_rng([self.seed, self.step, 9]).choice(
                    len(y_va), size=min(self.val_batch, len(y_va)), replace=False)).to(device)
                val_loss = F.cross_entropy(net.forward_mixed(x_va[vidx], F.softmax(alpha, -1)),
                                           y_va[vidx])
                alpha_opt.zero_grad(set_to_none=True)
                opt.zero_grad(set_to_none=True)
                val_loss.backward()
                alpha_opt.step()
                idx = perm[s * batch:(s + 1) * batch]
                for group in opt.param_groups:
                    group["lr"] = recipe.lr * 0.5 * (1.0 + math.cos(math.pi * self.step / total))
                weights = F.softmax(alpha.detach(), -1)
                loss = F.cross_entropy(net.forward_mixed(x_tr[idx], weights), y_tr[idx],
                                       label_smoothing=recipe.label_smoothing)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise ArchrankError(f"DARTS diverged: loss {value} at epoch "
                                        f"{self.epoch + 1}; try a lower learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.step += 1
                losses.append(value)
                if on_step is not None:
                    on_step(self.epoch, s + 1, steps, value)
            self.epoch += 1
            self.history.append(float(np.mean(losses)))
            self.seconds += time.perf_counter() - start
            self.alpha = alpha.detach().cpu().clone()
            self._opt_state = opt.state_dict()
            self._alpha_opt_state = alpha_opt.state_dict()
            if checkpoint is not None:
                self.checkpoint().save(checkpoint)
        self.alpha = alpha.detach().cpu().clone()
        return self
