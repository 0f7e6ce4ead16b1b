"""Single-path supernet training (SPOS), durable, deterministic, data-parallel when asked.

Each step trains one sub-network (the sampler's path for that step) on one batch with the
training oracle's recipe (``TrainRecipe``: SGD, Nesterov momentum, weight decay, cosine
schedule per step). Gradients are cleared to ``None`` before every step, so the ops off the
path have no gradient at all and SGD skips them: their momentum and weight decay do not move
them (tests check this).

Determinism: the weights come from ``seed``, the batch order of epoch ``e`` from ``(seed, e)``
and the path of step ``t`` from the sampler, so the run is a function of the seed and
a resumed run ends with exactly the weights of an uninterrupted one, on the same device with
the same number of torch threads (the thread count changes float summation order, and GPU
kernels are not forced to be deterministic: there the two runs agree to rounding). A
checkpoint is written after every epoch (``Checkpoint.save`` is atomic);
``SupernetTrainer.resume`` continues from it.

Data parallel: started under ``torchrun`` (or with ``torch.distributed`` initialised), every
rank takes its share of each global batch, gradients are averaged by DDP (gloo on the CPU,
NCCL on GPUs), every rank samples the same path, and rank 0 writes the checkpoints.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archrank.datasets import ArrayDataset, canonical_spec, load_dataset
from archrank.errors import ArchrankError, first_line
from archrank.nn import resolve_device, torch_threads
from archrank.oneshot.checkpoint import Checkpoint
from archrank.oneshot.sampler import SAMPLERS, ArchSampler, make_sampler
from archrank.oneshot.supernet import NetworkSetting, Supernet, build_supernet, setting_for
from archrank.oracles.training import TrainRecipe

# Supernet epochs unless given: every path sees only a share of the steps, so a supernet
# trains for longer than one stand-alone network (5 epochs on MNIST-1D). Measured against the
# committed MNIST-1D truth (docs/benchmarks.md): shared-weight val_loss ranks it with Kendall
# tau 0.280 after 50 epochs, 0.369 after 150, 0.365 after 300 (one seed). One-shot searches
# keep their own budget of 50 (``oneshot search --epochs``), the setting they were measured at.
DEFAULT_EPOCHS = 150

StepCallback = Callable[[int, int, int, float], None]  # epoch, step in epoch, steps, loss


# Seconds the processes of a torchrun job wait for each other: to meet at the start, and at
# any collective step afterwards (a process that died is reported after this long).
DIST_TIMEOUT_ENV = "ARCHRANK_DIST_TIMEOUT"
DIST_TIMEOUT = 300.0
_LAUNCH = "launch data-parallel training with: torchrun --nproc-per-node N -m archrank ..."


class DistributedFailure(ArchrankError):
    """The processes of a torchrun job could not work together: every process says so (the
    others' bad-input errors are left to rank 0, ``cli._quiet_rank``)."""


class PeerLost(DistributedFailure):
    """Another process of the torchrun job stopped (killed, or failed) during training."""


def peer_loss(exc: BaseException) -> str | None:
    """What a failed collective step says of a lost peer (the cause, cut to its first
    sentence), or ``None`` for any other error (out of memory, a disk full, a bug)."""
    import torch.distributed as dist

    text = re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc, None))  # gloo's source line
    if not (isinstance(exc, getattr(dist, "DistError", ())) or re.search(
            r"gloo|nccl|connection (closed|reset) by peer|broken pipe|timed out", str(exc),
            re.IGNORECASE)):
        return None
    return text.split(". ")[0][:160]


