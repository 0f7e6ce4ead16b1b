"""Proxy-validation sampling: a learned distribution over each edge's ops steers supernet
training (Li, Dong, Wang and Xu, "NAS via Proxy Validation", TPAMI 2022 / ICML 2020).

``ProxySampler`` is an ``ArchSampler`` for ``SupernetTrainer``:

- After each training step, the path just trained is scored on a validation batch (the
  supernet in train mode, no gradients, batch-norm running statistics left untouched) and the
  ``(codes, loss)`` pair enters the ``Memory``, a window of the ``memory`` most recent pairs.
- Every ``refit_every`` steps the ``Landscape`` (encoder + head) is refitted on the memory.
- Per-edge logits ``alpha`` [E, K] define the sampling distribution. A path is a hard
  Gumbel-softmax sample ``argmax(alpha + (1 - OIW_e) * g)``, ``g`` Gumbel noise (the hard sample
  does not depend on the temperature, the supernet trains single paths).
- Operation importance weight (OIW): at each refit, ``G_e = sum_k (dL/dalpha_ek)^2`` of the
  predicted loss ``L`` of the relaxed cell ``softmax(alpha)``, normalised over edges, averaged
  over refits. Normalisation ``"l2"`` (default) divides by the L2 norm of ``G`` over edges: the
  largest edge gets close to 1 when one edge dominates, and a flat ``G`` over six edges gives
  ``1/sqrt(6) = 0.41`` each, so the OIW visibly reduces noise. ``"sum"`` divides by the sum (a
  flat ``G`` gives ``1/6`` each, little effect), the ablation; ``"off"`` keeps OIW at 0 (plain
  Gumbel sampling). Either way OIW lies in [0, 1].
- ``alpha`` descends the predicted loss of ``softmax(alpha)``, divided by the memory's standard
  deviation (``alpha_steps`` plain gradient steps per refit, ``alpha_optimizer="sgd"``; "adam",
  a fresh Adam per refit, was the first default and collapsed the distribution: its steps have
  the size ``alpha_lr`` whatever the gradient): the differentiable form (``mode="darts"``).
- Evolutionary form (``mode="ea"``): regularized evolution (``strategies.evolution``) asks
  ``offspring`` children per step, the landscape ranks them and the best predicted one is
  trained; its observed validation loss is told back as the fitness (negated, evolution
  maximises). When evolution has nothing left to propose, the Gumbel sample is trained.
- ``sampling="uniform"`` trains uniform paths but still records the memory and fits the
  landscape (the ablation "learned sampler off").

The final cell (``final_codes``) is the landscape's minimum over the whole space
(``final="space"``, proxy-darts's default) or over the memory's cells (``final="memory"``,
proxy-ea's default: measured better there); over the memory and the neighbours of its best
cells for a space too large to enumerate (darts).
Paths come from the space (``random_codes``, ``discretize``) and alpha has the space's
``relaxed_shape`` (nb201: 6 edges x 5 ops; darts: 28 supernet edges x 8 ops, ``none`` first,
like the supernet's ``forward_mixed``; its Gumbel sample is discretised as DARTS does, the
top two inputs per node), so both forms serve any supernet space.

State (``state_dict``): alpha, OIW accumulators, memory, landscape weights and the evolution's
ask/tell log, replayed on load (strategies are deterministic functions of their seed and of
the ask/tell sequence). All randomness is drawn from generators derived from ``(seed, step)``,
so there is no hidden RNG state: a resumed search continues exactly.
"""

from __future__ import annotations

import math
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from archrank.datasets import ArrayDataset
from archrank.errors import ArchrankError
from archrank.oneshot.landscape import Landscape, LandscapeConfig
from archrank.oneshot.sampler import ArchSampler, alpha_info
from archrank.spaces.base import SearchSpace

MODES = ("darts", "ea")
# A space too large to enumerate (darts) chooses its final cell among the memory's cells and
# every neighbour (one op or one input changed) of its FINAL_PARENTS best observed ones: the
# landscape is trusted near what it was fitted on. A uniform pool (10,000 cells, the first
# rule) let it extrapolate: on darts its minimum was predicted far below every memory cell and
# scored worse with shared weights than the memory's best, seed after seed (docs/benchmarks.md).
FINAL_PARENTS = 20
NORMALISATIONS = ("l2", "sum", "off")


