"""Multi-seed stand-alone truth tables: train each cell with several training seeds.

A weight-sharing score means something only against stand-alone training, and a single
training is noisy. ``TruthBuilder`` trains every (cell, training seed) pair with the training
oracle, on any executor, appending each result to a journal (JSON Lines, flushed and synced)
the moment it arrives; a killed build resumes from the journal without retraining anything.
``write_csv`` turns the journal into a benchmark table that ``--bench`` and ``--truth`` read:
per cell the mean over seeds of each metric (``val_acc``, ``test_acc``, ``val_loss``, ...), the
per-seed values (``val_acc_s0``, ...), their std (``val_acc_std``), params, FLOPs and the mean
training seconds (``train_time_s``, a recognised cost column). ``noise_ceiling`` measures how
well single trainings agree: the seed-to-seed Kendall tau and the tau of one seed against the
mean of the others, over all cells and over the better half.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from archrank.cache import atomic_path
from archrank.errors import ArchrankError
from archrank.metrics import kendall_tau
from archrank.oracles.training import TrainingOracle

METRICS = ("val_acc", "test_acc", "val_loss", "test_loss", "train_loss")
JOURNAL_FORMAT = "archrank-truth-journal"


def journal_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".journal.jsonl")


class TruthBuilder:
    """Trains ``archs`` (cell strings of ``oracle.space``) with each of ``seeds``."""

    def __init__(self, oracle: TrainingOracle, archs: Sequence[str], seeds: Sequence[int],
                 out: str | Path, info: dict[str, Any] | None = None) -> None:
        if not archs:
            raise ArchrankError("a truth table needs at least one cell")
        if len(set(seeds)) != len(seeds) or not seeds:
            raise ArchrankError(f"training seeds must be distinct and non-empty, got {seeds}")
        self.oracle = oracle
        self.space = oracle.space
        self.archs = list(archs)
        self.seeds = [int(s) for s in seeds]
        self.out = Path(out)
        self.journal = journal_path(out)
        self.header = {"format": JOURNAL_FORMAT, "space": self.space.name,
                       "oracle": {k: v for k, v in oracle.describe().items() if k != "seed"},
                       "seeds": self.seeds, "archs": self.archs, **(info or {})}
        self.results: dict[tuple[str, int], dict[str, Any]] = {}
        self._open_journal()

    # -- journal ------------------------------------------------------------------------------
    def _open_journal(self) -> None:
        if not self.journal.exists():
            self._append(self.header)
            return
        lines = self.journal.read_text().splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
            raise ArchrankError(f"{self.journal}: line 1: not a truth-table journal")
        diff = sorted(k for k in set(header) | set(self.header)
                      if header.get(k) != self.header.get(k))
        if diff:
            raise ArchrankError(f"{self.journal} was started with other settings ({', '.join(diff)}"
                                f"); use another --out or the same options")
        for i, line in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines):  # a kill while appending: that training is redone
                    break
                raise ArchrankError(f"{self.journal}: line {i}: not JSON") from None
            self.results[(rec["arch"], int(rec["seed"]))] = rec
        # drop a torn last line so that appends start on a fresh line
        good = "\n".join([lines[0], *(json.dumps(r) for r in self.results.values())]) + "\n"
        with atomic_path(self.journal) as tmp:
            tmp.write_text(good)

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.journal, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # -- building -------------------------------------------------------------------------------
    @property
    def pending(self) -> list[tuple[str, int]]:
        return [(a, s) for a, s in itertools.product(self.archs, self.seeds)
                if (a, s) not in self.results]

    @property
    def total(self) -> int:
        return len(self.archs) * len(self.seeds)

    def run(self, executor: Executor, in_flight: int = 2,
            on_result: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        """Train every pending pair, ``in_flight`` at a time, journaling each result."""
        from archrank.runs.loop import evaluate_arch

        todo = self.pending
        oracles = {s: _with_seed(self.oracle, s) for s in self.seeds}
        running: dict[Future, tuple[str, int]] = {}
        while todo or running:
            while todo and len(running) < max(1, in_flight):
                arch, seed = todo.pop(0)
                fut = executor.submit(evaluate_arch, oracles[seed], self.space.parse(arch))
                running[fut] = (arch, seed)
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                arch, seed = running.pop(fut)
                evaluation, _, _ = fut.result()
                rec = {"arch": arch, "seed": seed, "status": evaluation.status,
                       "metrics": evaluation.metrics, "error": evaluation.error}
                self.results[(arch, seed)] = rec
                self._append(rec)
                if on_result:
                    on_result(len(self.results), rec)

    # -- the table ------------------------------------------------------------------------------
    def values(self, metric: str) -> np.ndarray:
        """``[cells, seeds]`` of ``metric`` (NaN where failed or not trained yet)."""
        out = np.full((len(self.archs), len(self.seeds)), np.nan)
        for i, arch in enumerate(self.archs):
            for j, seed in enumerate(self.seeds):
                rec = self.results.get((arch, seed))
                if rec and rec["status"] == "ok" and metric in rec["metrics"]:
                    out[i, j] = float(rec["metrics"][metric])
        return out

    def write_csv(self) -> None:
        metrics = [m for m in METRICS if not np.isnan(self.values(m)).all()]
        header = ["arch", "hash"]
        for m in metrics:
            header += [m, f"{m}_std", *(f"{m}_s{s}" for s in self.seeds)]
        header += ["params", "flops", "train_time_s"]
        per = {m: self.values(m) for m in [*metrics, "params", "flops", "train_seconds"]}
        with _quiet():
            means = {m: np.nanmean(v, axis=1) for m, v in per.items()}
            stds = {m: np.nanstd(v, axis=1) for m, v in per.items()}
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.out) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                for i, arch in enumerate(self.archs):
                    row: list[Any] = [arch, self.space.hash(self.space.parse(arch))]
                    for m in metrics:
                        row += [_num(means[m][i]), _num(stds[m][i]),
                                *(_num(v) for v in per[m][i])]
                    row += [_num(means["params"][i]), _num(means["flops"][i]),
                            _num(means["train_seconds"][i])]
                    writer.writerow(row)
        except OSError as exc:
            raise ArchrankError(f"{self.out}: cannot write ({exc.strerror})") from None


def _with_seed(oracle: TrainingOracle, seed: int) -> TrainingOracle:
    import copy

    other = copy.copy(oracle)
    other.seed = int(seed)
    return other


class _quiet:
    """Silence numpy's warnings for all-NaN rows (a cell whose every training failed)."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def _num(v: float) -> str:
    return "" if math.isnan(v) else repr(round(float(v), 6))


