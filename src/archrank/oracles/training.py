"""Real training: build a cell's network, train it with a fixed recipe, report accuracy.

The recipe (``TrainRecipe``) is fixed per oracle and recorded by ``describe()`` so that a
resumed search cannot change it. Defaults: SGD with Nesterov momentum 0.9, learning rate 0.1
with a cosine schedule to 0 (per step), weight decay 5e-4, batch size 128, no augmentation,
cross-entropy loss; NAS-Bench-201's recipe (which used batch 256 and 200 epochs) at batch
128 and far fewer epochs (5 on MNIST-1D, 20 on digits, 10 otherwise: ``DEFAULTS``).
``train_loss`` is the loss of the last training mini-batch (the training's end, not a mean
over the data). The network is the benchmark skeleton of the space at a
small size chosen per dataset (``DEFAULTS``) so that one MNIST-1D cell trains in seconds on
one CPU core (on nb201, the committed truth's recipe).

Determinism: the weights (``build_network(seed=...)``, thread-safe) and the batch order (a
private generator) derive from ``seed`` alone; training runs with ``threads`` torch threads (1
by default, also the right setting for one worker per core), so on the CPU the same seed gives
the same numbers in any process or thread at the same thread count (another count may change
the last digits of a loss: reductions split otherwise). A training that diverges (a non-finite
loss, weights or validation loss) or raises returns ``status="failed"`` with the reason.

Accuracies are percentages on the validation and test splits, losses their mean cross-entropy
(``val_loss``, ``test_loss``); the test metrics are absent when the dataset has no test split.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archrank.datasets import ArrayDataset, load_dataset
from archrank.errors import ArchrankError, first_line
from archrank.nn import (
    BENCHMARK_SIZE,
    build_network,
    check_network_space,
    check_size,
    resolve_device,
    torch_threads,
)
from archrank.nn.counting import count_flops, count_params
from archrank.oracles.base import Evaluation, Oracle
from archrank.spaces import get_space
from archrank.spaces.base import SearchSpace

# (space, dataset) -> network size and epochs used unless the user gives them ("*": any other
# dataset). Chosen so that one MNIST-1D cell trains in seconds on one core while cells still
# separate clearly (validation accuracy at the nb201 default: all-3x3-conv 97.6%, all-skip
# 93.5%, all-avg-pool 79.7%, all-none 10%; tests/test_training.py checks the gaps). nb201 on
# MNIST-1D is the truth recipe (width 16: docs/benchmarks.md, "The committed truth"; the
# seed-to-seed tau of width 8 was 0.28-0.36, of width 16 0.44-0.58); 1-9 s a cell with
# its evaluation on 16,800 signals. nb101 (width 16, 3-5 s) and darts (width 8, depth
# 5, 15-30 s) keep their sizes on the larger data.
DEFAULTS: dict[tuple[str, str], dict[str, int]] = {
    ("nb201", "mnist1d"): {"width": 16, "depth": 1, "epochs": 5},
    ("nb101", "mnist1d"): {"width": 16, "depth": 1, "epochs": 5},
    ("nb201", "digits"): {"width": 8, "depth": 1, "epochs": 20},
    ("nb101", "digits"): {"width": 16, "depth": 1, "epochs": 20},
    ("nb201", "*"): {"width": 16, "depth": 1, "epochs": 10},
    ("nb101", "*"): {"width": 32, "depth": 1, "epochs": 10},
    ("darts", "mnist1d"): {"width": 8, "depth": 5, "epochs": 5},
    ("darts", "*"): {"width": 16, "depth": 8, "epochs": 10},
}

# The network sizes that changed with the MNIST-1D default (runs recorded before resume with
# them: runs.config.as_recorded).
DEFAULTS_BEFORE: dict[tuple[str, str], dict[str, int]] = {("nb201", "mnist1d"): {"width": 8}}


def default_setup(space: str, dataset: str) -> dict[str, int]:
    """Width, depth and epochs used for ``space`` on ``dataset`` when none are given
    (generator variants such as ``mnist1d:num_samples=20000`` use their base's)."""
    check_network_space(space)
    base = dataset.partition(":")[0]
    return DEFAULTS.get((space, base), DEFAULTS[(space, "*")])


@dataclass(frozen=True)
class TrainRecipe:
    """How every network is trained (see the module docstring for the defaults)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):  # (the CLI names its flag)
            if getattr(self, name) < 1:
                raise ArchrankError(f"training recipe: {name} must be at least 1, got "
                                    f"{getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ArchrankError(f"learning rate must be a positive number, got {self.lr}")
        if not (math.isfinite(self.momentum) and self.momentum >= 0):
            raise ArchrankError(f"momentum must be at least 0, got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ArchrankError(f"weight decay must be at least 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ArchrankError(f"label smoothing must lie in [0, 1), got "
                                f"{self.label_smoothing}")


class TrainingOracle(Oracle):
    """Trains the network of a cell on a dataset; objective ``val_acc`` (percent).

    Example::

        oracle = TrainingOracle("nb201", "mnist1d", recipe=TrainRecipe(epochs=10), seed=0)
        result = oracle.evaluate(space.parse("|nor_conv_3x3~0|+|...|"))
        result.metrics["val_acc"], result.cost
    """

    objective = "val_acc"

    def __init__(
        self,
        space: SearchSpace | str = "nb201",
        dataset: str | Path | ArrayDataset = "mnist1d",
        *,
        recipe: TrainRecipe | None = None,
        width: int | None = None,
        depth: int | None = None,
        seed: int = 0,
        threads: int = 1,
        device: str = "cpu",
    ) -> None:
        self.space = get_space(space) if isinstance(space, str) else space
        if self.space.name not in BENCHMARK_SIZE:
            raise ArchrankError(
                f"real training supports the spaces {', '.join(BENCHMARK_SIZE)}, "
                f"not {self.space.name!r}"
            )
        self.dataset = load_dataset(dataset)
        default = default_setup(self.space.name, self.dataset.name)
        self.width = default["width"] if width is None else int(width)
        self.depth = default["depth"] if depth is None else int(depth)
        check_size(self.space.name, self.width, self.depth)
        self.recipe = recipe or TrainRecipe(epochs=default["epochs"])
        self.seed = int(seed)
        self.threads = int(threads)
        if self.threads < 1:
            raise ArchrankError(f"threads must be at least 1, got {threads}")
        self.device = str(resolve_device(device))  # checked now, not at every evaluation

    # -- pickling: ship a registered space by name (workers rebuild it) -----------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        try:
            if get_space(self.space.name) is self.space:
                state["space"] = self.space.name
        except ArchrankError:
            pass
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["space"], str):
            state["space"] = get_space(state["space"])
        self.__dict__.update(state)

    # -- Oracle API -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "dataset": self.dataset.describe(),
            "recipe": asdict(self.recipe),
            "network": {"width": self.width, "depth": self.depth},
            "seed": self.seed,
        }

    def build(self, arch: Any) -> nn.Module:
        """The untrained network of ``arch`` (weights from the oracle's seed)."""
        return build_network(
            self.space, arch, width=self.width, depth=self.depth,
            num_classes=self.dataset.num_classes, in_channels=self.dataset.in_channels,
            input_kind=self.dataset.input_kind, seed=self.seed,
        )

    def evaluate(self, arch: Any) -> Evaluation:
        """Train ``arch``'s network; never raises (failures come back as ``status="failed"``)."""
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        try:
            with torch_threads(self.threads):
                return self._train(arch, metrics)
        except Exception as exc:  # any failure is a result, not a crash of the search
            return Evaluation(metrics=metrics, cost=time.perf_counter() - start,
                              status="failed",
                              error=f"{type(exc).__name__}: {first_line(exc, None)}"[:500])

    # -- training ---------------------------------------------------------------------------
    def train_network(self, arch: Any) -> nn.Module:
        """``arch``'s network trained with the recipe, for callers that measure it themselves
        (``ArchrankError`` if the training diverges)."""
        net = self.build(arch)
        error = self._fit(net, {})
        if error:
            raise ArchrankError(error)
        return net

    def _train(self, arch: Any, metrics: dict[str, float]) -> Evaluation:
        data = self.dataset
        net = self.build(arch)
        metrics["params"] = float(count_params(net))
        metrics["flops"] = float(count_flops(net, data.input_shape))
        error = self._fit(net, metrics)
        if error:
            return Evaluation(metrics=metrics, cost=metrics["train_seconds"], status="failed",
                              error=error)
        train_seconds = metrics.pop("train_seconds")
        metrics["val_acc"], metrics["val_loss"] = self._assess(net, data.x_val, data.y_val)
        if not math.isfinite(metrics["val_loss"]):  # weights so large its logits overflow:
            metrics["train_seconds"] = train_seconds  # val_acc is one class's share
            return Evaluation(metrics=metrics, cost=train_seconds, status="failed",
                              error="training diverged: the validation loss is not finite")
        if data.x_test is not None and data.y_test is not None:
            metrics["test_acc"], metrics["test_loss"] = self._assess(net, data.x_test, data.y_test)
        metrics["train_seconds"] = train_seconds
        return Evaluation(metrics=metrics, cost=train_seconds)

    def _fit(self, net: nn.Module, metrics: dict[str, float]) -> str | None:
        """Train ``net`` in place; ``train_seconds`` and ``train_loss`` go into ``metrics``.
        The reason when the loss stops being finite, else ``None``."""
        recipe, data, device = self.recipe, self.dataset, torch.device(self.device)
        net.to(device)
        x_train = torch.from_numpy(data.x_train).to(device)
        y_train = torch.from_numpy(data.y_train).to(device)
        n = len(y_train)
        batch = min(recipe.batch_size, n)
        steps_per_epoch = n // batch  # the last partial batch is dropped
        total_steps = steps_per_epoch * recipe.epochs
        optimizer = torch.optim.SGD(
            net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
            nesterov=recipe.nesterov and recipe.momentum > 0,
            weight_decay=recipe.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
        )
        loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        order = torch.Generator().manual_seed(self.seed)

        start = time.perf_counter()
        net.train()
        loss = torch.zeros(())
        for epoch in range(recipe.epochs):
            perm = torch.randperm(n, generator=order).to(device)
            for step in range(steps_per_epoch):
                idx = perm[step * batch : (step + 1) * batch]
                loss = loss_fn(net(x_train[idx]), y_train[idx])
                if not torch.isfinite(loss):
                    metrics["train_seconds"] = time.perf_counter() - start
                    return (f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, "
                            f"step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        metrics["train_seconds"] = time.perf_counter() - start
        metrics["train_loss"] = float(loss.item())
        # the last step's update is checked by no later loss: a network whose weights it
        # blew up would score as the share of one class, reported "ok"
        if not all(bool(torch.isfinite(t).all()) for t in (*net.parameters(), *net.buffers())
                   if t.is_floating_point()):
            return f"training diverged: non-finite weights after epoch {recipe.epochs}"
        return None

    def _assess(self, net: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Accuracy (percent) and mean cross-entropy on a split; the loss separates cells whose
        accuracies tie and varies less from training seed to training seed."""
        net.eval()
        device = torch.device(self.device)
        correct, total_loss = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(y), self.recipe.eval_batch_size):
                xb = torch.from_numpy(x[i : i + self.recipe.eval_batch_size]).to(device)
                yb = torch.from_numpy(y[i : i + self.recipe.eval_batch_size]).to(device)
                logits = net(xb)
                correct += int((logits.argmax(1) == yb).sum())
                total_loss += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        return 100.0 * correct / len(y), total_loss / len(y)