@dataclass(frozen=True)
class ProxyConfig:
    """Settings of proxy-validation sampling (see the module docstring)."""

    mode: str = "darts"
    sampling: str = "learned"     # learned | uniform (ablation)
    oiw_norm: str = "l2"          # l2 | sum | off
    memory: int = 256
    val_batch: int = 256
    refit_every: int = 25
    warmup_steps: int = 50        # proxy-darts: uniform paths until the landscape has data
                                  # (proxy-ea: evolution proposes from the first step)
    # plain gradient steps on the predicted loss in units of the memory's spread: they shrink
    # with the evidence and as softmax(alpha) saturates. A fresh Adam at every refit steps
    # lr * sign(grad) however flat the landscape, which collapsed alpha (docs/benchmarks.md).
    alpha_optimizer: str = "sgd"
    alpha_lr: float = 0.2
    alpha_steps: int = 5
    offspring: int = 4
    population: int = 20
    tournament: int = 5
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)
    # where an enumerable space takes the landscape's minimum: "space" (every cell) or
    # "memory" (the memory's cells: no extrapolation). "auto": memory for the evolutionary
    # form (a better cell on 5 of 6 searches, truth percentile 82.7 / 75.8 against 53.9 / 58.0
    # at 50 / 150 epochs), space for the differentiable one (better on 4 of 9, worse on 4;
    # docs/benchmarks.md).
    # Chosen at the end, so not a training setting: a finished search can be asked again with
    # the other (``same_training``).
    final: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ArchrankError(f"unknown proxy mode {self.mode!r}; choose {', '.join(MODES)}")
        if self.oiw_norm not in NORMALISATIONS:
            raise ArchrankError(f"unknown OIW normalisation {self.oiw_norm!r}; choose "
                                f"{', '.join(NORMALISATIONS)}")
        if self.alpha_optimizer not in ("sgd", "adam"):
            raise ArchrankError(f"unknown alpha optimizer {self.alpha_optimizer!r}; choose "
                                "sgd, adam")
        if self.final not in ("auto", "space", "memory"):
            raise ArchrankError(f"unknown final choice {self.final!r}; choose auto, space, "
                                "memory")
        if self.final == "auto":  # recorded resolved, so a checkpoint says what it picks by
            object.__setattr__(self, "final", "memory" if self.mode == "ea" else "space")
        if self.sampling not in ("learned", "uniform"):
            raise ArchrankError(f"unknown sampling {self.sampling!r}; choose learned, uniform")
        if self.memory < 2 or self.refit_every < 1 or self.val_batch < 1:
            raise ArchrankError("memory must be at least 2, refit_every and val_batch positive")
        if not (math.isfinite(self.alpha_lr) and self.alpha_lr > 0):
            raise ArchrankError(f"alpha_lr must be a positive number, got {self.alpha_lr}")
        for name in ("alpha_steps", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ArchrankError(f"{name} must be at least 0, got {getattr(self, name)}")
        for name in ("offspring", "population", "tournament"):
            if getattr(self, name) < 1:
                raise ArchrankError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def same_training(self, other: ProxyConfig) -> bool:
        """Whether ``other`` trains the same search (settings other than ``final`` equal)."""
        return replace(self, final=other.final) == other

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProxyConfig:
        # checkpoints from before alpha_optimizer existed stepped alpha with Adam, and those
        # from before ``final`` existed picked over the whole space
        return cls(**{"alpha_optimizer": "adam", "final": "space", **data,
                      "landscape": LandscapeConfig(**data["landscape"])})


class Memory:
    """The ``size`` most recent ``(codes, validation loss)`` pairs."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.items: deque[tuple[tuple[int, ...], float]] = deque(maxlen=self.size)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, codes: tuple[int, ...], loss: float) -> None:
        self.items.append((tuple(int(c) for c in codes), float(loss)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.items:
            return np.zeros((0, 0), dtype=np.int64), np.zeros(0)
        return (np.array([c for c, _ in self.items], dtype=np.int64),
                np.array([v for _, v in self.items]))

    def state_dict(self) -> dict[str, Any]:
        codes, losses = self.arrays()
        return {"size": self.size, "codes": torch.from_numpy(codes),
                "losses": torch.from_numpy(losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.items = deque(maxlen=self.size)
        for c, v in zip(state["codes"].tolist(), state["losses"].tolist(), strict=True):
            self.add(tuple(c), v)


def normalise_importance(g2: torch.Tensor, how: str) -> torch.Tensor:
    """Per-edge importance ``g2`` [E] (>= 0) normalised over edges into [0, 1]."""
    if how == "off":
        return torch.zeros_like(g2)
    denom = g2.norm(p=2) if how == "l2" else g2.sum()
    if float(denom) <= 0:
        return torch.zeros_like(g2)
    return (g2 / denom).clamp(0.0, 1.0)


@contextmanager
def frozen_bn_stats(net: nn.Module):
    """Forwards in train mode that leave every batch-norm buffer as it was."""
    bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    saved = [{k: v.clone() for k, v in m._buffers.items() if v is not None} for m in bns]
    try:
        yield
    finally:
        for m, buf in zip(bns, saved, strict=True):
            for k, v in buf.items():
                m._buffers[k].copy_(v)


class ProxySampler(ArchSampler):
    """Proxy-validation sampling for ``SupernetTrainer`` (see the module docstring)."""

    def __init__(self, space: SearchSpace, seed: int = 0, *, dataset: ArrayDataset,
                 config: ProxyConfig | None = None) -> None:
        super().__init__(space, seed)
        self.config = config or ProxyConfig()
        self.name = f"proxy-{self.config.mode}"
        try:
            self.edges, self.ops = space.relaxed_shape()
        except NotImplementedError:
            raise ArchrankError(f"proxy sampling needs a space with a supernet, not "
                                f"{space.name!r}") from None
        self.dataset = dataset
        self.memory = Memory(self.config.memory)
        self.landscape = Landscape(space, self.config.landscape, seed=self.seed)
        self.alpha = torch.zeros(self.edges, self.ops)
        self.oiw_sum = torch.zeros(self.edges)
        self.oiw_count = 0
        self.steps_seen = 0
        self.log: list[tuple[int, int, float]] = []  # EA: (asked, chosen, val loss) per step
        self._asked: list[Any] | None = None  # None: evolution was not asked this step
        self._chosen = -1
        self.evolution = self._new_evolution() if self.config.mode == "ea" else None

    def _new_evolution(self) -> Any:
        from archrank.strategies.evolution import RegularizedEvolution

        return RegularizedEvolution(self.space, population=self.config.population,
                                    tournament=self.config.tournament, seed=self.seed)

    # -- OIW and alpha ------------------------------------------------------------------------
    @property
    def oiw(self) -> torch.Tensor:
        """The operation importance weight per edge, in [0, 1]."""
        if self.oiw_count == 0:
            return torch.zeros(self.edges)
        return self.oiw_sum / self.oiw_count

    def alpha_gradient(self) -> torch.Tensor:
        """d(predicted loss of softmax(alpha))/d(alpha), [E, K]."""
        alpha = self.alpha.clone().requires_grad_(True)
        loss = self.landscape.predict_probs(F.softmax(alpha, -1)[None])[0]
        (grad,) = torch.autograd.grad(loss, alpha)
        return grad

    def _refit(self) -> None:
        codes, losses = self.memory.arrays()
        self.landscape.fit(codes, losses)
        g2 = self.alpha_gradient().pow(2).sum(1)
        self.oiw_sum += normalise_importance(g2, self.config.oiw_norm)
        self.oiw_count += 1
        alpha = self.alpha.clone().requires_grad_(True)
        c = self.config
        opt: torch.optim.Optimizer = (torch.optim.Adam([alpha], lr=c.alpha_lr)
                                      if c.alpha_optimizer == "adam"
                                      else torch.optim.SGD([alpha], lr=c.alpha_lr))
        for _ in range(c.alpha_steps):
            # in units of the memory's spread, so a step means the same at every refit
            loss = self.landscape.predict_probs(F.softmax(alpha, -1)[None])[0]
            opt.zero_grad(set_to_none=True)
            (loss / self.landscape.y_std).backward()
            opt.step()
        self.alpha = alpha.detach()

    # -- ArchSampler --------------------------------------------------------------------------
    def gumbel_sample(self, step: int) -> np.ndarray:
        """``argmax(alpha + (1 - OIW) * g)`` per edge, ``g`` Gumbel noise of ``(seed, step)``."""
        u = np.random.default_rng([self.seed, int(step), 3]).random((self.edges, self.ops))
        g = torch.from_numpy(-np.log(-np.log(np.clip(u, 1e-12, 1 - 1e-12)))).float()
        scores = self.alpha + (1.0 - self.oiw)[:, None] * g
        return self.space.discretize(scores.numpy())

    def sample(self, step: int) -> np.ndarray:
        c = self.config
        self._asked, self._chosen = None, -1
        if c.sampling == "uniform" or step < c.warmup_steps:
            rng = np.random.default_rng([self.seed, int(step)])
            uniform = self.space.random_codes(1, rng)[0]
            if self.evolution is None or c.sampling == "uniform":
                return uniform
        if self.evolution is not None:
            asked = self.evolution.ask(c.offspring)
            self._asked = asked
            if asked:
                codes = self.space.codes(asked)  # type: ignore[attr-defined]
                pick = (int(np.argmin(self.landscape.predict_codes(codes)))
                        if self.landscape.fitted else 0)
                self._chosen = pick
                return codes[pick]
        return self.gumbel_sample(step)

    def after_step(self, step: int, codes: tuple[int, ...], net: nn.Module) -> None:
        """Score the path just trained on a validation batch, remember it, tell evolution,
        refit the landscape every ``refit_every`` steps."""
        c, data = self.config, self.dataset
        n = len(data.y_val)
        idx = np.random.default_rng([self.seed, int(step), 5]).choice(
            n, size=min(c.val_batch, n), replace=False)
        device = next(net.parameters()).device
        x = torch.from_numpy(data.x_val[idx]).to(device)
        y = torch.from_numpy(data.y_val[idx]).to(device)
        with torch.no_grad(), frozen_bn_stats(net):
            loss = float(F.cross_entropy(net(x, codes), y))
        self.memory.add(codes, loss)
        if self.evolution is not None:
            if self._asked:
                self.evolution.tell(self._asked[self._chosen], -loss)
            self.log.append((-1 if self._asked is None else len(self._asked), self._chosen,
                             loss))
        self._asked, self._chosen = None, -1
        self.steps_seen = int(step) + 1
        if self.steps_seen % c.refit_every == 0 and len(self.memory) >= 2:
            self._refit()

    def final_codes(self) -> np.ndarray:
        """The landscape's minimum over the whole space (``final="memory"``: over the
        memory's cells), or, for a space too large to enumerate (darts), over the memory's
        cells and the neighbours of its ``FINAL_PARENTS`` best observed ones (module
        constants)."""
        seen, losses = self.memory.arrays()
        stale = not self.landscape.fitted or self.steps_seen % self.config.refit_every
        if stale and len(seen) >= 2:
            # the losses of the steps after the last refit are in the memory, not yet in the
            # landscape (a search shorter than one refit has none at all): fit them first
            self.landscape.fit(seen, losses)
        if not self.landscape.fitted and len(seen):  # one observation: nothing to learn
            return seen[int(np.argmin(losses))]
        if self.space.enumerable:
            pick = None
            if self.config.final == "memory" and len(seen):
                pick = self._connected_minimum(np.unique(seen, axis=0))
            if pick is None:
                pick = self._connected_minimum(
                    self.space.codes(self.space.enumerate()))  # type: ignore[attr-defined]
            return pick
        if not len(seen):  # nothing trained yet: the landscape's pick among random cells
            seen = self.space.random_codes(FINAL_PARENTS, np.random.default_rng([self.seed, 13]))
            losses = np.zeros(len(seen))
        best = seen[np.argsort(losses, kind="stable")[:FINAL_PARENTS]]
        near = [n for arch in self.space.from_codes(best)  # type: ignore[attr-defined]
                for n in self.space.neighbours(arch)]
        codes = np.unique(np.concatenate([seen, self.space.codes(near)]), axis=0)
        return codes[int(np.argmin(self.landscape.predict_codes(codes)))]

    def _connected_minimum(self, codes: np.ndarray) -> np.ndarray | None:
        """The landscape's minimum among ``codes`` (None if none is connected). A cell whose
        output does not depend on its input (nb201: every input-to-output path cut by
        `none`) is never an answer, whatever the landscape says: proxy-darts picked the
        all-`none` cell on one seed of the ablation runs (docs/benchmarks.md)."""
        connected = np.array([bool(self.space.live_ops(c)) for c in codes])
        if not connected.any():
            return None
        pred = self.landscape.predict_codes(codes)
        return codes[int(np.argmin(np.where(connected, pred, np.inf)))]

    def info(self) -> dict[str, Any]:
        """Collapse diagnostics: alpha's entropy and peaks, the OIW, distinct memory cells;
        and where the final cell was taken (``final``, resolved)."""
        codes, _ = self.memory.arrays()
        return {**alpha_info(self.alpha), "oiw": [round(float(v), 4) for v in self.oiw],
                "memory_distinct": len({tuple(c) for c in codes.tolist()}),
                "memory": len(self.memory), "final": self.config.final}

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        log = np.array(self.log, dtype=np.float64).reshape(-1, 3)
        return {"config": self.config.to_dict(), "alpha": self.alpha.clone(),
                "oiw_sum": self.oiw_sum.clone(), "oiw_count": self.oiw_count,
                "steps_seen": self.steps_seen, "memory": self.memory.state_dict(),
                "landscape": self.landscape.state_dict(), "log": torch.from_numpy(log)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if not ProxyConfig.from_dict(state["config"]).same_training(self.config):
            raise ArchrankError("the checkpoint's proxy sampler has other settings")
        self.alpha = state["alpha"].clone()
        self.oiw_sum, self.oiw_count = state["oiw_sum"].clone(), int(state["oiw_count"])
        self.steps_seen = int(state["steps_seen"])
        self.memory.load_state_dict(state["memory"])
        self.landscape.load_state_dict(state["landscape"])
        self.log = [(int(a), int(ch), float(v)) for a, ch, v in state["log"].tolist()]
        if self.config.mode == "ea":
            self.evolution = self._new_evolution()
            for asked_n, chosen, loss in self.log:  # replay the ask/tell sequence
                if asked_n >= 0:
                    asked = self.evolution.ask(self.config.offspring)
                    if len(asked) != asked_n:
                        raise ArchrankError("the evolution log does not replay")
                    if asked:
                        self.evolution.tell(asked[chosen], -loss)
