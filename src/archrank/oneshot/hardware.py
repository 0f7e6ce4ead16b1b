"""Hardware costs of cells at the deployed setting, and selection under constraints.

Params and FLOPs are exact (``Supernet.costs``: the counts of ``archrank.nn.counting`` at the
supernet's width, depth and input shape). Latency on the current device comes from a lookup
table: every unit of the network (the skeleton without cell ops, and each candidate op at each
stage's shape, and a node addition) is timed once (warm-up, then the median of repeats), and a
network's latency is the skeleton's plus the sum of its units (``LatencyTable.predict``, one
matrix product over any number of cells). ``validate_latency`` times whole networks of a sample
and reports how well the table ranks them.

``select`` keeps the cells under ``max_flops``/``max_params``/``max_latency_ms`` and orders
them by score; ``pareto_front`` gives the cells no other cell beats on both score and cost.
``size_prior`` blends scores with the rank of a size (the FLOPs of a cell's live ops,
``live_size``): a single-path supernet trains
each op of a large cell as often as the single op of a small one, so its shared-weight scores
underrate large cells; on nb201 / MNIST-1D half the weight on the FLOPs rank lifted the
Kendall tau of the scores against a 10-seed stand-alone truth from 0.42 to 0.55
(docs/benchmarks.md, "The supernet's bias toward small cells").
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from archrank.errors import ArchrankError
from archrank.metrics import kendall_tau, rankdata, spearman
from archrank.nn import torch_threads
from archrank.oneshot.supernet import Supernet


def time_module(module: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1,
                warmup: int = 5, repeats: int = 15, inner: int = 10,
                device: str = "cpu") -> float:
    """Median milliseconds of one forward pass of ``module`` (eval mode, no gradients)."""
    module = module.to(device).eval()
    x = torch.randn((batch_size, *input_shape), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            module(x)
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            for _ in range(inner):
                module(x)
            sync()
            times.append((time.perf_counter() - start) / inner)
    return 1000.0 * float(np.median(times))


@dataclass
class LatencyTable:
    """Per-unit latencies (ms) of one supernet setting on one device (module docstring)."""

    units: list[str]
    ms: np.ndarray  # one per unit; units[0] is "base"
    batch_size: int = 1
    device: str = "cpu"
    threads: int = 1
    machine: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measure(cls, supernet: Supernet, *, batch_size: int = 1, device: str = "cpu",
                threads: int = 1, warmup: int = 5, repeats: int = 15,
                inner: int = 10) -> LatencyTable:
        names, ms = [], []
        with torch_threads(threads):
            for name, module, shape in supernet.latency_units():
                names.append(name)
                ms.append(time_module(module, shape, batch_size=batch_size, warmup=warmup,
                                      repeats=repeats, inner=inner, device=device))
        if names[0] != "base":
            raise AssertionError("the first latency unit must be the skeleton ('base')")
        machine = {"processor": platform.processor() or platform.machine(),
                   "torch": torch.__version__}
        return cls(names, np.maximum(np.array(ms), 0.0), batch_size, device, threads, machine)

    def predict(self, supernet: Supernet, codes: np.ndarray) -> np.ndarray:
        """Table latency (ms) of the networks of ``codes`` ``[B, P]``."""
        counts = supernet.latency_counts(codes)
        if counts.shape[1] != len(self.ms) - 1:
            raise ArchrankError("the latency table was measured for another supernet setting")
        return self.ms[0] + counts @ self.ms[1:]

    def to_dict(self) -> dict[str, Any]:
        return {"units": self.units, "ms": self.ms.tolist(), "batch_size": self.batch_size,
                "device": self.device, "threads": self.threads, "machine": self.machine}


def validate_latency(table: LatencyTable, supernet: Supernet, archs: Sequence[Any], *,
                     warmup: int = 5, repeats: int = 15, inner: int = 10) -> dict[str, Any]:
    """Time the whole stand-alone networks of ``archs`` and compare with the table.

    Returns the measured and table milliseconds, and their Kendall tau and Spearman rho.
    """
    codes = supernet.encode(archs)
    predicted = table.predict(supernet, codes)
    measured = np.zeros(len(archs))
    with torch_threads(table.threads):
        for i, arch in enumerate(archs):
            measured[i] = time_module(supernet.build_standalone(arch), supernet.setting.input_shape,
                                      batch_size=table.batch_size, warmup=warmup,
                                      repeats=repeats, inner=inner, device=table.device)
    return {"table_ms": predicted, "measured_ms": measured,
            "kendall_tau": kendall_tau(measured, predicted),
            "spearman": spearman(measured, predicted),
            "mean_abs_error_ms": float(np.mean(np.abs(measured - predicted)))}


# -- selection ----------------------------------------------------------------------------------
CONSTRAINTS = {"max_flops": "flops", "max_params": "params", "max_latency_ms": "latency_ms"}


def feasible(columns: dict[str, np.ndarray], **limits: float | None) -> np.ndarray:
    """Boolean mask of the rows within every given limit (``max_flops=...`` etc.).

    A limit no row meets is a one-line ``ArchrankError`` that names the smallest value.
    """
    n = len(next(iter(columns.values())))
    mask = np.ones(n, dtype=bool)
    for key, limit in limits.items():
        if limit is None:
            continue
        if key not in CONSTRAINTS:
            raise ArchrankError(f"unknown constraint {key!r}; use {', '.join(CONSTRAINTS)}")
        if not (np.isfinite(limit) and limit >= 0):
            raise ArchrankError(f"--{key.replace('_', '-')} must be a number of at least 0, "
                                f"got {limit}")
        col = CONSTRAINTS[key]
        if col not in columns:
            raise ArchrankError(f"--{key.replace('_', '-')}: the score table has no {col!r} "
                                "column")
        values = np.asarray(columns[col], dtype=np.float64)
        if not np.isfinite(values).any():
            raise ArchrankError(f"--{key.replace('_', '-')}: the score table's {col!r} column "
                                "has no values")
        ok = values <= limit
        if not ok.any():
            raise ArchrankError(
                f"no cell satisfies --{key.replace('_', '-')} {limit:g}: the smallest {col} "
                f"is {np.nanmin(values):g}")
        mask &= ok
    if not mask.any():
        raise ArchrankError("no cell satisfies all the constraints together")
    return mask


def size_prior(score: np.ndarray, size: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * q(score) + weight * q(size)``, with ``q`` the rank of a value among
    the finite ones as a fraction in (0, 1] (ties share their mean rank). A row whose score
    or size is not finite gets NaN: it is never selected and on no front."""
    if not 0.0 <= weight <= 1.0:
        raise ArchrankError(f"the size prior's weight must be in [0, 1], got {weight}")
    score, size = np.asarray(score, np.float64), np.asarray(size, np.float64)
    out = np.full(score.shape, np.nan)
    ok = np.isfinite(score) & np.isfinite(size)
    if ok.any():
        n = int(ok.sum())
        out[ok] = ((1.0 - weight) * rankdata(score[ok]) + weight * rankdata(size[ok])) / n
    return out