def world_size_env() -> int:
    """The process count torchrun announced (``WORLD_SIZE``), 1 when not under torchrun."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(value)
    except ValueError:
        raise ArchrankError(f"WORLD_SIZE={value!r} is not a process count; {_LAUNCH}") from None
    if world < 1:
        raise ArchrankError(f"WORLD_SIZE={value!r} is not a process count; {_LAUNCH}")
    return world


def dist_info() -> tuple[int, int]:
    """``(rank, world size)``; initialises ``torch.distributed`` when started by ``torchrun``.

    The processes meet in a background thread, so Ctrl-C still stops a process whose peers
    never come, and give up after ``ARCHRANK_DIST_TIMEOUT`` seconds (300)."""
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and world_size_env() > 1:
        _init_process_group(dist)
    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _init_process_group(dist: Any) -> None:
    import threading
    from datetime import timedelta

    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ArchrankError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} "
                            f"not set; {_LAUNCH}")
    raw = os.environ.get(DIST_TIMEOUT_ENV, str(DIST_TIMEOUT))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise ArchrankError(f"{DIST_TIMEOUT_ENV}={raw!r} must be a number of seconds above 0")
    failure: list[BaseException] = []

    def meet() -> None:
        try:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                    timeout=timedelta(seconds=seconds))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=meet, name="archrank-rendezvous", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)  # short waits: the main thread takes Ctrl-C / SIGTERM in between
    if failure:
        raise DistributedFailure(
            f"the {os.environ['WORLD_SIZE']} processes of this torchrun job did not meet "
            f"({first_line(failure[0])}); check that every one was started") from None


class SupernetTrainer:
    """Trains ``supernet`` on ``dataset`` (see the module docstring).

    Example::

        data = load_dataset("mnist1d")
        trainer = SupernetTrainer.create("nb201", data, epochs=50, seed=0)
        trainer.train(checkpoint="supernet.pt")
    """

    def __init__(self, supernet: Supernet, dataset: ArrayDataset, recipe: TrainRecipe, *,
                 seed: int = 0, sampler: str | ArchSampler = "uniform",
                 dataset_spec: str | None = None, device: str | None = "auto",
                 threads: int = 1) -> None:
        self.supernet = supernet
        self.dataset = dataset
        self.recipe = recipe
        self.seed = int(seed)
        self.sampler = (make_sampler(sampler, supernet.space, seed) if isinstance(sampler, str)
                        else sampler)
        self.dataset_spec = dataset_spec or dataset.name
        self.device = resolve_device(device)
        self.threads = int(threads)
        self.epoch = 0
        self.step = 0
        self.history: list[float] = []
        self.seconds = 0.0
        # processes that trained it so far (a resume must keep the count; None: a checkpoint
        # written before the count was recorded, which any count may continue)
        self.world: int | None = 1
        self._optimizer_state: dict[str, Any] | None = None

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, space: str, dataset: Any, *, epochs: int | None = None,
               width: int | None = None, depth: int | None = None, seed: int = 0,
               recipe: TrainRecipe | None = None, **kwargs: Any) -> SupernetTrainer:
        """A fresh trainer: the supernet of ``space`` at the training oracle's size for the
        dataset (or ``width``/``depth``), weights from ``seed``."""
        data = load_dataset(dataset)
        spec = canonical_spec(dataset) if isinstance(dataset, str) else data.name
        setting = setting_for(space, data, width, depth)
        recipe = recipe or TrainRecipe(epochs=DEFAULT_EPOCHS)
        if epochs is not None:
            recipe = replace(recipe, epochs=int(epochs))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_supernet(setting)
        return cls(net, data, recipe, seed=seed, dataset_spec=str(spec), **kwargs)

    @classmethod
    def resume(cls, checkpoint: Checkpoint, *, dataset: Any = None,
               epochs: int | None = None, sampler: ArchSampler | None = None,
               **kwargs: Any) -> SupernetTrainer:
        """Continue the training of ``checkpoint`` (optionally to more ``epochs``)."""
        recipe = checkpoint.recipe
        if epochs is not None and epochs != recipe.epochs:
            if epochs < checkpoint.epoch:
                raise ArchrankError(f"{checkpoint.path}: already trained {checkpoint.epoch} "
                                    f"epochs, more than --epochs {epochs}")
            # the cosine schedule depends on the total: a changed total is a new schedule
            raise ArchrankError(
                f"{checkpoint.path}: trained with a {recipe.epochs}-epoch schedule; resume "
                f"with the same --epochs (or start a new supernet)"
            )
        if sampler is None and checkpoint.sampler not in SAMPLERS:
            raise ArchrankError(f"{checkpoint.path}: a {checkpoint.sampler} search checkpoint; "
                                f"continue it with: archrank oneshot search --method "
                                f"{checkpoint.sampler} --resume {checkpoint.path}")
        trainer = cls(checkpoint.supernet(), checkpoint.dataset(dataset), recipe,
                      seed=checkpoint.seed, sampler=sampler or checkpoint.sampler,
                      dataset_spec=checkpoint.dataset_spec, **kwargs)
        if sampler is None:
            trainer.sampler.load_state_dict(checkpoint.sampler_state)
        trainer.epoch, trainer.step = checkpoint.epoch, checkpoint.step
        trainer.history, trainer.seconds = list(checkpoint.history), checkpoint.seconds
        trainer.world = checkpoint.world
        trainer._optimizer_state = checkpoint.optimizer or None
        return trainer

    @property
    def setting(self) -> NetworkSetting:
        return self.supernet.setting

    def checkpoint(self, optimizer: torch.optim.Optimizer | None = None) -> Checkpoint:
        """The trainer's current state as a checkpoint (weights on the CPU)."""
        model = {k: v.detach().cpu().clone() for k, v in self.supernet.state_dict().items()}
        opt = optimizer.state_dict() if optimizer is not None else (self._optimizer_state or {})
        return Checkpoint(
            setting=self.setting, recipe=self.recipe, sampler=self.sampler.name,
            seed=self.seed, dataset_spec=self.dataset_spec, data=self.dataset.describe(),
            epoch=self.epoch, step=self.step, history=list(self.history),
            seconds=self.seconds, model=model, optimizer=_to_cpu(opt),
            sampler_state=self.sampler.state_dict(), world=self.world,
        )

    # -- training ---------------------------------------------------------------------------------
    def steps_per_epoch(self, world: int = 1) -> int:
        n = len(self.dataset.y_train)
        batch = min(self.recipe.batch_size, n)
        if batch < world:
            raise ArchrankError(f"batch size {batch} is smaller than the {world} processes")
        return n // batch

    def check_world(self, world: int, checkpoint: str | Path | None = None) -> None:
        """Refuse to continue a training with another process count than it had so far."""
        if (self.epoch and self.world is not None and world != self.world
                and self.epoch < self.recipe.epochs):
            raise ArchrankError(
                f"{checkpoint or 'this supernet'}: trained by {self.world} process(es) so far, "
                f"resumed with {world}; {resume_command('train', checkpoint, self.world)} "
                "(each process computes batch-norm statistics on its share of a batch, so "
                "another count ends with other weights)")

    def train(self, checkpoint: str | Path | None = None,
              on_step: StepCallback | None = None) -> SupernetTrainer:
        """Train until ``recipe.epochs``, writing ``checkpoint`` after every epoch."""
        with torch_threads(self.threads):
            return self._train(checkpoint, on_step)

    def _train(self, checkpoint: str | Path | None, on_step: StepCallback | None
               ) -> SupernetTrainer:
        rank, world = dist_info()
        if world > 1 and not self.sampler.distributed:
            raise ArchrankError(f"the {self.sampler.name} sampler runs in one process only, "
                                f"not under torchrun with {world} processes")
        self.check_world(world, checkpoint)
        self.world = world
        device = self.device
        if device.type == "cuda" and world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        recipe, net = self.recipe, self.supernet.to(device)
        model: nn.Module = net
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)
        optimizer = torch.optim.SGD(
            net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
            nesterov=recipe.nesterov and recipe.momentum > 0, weight_decay=recipe.weight_decay)
        if self._optimizer_state:
            optimizer.load_state_dict(self._optimizer_state)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        x_train = torch.from_numpy(self.dataset.x_train).to(device)
        y_train = torch.from_numpy(self.dataset.y_train).to(device)
        steps = self.steps_per_epoch(world)
        total = steps * recipe.epochs
        net.train()
        try:
            self._epochs(model, net, optimizer, loss_fn, x_train, y_train, steps, total,
                         rank, world, checkpoint, on_step)
        except RuntimeError as exc:
            why = peer_loss(exc) if world > 1 else None
            if why is None:
                raise
            raise PeerLost(f"another process of this {world}-process torchrun job stopped "
                           f"({why})") from None
        self._optimizer_state = _to_cpu(optimizer.state_dict())
        return self

    def _epochs(self, model: nn.Module, net: Supernet, optimizer: torch.optim.Optimizer,
                loss_fn: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, steps: int,
                total: int, rank: int, world: int, checkpoint: str | Path | None,
                on_step: StepCallback | None) -> None:
        recipe, device = self.recipe, x_train.device
        n = len(y_train)
        batch = min(recipe.batch_size, n)
        while self.epoch < recipe.epochs:
            start = time.perf_counter()
            perm = torch.from_numpy(
                np.random.default_rng([self.seed, self.epoch]).permutation(n)).to(device)
            losses = []
            for s in range(steps):
                idx = perm[s * batch:(s + 1) * batch][rank::world]
                codes = tuple(int(c) for c in self.sampler.sample(self.step))
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr * 0.5 * (1.0 + math.cos(math.pi * self.step / total))
                loss = loss_fn(self.sampler.forward(model, x_train[idx], codes, self.step),
                               y_train[idx])
                value = float(loss.item())
                if not math.isfinite(value):
                    raise ArchrankError(
                        f"supernet training diverged: loss {value} at epoch {self.epoch + 1}, "
                        f"step {s + 1}; try a lower learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.step += 1
                self.sampler.after_step(self.step - 1, codes, net)
                losses.append(value)
                if on_step is not None and rank == 0:
                    on_step(self.epoch, s + 1, steps, value)
            mean_loss = float(np.mean(losses))
            if world > 1:
                _average_buffers(net, world)
                mean_loss = _mean_over_ranks(mean_loss, device)
            self.epoch += 1
            self.history.append(mean_loss)
            self.seconds += time.perf_counter() - start
            if checkpoint is not None and rank == 0:
                self.checkpoint(optimizer).save(checkpoint)
            if world > 1:
                import torch.distributed as dist

                dist.barrier()


def resume_command(command: str, checkpoint: str | Path | None, world: int) -> str:
    """How to continue a supernet training of ``world`` processes from ``checkpoint``."""
    if checkpoint is None:  # the library, training without a checkpoint file
        return f"continue it with {world} process(es)"
    launch = (f"torchrun --nproc-per-node {world} -m archrank" if world > 1 else "archrank")
    return f"continue with: {launch} oneshot {command} --resume {checkpoint}"


def _mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of ``value`` over the ranks (each rank's loss is over its share of a batch)."""
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / dist.get_world_size()


def _average_buffers(net: nn.Module, world: int) -> None:
    """Average the BN running statistics over the ranks (each rank saw its own share of the
    batches), so every rank, and the checkpoint, holds the same full state."""
    import torch.distributed as dist

    for buf in net.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(world)


def _to_cpu(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_to_cpu(v) for v in state]
    return state
