"""The training loop every torch predictor shares (GATES and the neural baselines).

Subclass contract (keep it stable, several predictors rely on it):

* set ``name`` and, optionally, ``defaults``: a dict of model hyper-parameters (and overrides
  of the training defaults in ``TRAIN_DEFAULTS``); every key is a valid constructor keyword;
* implement ``build_model(self) -> nn.Module`` whose ``forward(graphs: GraphBatch)`` returns
  one score per cell, a float tensor [B]. Read hyper-parameters from ``self.hp`` and the
  vocabulary from ``self.space`` (``node_op_names``, ``edge_op_names``, ``max_nodes``,
  ``op_on``). The module receives batches already on ``self.device_``.

Everything else lives here, with defaults that need no tuning (chosen by measurement, see
docs/benchmarks.md): targets standardised; the pairwise hinge ranking loss
(``losses.make_loss``); Adam with a cosine schedule; mini-batches of a quarter of the set
(64 to 256 cells: the hinge loss compares every pair of a batch) shuffled by a seeded
generator, with the learning rate scaled to the batch; epochs scaled to the data size (small
sets get more passes); early stopping on a held-out slice only when the set is large enough
to spare one; an ensemble of three seeds below 300 cells; chunked prediction under
``torch.inference_mode`` spread over one worker thread per core; ``get_state`` /
``set_state`` for ``save``/``load``. Arch-level inputs and auxiliary targets
(``Predictor``'s ``arch_inputs`` / ``aux_targets``) go through the same loop for any model
whose ``forward(graphs, arch=None, with_aux=False)`` takes them: inputs rank-transformed
against the training cells (to [-1, 1]; robust to heavy tails and to proxies' ``-inf``),
auxiliary targets standardised per column, their loss an MSE over the present values only
(NaN = masked), weighted by ``aux_weight`` next to the main ranking loss. Training runs
single-threaded (tiny ops do not split well across cores) inside ``torch.random.fork_rng``
seeded from ``seed``, so a fit is deterministic and leaves the caller's global RNG untouched.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from archrank.errors import ArchrankError, InvalidOption, first_line
from archrank.executors import available_cores
from archrank.predictors.base import Predictor, check_graphs, check_params, default_device
from archrank.predictors.losses import LOSSES, make_loss
from archrank.spaces.base import GraphBatch, SearchSpace

TRAIN_DEFAULTS: dict[str, Any] = {
    "loss": "hinge",          # hinge | mse | combined  (see losses.py)
    "margin": 0.1,            # hinge margin, in units of standardised target
    "mse_weight": 1.0,        # weight of the MSE term in the combined loss
    "lr": None,               # None: 1e-3 at batch 64, scaled up with the batch (auto_lr)
    "weight_decay": 1e-4,
    "batch_size": None,       # None: a quarter of the training set, within [64, 256]
    "epochs": None,           # None: scaled to the training-set size (auto_epochs)
    "base_epochs": 200,       # auto epochs: this many, raised on small sets so that there
    "min_steps": 1000,        # are at least min_steps optimiser steps, but never more
    "max_epochs": 1000,       # than max_epochs
    "early_stop_min": 2000,   # hold out a validation slice only from this many cells on
    "val_fraction": 0.1,      # (measured: at 1,000 cells losing 10% of the data and a noisy
                              # 100-cell validation cost more than early stopping saves)
    "patience": 8,            # stop after this many validations without improvement,
                              # never in the first half of the epochs
    "ensemble": None,         # members (seeds) whose scores are averaged; None: 3 below
    "ensemble_below": 300,    # this many training cells (cheap there, and it helps), else 1
    "device": None,           # None: the GPU when present, else the CPU
    "threads": None,          # predict's worker threads (None: one per available core);
                              # training always runs on one thread
    "predict_chunk": 4096,    # cells per forward pass in predict() (cache-sized: fewer
                              # for graphs over 7 nodes); chunks are spread over one worker
                              # thread per core
}
# only for models that take auxiliary targets (``uses_aux_targets``)
AUX_DEFAULTS: dict[str, Any] = {"aux_weight": 0.1}  # 0.5 measured worse on nb101


def rank_reference(x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per column of ``x`` [n, k]: its distinct values and their mid-quantiles in [-1, 1]."""
    out = []
    for col in _finite(x).T:
        srt = np.sort(col)
        u = np.unique(srt)
        mid = (np.searchsorted(srt, u, "left") + np.searchsorted(srt, u, "right") - 1) / 2
        q = 2 * mid / max(len(srt) - 1, 1) - 1 if len(u) > 1 else np.zeros(1)
        out.append((u, q))
    return out