def live_size(space: Any, archs: Sequence[Any], size: np.ndarray) -> np.ndarray:
    """Each cell's ``size`` counted on its live ops: the size of ``space.prune(arch)`` where
    that cell is among ``archs`` (a whole space's table holds it), else the cell's own. A
    size prior on raw FLOPs favoured nb201 cells whose convolutions sit on dead edges: they
    cost FLOPs and compute on zeros."""
    size = np.asarray(size, np.float64)
    row = {space.format(a): i for i, a in enumerate(archs)}
    out = size.copy()
    for i, arch in enumerate(archs):
        j = row.get(space.format(space.prune(arch)))
        if j is not None:
            out[i] = size[j]
    return out


def select(score: np.ndarray, mask: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` best-scoring rows of ``mask`` (ties: lower index first; rows
    without a finite score are never selected)."""
    idx = np.flatnonzero(np.asarray(mask, bool) & np.isfinite(np.asarray(score, float)))
    order = np.argsort(-np.asarray(score)[idx], kind="stable")
    return idx[order[:top]]


def pareto_front(score: np.ndarray, cost: np.ndarray, mask: np.ndarray | None = None
                 ) -> np.ndarray:
    """Indices of the rows no other row beats on both (higher score, lower cost), by cost;
    rows without a finite score and cost are on no front."""
    score, cost = np.asarray(score, float), np.asarray(cost, float)
    keep_rows = np.isfinite(score) & np.isfinite(cost)
    if mask is not None:
        keep_rows &= np.asarray(mask, bool)
    idx = np.flatnonzero(keep_rows)
    order = idx[np.lexsort((-score[idx], cost[idx]))]  # cost up, then score down
    best = np.maximum.accumulate(score[order])
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = score[order][1:] > best[:-1]
    return order[keep]