def noise_ceiling(values: np.ndarray, higher_is_better: bool = True) -> dict[str, Any]:
    """How well single trainings agree, from ``[cells, seeds]`` values (see module doc).

    ``seed_to_seed``: mean Kendall tau over seed pairs; ``one_vs_rest``: mean over seeds of
    the tau of that seed against the mean of the others; each also over the better half of
    the cells (by the mean over seeds: the higher half, or the lower for a loss).
    """
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values).any(axis=1)
    v = values[ok]
    out: dict[str, Any] = {"cells": int(ok.sum()), "seeds": int(values.shape[1])}
    if len(v) < 3 or v.shape[1] < 2:
        return out
    mean = v.mean(axis=1)
    better = mean >= np.median(mean) if higher_is_better else mean <= np.median(mean)
    for label, rows in (("all", np.ones(len(v), bool)), ("better_half", better)):
        sub = v[rows]
        pairs = [kendall_tau(sub[:, a], sub[:, b])
                 for a, b in itertools.combinations(range(sub.shape[1]), 2)]
        rest = [kendall_tau(sub[:, a], np.delete(sub, a, axis=1).mean(axis=1))
                for a in range(sub.shape[1])]
        out[label] = {"seed_to_seed_kendall_tau": float(np.mean(pairs)),
                      "one_vs_rest_kendall_tau": float(np.mean(rest)),
                      "seed_std_mean": float(sub.std(axis=1).mean()), "cells": len(sub)}
    return out


def recipe_info(oracle: TrainingOracle) -> dict[str, Any]:
    """The training setting of a truth table (JSON-able)."""
    return {"recipe": asdict(oracle.recipe), "width": oracle.width, "depth": oracle.depth,
            "dataset": oracle.dataset.describe()}