def rank_transform(x: np.ndarray, ref: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``x`` [n, k] mapped column-wise onto the quantiles of ``rank_reference`` (monotone,
    piecewise linear between the reference values, clipped to [-1, 1] outside them)."""
    x = _finite(x)
    return np.stack([np.interp(x[:, k], u, q) for k, (u, q) in enumerate(ref)], axis=1)


def _finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=np.float64), neginf=-1e300, posinf=1e300)


def auto_batch_size(n_train: int, batch_size: int | None = None) -> int:
    """The mini-batch size the loop uses for ``n_train`` cells: ``batch_size`` when given,
    else a quarter of the set within [64, 256] (the hinge loss compares every pair of a batch,
    so larger sets profit from larger batches: more pairs per step, fewer steps)."""
    if batch_size is not None:
        return max(1, min(int(batch_size), n_train))
    return max(1, min(n_train, int(np.clip(n_train // 4, 64, 256))))


def auto_lr(batch_size: int, lr: float | None = None) -> float:
    """``lr`` when given, else 1e-3 at batch 64 grown as ``(batch / 64) ** 0.8`` (3e-3 at
    256): larger batches of the hinge loss average more pairs, so they take larger steps."""
    if lr is not None:
        return float(lr)
    return 1e-3 * max(1.0, batch_size / 64) ** 0.8


def configure_threads(threads: int | None, *, small_work: bool = False) -> int:
    """Use ``threads`` intra-op threads; by default every available core, or one for
    ``small_work`` (mini-batch training, where splitting tiny ops across threads costs more
    than it saves, and is far worse when other processes compete for the cores)."""
    wanted = threads if threads else (1 if small_work else available_cores())
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def kendall_tau_fast(a: torch.Tensor, b: torch.Tensor) -> float:
    """Kendall tau of two vectors (for early stopping): tau-a from one dense sign matrix for
    short ones; tau-b by sorting (scipy) above 2,000 values, where the dense matrices would
    take gigabytes (a 42,000-cell validation slice: 7 GB each). Without ties they agree."""
    if a.shape[0] > 2000:
        from scipy.stats import kendalltau

        tau = kendalltau(a.detach().cpu().numpy(), b.detach().cpu().numpy(), variant="b")[0]
        return float(tau) if np.isfinite(tau) else 0.0
    sa = torch.sign(a[:, None] - a[None, :])
    sb = torch.sign(b[:, None] - b[None, :])
    n = a.shape[0]
    return float((sa * sb).sum() / max(n * (n - 1), 1))


# Training parameters that count something and must be at least 1 when set (epochs,
# batch_size and ensemble, like lr > 0, are every component's: ``params.AT_LEAST_ONE``; threads
# 0, like None, means one per core).
POSITIVE_TRAIN = ("base_epochs", "max_epochs", "patience", "predict_chunk")


class NeuralPredictor(Predictor):
    """Base class of torch predictors: subclasses only build the network (``build_model``)."""

    defaults: ClassVar[dict[str, Any]] = {}
    #: the network's sizes that must be at least 1 (a zero-width layer predicts a constant)
    positive_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, space: SearchSpace, *, seed: int = 0, **params: Any) -> None:
        hp = check_params(f"predictor {self.name!r}", params, self.param_defaults(),
                          at_least_one=(*POSITIVE_TRAIN, *self.positive_params))
        super().__init__(space, seed=seed, **params)
        self.hp: dict[str, Any] = hp
        if self.hp["loss"] not in LOSSES:
            raise ArchrankError(
                f"unknown loss {self.hp['loss']!r}; choose one of: {', '.join(LOSSES)}"
            )
        self._check_ranges()
        self.models_: list[nn.Module] = []
        self.y_mean_ = 0.0
        self.y_std_ = 1.0
        self.history_: list[dict[str, Any]] = []
        self.arch_ref_: list[tuple[np.ndarray, np.ndarray]] = []
        self.aux_mean_ = np.zeros(0)
        self.aux_std_ = np.ones(0)
        self.device_ = self._device()

    def param_defaults(self) -> dict[str, Any]:
        return {**TRAIN_DEFAULTS, **(AUX_DEFAULTS if self.uses_aux_targets else {}),
                **self.defaults}

    def check_build(self) -> None:
        """Build the network once (``make_predictor`` does, before any work): parameters it
        cannot be built with are a one-line error, not a failure in the middle of a fit."""
        try:
            with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
                self.build_model()
        except (ValueError, RuntimeError, TypeError) as exc:
            raise InvalidOption(f"predictor {self.name!r}: its parameters build no network "
                                f"({first_line(exc)})") from None

    def _check_ranges(self) -> None:
        hp, owner = self.hp, f"predictor {self.name!r}"
        if hp.get("batch_size") is not None and hp["batch_size"] < 2:
            raise InvalidOption(f"{owner}: parameter 'batch_size' must be at least 2 (a batch "
                                f"of one cell has no pair to rank; the loop skips it), got "
                                f"{hp['batch_size']}")
        if not 0 < hp["val_fraction"] < 1:
            raise InvalidOption(f"{owner}: parameter 'val_fraction' must lie in (0, 1), got "
                                f"{hp['val_fraction']}")
        if "dropout" in hp and not 0 <= hp["dropout"] < 1:
            raise InvalidOption(f"{owner}: parameter 'dropout' must lie in [0, 1), got "
                                f"{hp['dropout']}")

    def _device(self) -> torch.device:
        if not self.hp["device"]:
            return default_device()
        try:
            device = torch.device(self.hp["device"])
        except RuntimeError:
            raise InvalidOption(f"predictor {self.name!r}: unknown device "
                                f"{self.hp['device']!r}; use cpu or cuda") from None
        if device.type not in ("cpu", "cuda"):  # torch parses mps, xpu... this build may lack
            raise InvalidOption(f"predictor {self.name!r}: device {self.hp['device']!r}; use "
                                "cpu or cuda")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidOption(f"predictor {self.name!r}: device {self.hp['device']!r}, but "
                                "no CUDA GPU is available to this torch")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise InvalidOption(f"predictor {self.name!r}: device {self.hp['device']!r}, but "
                                f"this machine has {torch.cuda.device_count()} GPU(s)")
        return device

    # -- subclass hook ----------------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh, untrained network mapping a ``GraphBatch`` to scores [B]."""

    # -- training ---------------------------------------------------------------------------
    def auto_batch_size(self, n_train: int) -> int:
        """See the module function ``auto_batch_size``."""
        return auto_batch_size(n_train, self.hp["batch_size"])

    def auto_lr(self, batch_size: int) -> float:
        """See the module function ``auto_lr``."""
        return auto_lr(batch_size, self.hp["lr"])

    def auto_ensemble(self, n_train: int) -> int:
        """``ensemble``, or 3 members below ``ensemble_below`` cells, else 1."""
        if self.hp["ensemble"] is not None:
            return max(1, int(self.hp["ensemble"]))
        return 3 if n_train < int(self.hp["ensemble_below"]) else 1

    def auto_epochs(self, n_train: int, batch_size: int | None = None) -> int:
        """Epochs for ``n_train`` cells (unless ``epochs`` is set).

        ``base_epochs``, raised for small sets (few steps per epoch) to reach ``min_steps``
        optimiser steps, capped at ``max_epochs``.
        """
        if self.hp["epochs"] is not None:
            return int(self.hp["epochs"])
        bs = batch_size or self.auto_batch_size(n_train)
        steps_per_epoch = max(1, -(-n_train // bs))
        need = -(-int(self.hp["min_steps"]) // steps_per_epoch)
        return int(min(max(need, int(self.hp["base_epochs"])), int(self.hp["max_epochs"])))

    def _fit(self, graphs: GraphBatch, y: np.ndarray, unlabeled: GraphBatch | None) -> None:
        self._fit_signals(graphs, y, unlabeled, None, None)

    def _fit_signals(self, graphs: GraphBatch, y: np.ndarray, unlabeled: GraphBatch | None,
                     arch: np.ndarray | None, aux: np.ndarray | None) -> None:
        check_graphs(graphs, self.space)
        self.y_mean_ = float(y.mean())
        std = float(y.std())
        self.y_std_ = std if std > 1e-12 else 1.0
        target = torch.as_tensor((y - self.y_mean_) / self.y_std_, dtype=torch.float32)
        extras: dict[str, torch.Tensor] = {}
        self.arch_ref_ = []
        if arch is not None:
            self.arch_ref_ = rank_reference(arch)
            extras["arch"] = torch.as_tensor(rank_transform(arch, self.arch_ref_),
                                             dtype=torch.float32)
        if aux is not None:
            present = ~np.isnan(aux)
            self.aux_mean_ = np.array([aux[present[:, k], k].mean() if present[:, k].any()
                                       else 0.0 for k in range(aux.shape[1])])
            self.aux_std_ = np.array([max(aux[present[:, k], k].std(), 1e-12)
                                      if present[:, k].sum() > 1 else 1.0
                                      for k in range(aux.shape[1])])
            scaled = np.where(present, (aux - self.aux_mean_) / self.aux_std_, 0.0)
            extras["aux"] = torch.as_tensor(scaled, dtype=torch.float32)
            extras["aux_mask"] = torch.as_tensor(present, dtype=torch.float32)
        self.models_ = []
        self.history_ = []
        # one intra-op thread, whatever ``threads`` says: mini-batches of at most 256 small
        # graphs do not split, and a second thread only spins in OpenMP barriers (a guided
        # search took twice the CPU for the same wall time, and next to a second process 20
        # times the wall time: docs/benchmarks.md)
        with torch_threads(1):
            for member in range(self.auto_ensemble(len(graphs))):
                seed = self.library_seed * 1_000_003 + member * 7919
                self.models_.append(self._train_member(graphs, target, seed, extras))

    def _loss(self, model: nn.Module, loss_fn: Any, g: GraphBatch, y: torch.Tensor,
              extras: dict[str, torch.Tensor]) -> torch.Tensor:
        """The ranking loss of the objective, plus ``aux_weight`` times the masked MSE of the
        auxiliary targets when there are any."""
        if not extras:
            return loss_fn(model(g), y)
        kwargs: dict[str, Any] = {"arch": extras["arch"]} if "arch" in extras else {}
        if "aux" not in extras:
            return loss_fn(model(g, **kwargs), y)
        score, aux_pred = model(g, with_aux=True, **kwargs)
        mask = extras["aux_mask"]
        aux_loss = (((aux_pred - extras["aux"]) ** 2) * mask).sum() / mask.sum().clamp(min=1)
        return loss_fn(score, y) + float(self.hp["aux_weight"]) * aux_loss

    def _train_member(self, graphs: GraphBatch, y: torch.Tensor, seed: int,
                      extras: dict[str, torch.Tensor] | None = None) -> nn.Module:
        device = self.device_
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            n = len(graphs)
            order = torch.randperm(n, generator=gen)
            n_val = 0
            if n >= int(self.hp["early_stop_min"]):
                n_val = min(n // 2, max(50, round(n * float(self.hp["val_fraction"]))))
            val_idx, train_idx = order[:n_val], order[n_val:]
            g_all = graphs.to(device)
            y_all = y.to(device)
            g_val, y_val = g_all[val_idx.to(device)], y_all[val_idx.to(device)]
            g_tr, y_tr = g_all[train_idx.to(device)], y_all[train_idx.to(device)]
            ex_all = {k: v.to(device) for k, v in (extras or {}).items()}
            ex_val = {k: v[val_idx.to(device)] for k, v in ex_all.items()}
            ex_tr = {k: v[train_idx.to(device)] for k, v in ex_all.items()}
            n_tr = len(train_idx)

            model = self.build_model().to(device)
            loss_fn = make_loss(self.hp["loss"], float(self.hp["margin"]),
                                float(self.hp["mse_weight"]))
            bs = self.auto_batch_size(n_tr)
            opt = torch.optim.Adam(model.parameters(), lr=self.auto_lr(bs),
                                   weight_decay=float(self.hp["weight_decay"]))
            epochs = self.auto_epochs(n_tr, bs)
            # the batches an epoch really takes (a last batch of one cell is skipped), so the
            # cosine schedule ends at zero
            per_epoch = sum(1 for start in range(0, n_tr, bs)
                            if min(bs, n_tr - start) >= 2 or n_tr < 2)
            steps = epochs * max(1, per_epoch)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
            eval_every = max(1, epochs // 25)
            best_tau, best_state, best_epoch, stale = -2.0, None, epochs, 0
            last_loss: torch.Tensor | None = None
            for epoch in range(epochs):
                model.train()
                perm = torch.randperm(n_tr, generator=gen).to(device)
                for start in range(0, n_tr, bs):
                    idx = perm[start:start + bs]
                    if len(idx) < 2 and n_tr >= 2:
                        continue
                    loss = self._loss(model, loss_fn, g_tr[idx], y_tr[idx],
                                      {k: v[idx] for k, v in ex_tr.items()})
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    last_loss = loss.detach()
                # a diverged network scores every cell NaN, which a search would read as "no
                # candidate left": an error now (once an epoch: no sync per step)
                if last_loss is not None and not bool(torch.isfinite(last_loss)):
                    raise ArchrankError(f"predictor {self.name!r} diverged (loss "
                                        f"{float(last_loss)} at epoch {epoch + 1}); lower its "
                                        f"lr (now {self.auto_lr(bs):g})")
                if n_val and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
                    model.eval()
                    with torch.inference_mode():
                        kw = {"arch": ex_val["arch"]} if "arch" in ex_val else {}
                        tau = kendall_tau_fast(model(g_val, **kw), y_val)
                    self.history_.append({"seed": seed, "epoch": epoch + 1, "val_tau": tau})
                    if tau > best_tau:
                        best_tau, best_epoch, stale = tau, epoch + 1, 0
                        best_state = copy.deepcopy(model.state_dict())
                    else:
                        stale += 1
                        if stale >= int(self.hp["patience"]) and 2 * (epoch + 1) >= epochs:
                            break
            if best_state is not None:
                model.load_state_dict(best_state)
                self.history_.append({"seed": seed, "best_epoch": best_epoch,
                                      "best_val_tau": best_tau})
        model.eval()
        return model

    # -- prediction -------------------------------------------------------------------------
    def _predict(self, graphs: GraphBatch) -> np.ndarray:
        return self._predict_signals(graphs, None)

    def _predict_signals(self, graphs: GraphBatch, arch: np.ndarray | None) -> np.ndarray:
        """Scores in chunks under ``inference_mode``; on the CPU the chunks are shared by one
        single-threaded worker per core (no barrier between cores, so a busy core does not
        stall the other, as intra-op threads would)."""
        check_graphs(graphs, self.space)
        n = len(graphs)
        out = np.empty(n, dtype=np.float64)
        workers = 1 if self.device_.type != "cpu" else int(self.hp["threads"] or available_cores())
        chunk = int(self.hp["predict_chunk"])
        if self.device_.type == "cpu":
            # cache-sized: at most 7 x predict_chunk node rows (nb101's 7 nodes at the
            # default; darts's 21-node graphs get 1,365 cells, measured 25% cheaper than 4,096)
            chunk = min(chunk, max(1, 7 * chunk // max(7, graphs.num_nodes)))
            chunk = max(256, min(chunk, -(-n // workers)))
        else:
            chunk = max(chunk, 65536)

        arch_t = None
        if arch is not None and self.arch_ref_:
            arch_t = torch.as_tensor(rank_transform(arch, self.arch_ref_), dtype=torch.float32)

        def score(start: int, part: Any) -> None:
            with torch.inference_mode():
                part = part.to(self.device_)
                kw = {} if arch_t is None else {"arch": arch_t[start:start + len(part)].to(
                    self.device_)}
                total = self.models_[0](part, **kw).float()
                for model in self.models_[1:]:
                    total = total + model(part, **kw).float()
                out[start:start + len(part)] = (total / len(self.models_)).cpu().numpy()

        with torch_threads(1 if self.device_.type == "cpu" else torch.get_num_threads()):
            with torch.inference_mode():
                parts = self._inference_parts(graphs, chunk)
            if workers == 1 or len(parts) == 1:
                for start, part in parts:
                    score(start, part)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(lambda p: score(*p), parts))
        return out * self.y_std_ + self.y_mean_

    def _inference_parts(self, graphs: GraphBatch, chunk: int) -> list[tuple[int, Any]]:
        """The chunks ``predict`` hands every ensemble member: (first cell, model input).
        Graph slices here; a model may prepare them once for all members (GATES's rows)."""
        return [(start, graphs[start:start + chunk]) for start in range(0, len(graphs), chunk)]

    # -- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "hp": {k: v for k, v in self.hp.items() if k != "device"},
            "y_mean": self.y_mean_,
            "y_std": self.y_std_,
            "arch_ref": [[torch.as_tensor(u), torch.as_tensor(q)] for u, q in self.arch_ref_],
            "aux_mean": torch.as_tensor(self.aux_mean_),
            "aux_std": torch.as_tensor(self.aux_std_),
            "members": [{k: v.detach().cpu() for k, v in m.state_dict().items()}
                        for m in self.models_],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        saved = len(state.get("arch_ref", []))
        if saved != len(self.arch_inputs):
            raise ArchrankError(f"the saved {self.name} takes {saved} arch inputs, but "
                                f"{len(self.arch_inputs)} are named "
                                f"({', '.join(self.arch_inputs) or 'none'})")
        self.hp.update(state["hp"])
        self.y_mean_ = float(state["y_mean"])
        self.y_std_ = float(state["y_std"])
        self.arch_ref_ = [(u.numpy(), q.numpy()) for u, q in state.get("arch_ref", [])]
        self.aux_mean_ = state.get("aux_mean", torch.zeros(0)).numpy()
        self.aux_std_ = state.get("aux_std", torch.ones(0)).numpy()
        if not state["members"]:
            raise ArchrankError(f"the saved {self.name} has no trained members")
        self.models_ = []
        for weights in state["members"]:
            model = self.build_model()
            model.load_state_dict(weights)
            model.to(self.device_).eval()
            self.models_.append(model)
