"""Scoring sub-networks with the supernet's shared weights.

A sub-network inherits its weights from the supernet. Its batch-norm statistics are not
inherited by default: the running statistics a supernet collects mix every path, so before a
sub-network is scored they are reset and re-estimated on a few fixed training batches
(``bn_recalibrate``; cumulative averages in train mode, no gradients). Then validation accuracy
(percent) and loss (mean cross-entropy) are measured in eval mode, on the whole validation
split or on its first ``val_samples`` signals (the same for every sub-network): scoring a
thousand paths on a large validation split costs more than training the supernet.

``SubnetScorer`` holds the weights, data and options and is picklable, so many sub-networks
are scored in chunks on any executor (``score_archs``): the scorer travels with each chunk (50
cells by default) and rebuilds its supernet there, its own copy (recalibration writes into it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from archrank.datasets import ArrayDataset
from archrank.errors import ArchrankError
from archrank.files import read_journal, write_output
from archrank.nn import torch_threads
from archrank.oneshot.supernet import NetworkSetting, Supernet, build_supernet

SCORE_METRICS = ("val_acc", "val_loss")


@dataclass(frozen=True)
class ScoreOptions:
    """How sub-networks are scored (see the module docstring)."""

    bn_recalibrate: bool = True
    calib_batches: int = 4
    calib_batch_size: int = 128
    eval_batch_size: int = 1000
    calib_seed: int = 0  # which training examples calibrate (the same for every arch)
    val_samples: int | None = None  # score on this many validation signals (None: all)

    def __post_init__(self) -> None:
        if self.calib_batches < 1 or self.calib_batch_size < 1 or self.eval_batch_size < 1:
            raise ArchrankError("calibration batches and batch sizes must be positive")
        if self.val_samples is not None and self.val_samples < 1:
            raise ArchrankError(f"val_samples must be positive, got {self.val_samples}")


class SubnetScorer:
    """Scores sub-networks of one trained supernet on one dataset's validation split."""

    def __init__(self, setting: NetworkSetting, state: dict[str, torch.Tensor],
                 dataset: ArrayDataset, options: ScoreOptions | None = None,
                 device: str = "cpu", threads: int = 1) -> None:
        self.setting = setting
        self.state = {k: v.detach().cpu() for k, v in state.items()}
        self.dataset = dataset
        self.options = options or ScoreOptions()
        self.device = device
        self.threads = int(threads)
        self._net: Supernet | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, dataset: Any = None,
                        **kwargs: Any) -> SubnetScorer:
        return cls(checkpoint.setting, checkpoint.model, checkpoint.dataset(dataset), **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_net"] = None  # each worker builds its own copy
        return state

    @property
    def supernet(self) -> Supernet:
        if self._net is None:
            net = build_supernet(self.setting)
            net.load_state_dict(self.state)
            self._net = net.to(self.device).eval()
        return self._net

    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        return self.supernet.encode(archs)

    def score_codes(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """``{"val_acc", "val_loss", "seconds"}`` arrays, one entry per path of ``codes``."""
        with torch_threads(self.threads), torch.no_grad():
            return self._score(np.asarray(codes, dtype=np.int64))

    def score(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        return self.score_codes(self.encode(archs))

    def _score(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        net, opt, data = self.supernet, self.options, self.dataset
        device = torch.device(self.device)
        x_val = torch.from_numpy(data.x_val[:opt.val_samples]).to(device)
        y_val = torch.from_numpy(data.y_val[:opt.val_samples]).to(device)
        calib = self._calibration_batches(device) if opt.bn_recalibrate else []
        bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
        momenta = [m.momentum for m in bns]
        acc = np.zeros(len(codes))
        loss = np.zeros(len(codes))
        secs = np.zeros(len(codes))
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        try:
            for row, path in enumerate(codes):
                start = time.perf_counter()
                path_t = tuple(int(c) for c in path)
                if calib:
                    for m in bns:
                        m.reset_running_stats()
                        m.momentum = None  # cumulative average over the calibration batches
                    net.train()
                    for xb in calib:
                        net(xb, path_t)
                net.eval()
                correct, total_loss = 0, 0.0
                for i in range(0, len(y_val), opt.eval_batch_size):
                    logits = net(x_val[i:i + opt.eval_batch_size], path_t)
                    yb = y_val[i:i + opt.eval_batch_size]
                    correct += int((logits.argmax(1) == yb).sum())
                    total_loss += float(loss_fn(logits, yb))
                acc[row] = 100.0 * correct / len(y_val)
                loss[row] = total_loss / len(y_val)
                secs[row] = time.perf_counter() - start
        finally:
            for m, mom in zip(bns, momenta, strict=True):
                m.momentum = mom
        return {"val_acc": acc, "val_loss": loss, "seconds": secs}

    def _calibration_batches(self, device: torch.device) -> list[torch.Tensor]:
        opt, x = self.options, self.dataset.x_train
        n = min(len(x), opt.calib_batches * opt.calib_batch_size)
        idx = np.random.default_rng(opt.calib_seed).permutation(len(x))[:n]
        xs = torch.from_numpy(x[idx]).to(device)
        return [xs[i:i + opt.calib_batch_size] for i in range(0, n, opt.calib_batch_size)]


# -- durable shared-weight scores --------------------------------------------------------------
JOURNAL_FORMAT = "archrank-supernet-scores"


def journal_header(checkpoint: Any, options: ScoreOptions) -> dict[str, Any]:
    """What a score journal is valid for: the supernet (seed, epochs, setting, data,
    training history) and the score options."""
    return {"format": JOURNAL_FORMAT,
            "supernet": {"seed": checkpoint.seed, "epochs": checkpoint.epoch,
                         "setting": checkpoint.setting.to_dict(),
                         "data": checkpoint.data.get("fingerprint"),
                         "history": checkpoint.history},
            "options": asdict(options)}


class JournaledScorer(SubnetScorer):
    """A ``SubnetScorer`` that scores each path once: results are appended to a journal
    (JSON Lines, synced) and served from it afterwards, also after a kill, so a long scoring
    (``oneshot fit``, a search's choice, ``bench oneshot``) resumes where it stopped. Scoring
    on worker processes goes through ``plain()`` copies; the journal stays in this process."""

    def attach(self, journal: Path, header: dict[str, Any], hint: str = "use another "
               "--work-dir", replace_stale: bool = False) -> JournaledScorer:
        """Serve and extend the journal at ``journal``; one of another supernet or other
        options is an error naming ``hint``, or with ``replace_stale`` (a journal that only
        caches a command's own scores) started afresh."""
        self.journal = journal
        self.known: dict[str, tuple[float, float, float]] = {}
        have, records, torn = read_journal(journal) if journal.exists() else (None, [], False)
        # none yet, a kill while its header was written, or (replace_stale) an earlier
        # command's, of no use here: a fresh journal
        if (have is None and not records) or (have != header and replace_stale):
            write_output(journal, json.dumps(header) + "\n", flag="")
            return self
        if have != header:
            raise ArchrankError(f"{journal}: scores of another supernet or other score "
                                f"options; {hint}")
        if torn:  # a kill while appending: drop the torn line, appends start afresh
            write_output(journal, "".join(json.dumps(r) + "\n" for r in (have, *records)),
                         flag="")
        for rec in records:
            for c, a, lo, sec in zip(rec["codes"], rec["val_acc"], rec["val_loss"],
                                     rec["seconds"], strict=True):
                self.known[c] = (a, lo, sec)
        return self

    @staticmethod
    def _keys(codes: np.ndarray) -> list[str]:
        return ["".join(map(str, c)) for c in np.asarray(codes, dtype=np.int64)]

    def unknown(self, codes: np.ndarray) -> np.ndarray:
        """The distinct paths of ``codes`` not journaled yet (first-seen order)."""
        codes = np.asarray(codes, dtype=np.int64)
        seen: set[str] = set()
        rows = []
        for i, k in enumerate(self._keys(codes)):
            if k not in self.known and k not in seen:
                seen.add(k)
                rows.append(i)
        return codes[rows]

    def record(self, codes: np.ndarray, got: dict[str, np.ndarray]) -> None:
        """Journal the scores ``got`` of the paths ``codes`` (flushed and synced)."""
        keys = self._keys(codes)
        rec = {"codes": keys, **{m: [float(v) for v in got[m]]
                                 for m in ("val_acc", "val_loss", "seconds")}}
        with open(self.journal, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        for j, k in enumerate(keys):
            self.known[k] = (rec["val_acc"][j], rec["val_loss"][j], rec["seconds"][j])

    def plain(self) -> SubnetScorer:
        """A journal-less copy for worker processes."""
        return SubnetScorer(self.setting, self.state, self.dataset, self.options,
                            device=self.device, threads=self.threads)

    def score_codes(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        codes = np.asarray(codes, dtype=np.int64)
        todo = self.unknown(codes)
        if len(todo):
            self.record(todo, super().score_codes(todo))
        vals = np.array([self.known[k] for k in self._keys(codes)],
                        dtype=np.float64).reshape(-1, 3)
        return {"val_acc": vals[:, 0], "val_loss": vals[:, 1], "seconds": vals[:, 2]}

    def __getstate__(self) -> dict[str, Any]:  # scoring stays in this process
        raise TypeError("a journaled scorer is not sent to workers (send plain())")


def score_archs(scorer: SubnetScorer, codes: np.ndarray, executor: Executor | None = None,
                chunk: int = 50, on_done: Callable[[int], None] | None = None
                ) -> dict[str, np.ndarray]:
    """Score every path of ``codes`` (``[B, P]``) in chunks, on ``executor`` when given;
    ``on_done(n)`` reports how many are scored. Results keep the input order. A
    ``JournaledScorer`` scores only what it has not journaled (workers get plain copies, each
    finished chunk is journaled here)."""
    codes = np.asarray(codes, dtype=np.int64)
    if isinstance(scorer, JournaledScorer):
        todo = scorer.unknown(codes)
        before = len(codes) - len(todo)
        if len(todo):
            _score_chunks(scorer.plain() if executor is not None else scorer, todo, executor,
                          chunk, (lambda n: on_done(before + n)) if on_done else None,
                          scorer.record if executor is not None else None)
        return scorer.score_codes(codes)  # every path journaled now
    return _score_chunks(scorer, codes, executor, chunk, on_done, None)


def _score_chunks(scorer: SubnetScorer, codes: np.ndarray, executor: Executor | None,
                  chunk: int, on_done: Callable[[int], None] | None,
                  on_part: Callable[[np.ndarray, dict[str, np.ndarray]], None] | None
                  ) -> dict[str, np.ndarray]:
    parts = [codes[i:i + chunk] for i in range(0, len(codes), max(1, chunk))]
    results: list[dict[str, np.ndarray] | None] = [None] * len(parts)
    done = 0
    if executor is None:
        for i, part in enumerate(parts):
            results[i] = scorer.score_codes(part)
            done += len(part)
            if on_done:
                on_done(done)
    else:
        from concurrent.futures import as_completed

        futures = {executor.submit(scorer.score_codes, part): i for i, part in enumerate(parts)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_part:
                on_part(parts[i], results[i])
            done += len(parts[i])
            if on_done:
                on_done(done)
    keys = ("val_acc", "val_loss", "seconds")
    if not parts:
        return {k: np.zeros(0) for k in keys}
    return {k: np.concatenate([r[k] for r in results if r is not None]) for k in keys}
