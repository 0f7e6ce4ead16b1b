"""``bench oneshot-search``: one-shot search methods judged by stand-alone training.

For each method and search seed, ``search.search`` runs on the same budget (epochs, data,
seed); a method is a spec ``METHOD[:KEY=VALUE...]`` (``search.parse_method``), so ablations
such as ``proxy-darts:oiw=off`` are methods of the same benchmark. spos-ea and gcn-fit train the
same uniform supernet, so they share one checkpoint per seed. Every chosen cell is then
trained stand-alone with the truth table's recipe and training seeds (``truth.TruthBuilder``:
journaled, resumable, any executor), and placed in the truth's distribution of mean
``val_acc`` (``truth_percentile``: the share of the truth's cells it beats, ties counting
half). Search checkpoints live in ``work_dir``, so a killed benchmark continues where it
stopped.

The truth's recipe comes from the journal ``bench table`` wrote next to it (its first line);
the dataset given must be the one the truth was trained on (same fingerprint).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from archrank.bench.common import envelope, percentile, stat
from archrank.errors import ArchrankError
from archrank.files import locked
from archrank.oneshot.search import UNIFORM_METHODS, SearchResult, parse_method, search
from archrank.truth import TruthBuilder, read_truth

KIND = "bench-oneshot-search"  # what archrank report reads this JSON as
SCHEMA = 2  # 2: methods are specs, each with its "method" and "options"


def checkpoint_stem(spec: str, method: str) -> str:
    """File stem of a spec's search checkpoints (the uniform methods share theirs)."""
    if method in UNIFORM_METHODS:
        return "uniform"
    return spec.replace(":", "_").replace("/", "_")


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A spec's settings as JSON values."""
    out = {k: v for k, v in kwargs.items() if k != "proxy"}
    for k, v in kwargs.get("proxy", {}).items():
        out[k] = v.pretrain if k == "landscape" else v
    return {("pretrain" if k == "landscape" else k): v for k, v in out.items()}


def bench_search(methods: Sequence[str], seeds: Sequence[int], *, truth: str | Path,
                 space: str, dataset: Any = None, epochs: int, work_dir: str | Path,
                 executor: Executor, workers: int = 1, search_kwargs: dict | None = None,
                 on_stage: Callable[[str], None] | None = None,
                 on_progress: Callable[[int, int, str], None] | None = None,
                 recipe: str | Path | None = None) -> dict[str, Any]:
    """Run every (method spec, seed) search, train the picks stand-alone, report per spec.

    ``dataset`` None: the truth's own; ``recipe``: the truth's recipe file where none lies
    beside it (``read_truth``); ``on_progress(done, total, what)`` within each stage."""
    from archrank.oracles.training import TrainingOracle, TrainRecipe

    specs = {m: parse_method(m) for m in methods}
    if len(specs) != len(methods):
        raise ArchrankError(f"a method is given twice in {', '.join(methods)}")
    table = read_truth(truth, space, recipe)  # its recipe: beside it, or the file given
    setting, train_seeds = table.setting, table.seeds
    if dataset is None:  # the data the truth was trained on
        dataset = setting["dataset"].get("name")
    truth_vals = table.val_acc  # mean over training seeds (cells without one left out)
    oracle = TrainingOracle(space, dataset, recipe=TrainRecipe(**setting["recipe"]),
                            width=int(setting["width"]), depth=int(setting["depth"]))
    want = setting["dataset"].get("fingerprint")
    if oracle.dataset.fingerprint() != want:
        raise ArchrankError(f"{truth} was trained on {setting['dataset'].get('name')!r} "
                            f"(fingerprint {want}), not on {oracle.dataset.name!r}")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[SearchResult]] = {}

    def on_step(epoch: int, step: int, n: int, loss: float) -> None:
        if on_progress:
            on_progress(epoch * n + step, epochs * n, f"epoch {epoch + 1} loss {loss:.3f}")

    def on_choice(done: int, total: int, what: str) -> None:
        if on_progress:
            on_progress(done, total, what)

    for m, (method, kwargs) in specs.items():
        for seed in seeds:
            ckpt = work / f"{checkpoint_stem(m, method)}-seed{seed}.pt"
            if on_stage:
                on_stage(f"{m} seed {seed}")
            # proxy settings always given, so a checkpoint of other settings is refused
            extra = {"proxy": {}} if method.startswith("proxy-") else {}
            # locked while it runs: a second bench sharing the work dir is refused, not let
            # to train the same search beside it
            with locked(ckpt, f"the {m} search of seed {seed}"):
                results.setdefault(m, []).append(search(
                    method, space=space, dataset=oracle.dataset, epochs=epochs, seed=seed,
                    width=oracle.width, depth=oracle.depth, checkpoint=ckpt,
                    resume=ckpt.exists(), on_step=on_step, on_choice=on_choice,
                    # on the CPU unless asked, like bench oneshot's supernets: the
                    # committed figures are CPU figures, and a work dir resumes on the
                    # device it started on
                    **{"device": "cpu", **extra, **(search_kwargs or {}), **kwargs}))
    picks = sorted({r.arch for rs in results.values() for r in rs})
    if on_stage:
        on_stage(f"stand-alone training of {len(picks)} cells x {len(train_seeds)} seeds")
    # one journal per set of picks: a rerun with other methods in the same work dir trains
    # its own set instead of clashing with the journal of another
    digest = hashlib.sha1("\n".join(picks).encode()).hexdigest()[:10]
    builder = TruthBuilder(oracle, picks, train_seeds, work / f"standalone-{digest}.csv",
                           {"truth": str(truth)})
    # a cell another set of picks trained in this work dir (other --methods / --seeds, or a
    # process sharing it) with the same recipe and seeds is taken, not trained again
    builder.reuse(sorted(work.glob("standalone-*.csv.journal.jsonl")))
    builder.run(executor, in_flight=workers, on_result=None if on_progress is None else (
        lambda n, rec: on_progress(n, builder.total, "trained")))
    builder.write_csv()
    # the mean over the training seeds that finished (one diverged seed does not void a pick,
    # as in the truth table and ``bench oneshot``); NaN only when none did
    val, test = _seed_mean(builder.values("val_acc")), _seed_mean(builder.values("test_acc"))
    row = {a: i for i, a in enumerate(picks)}
    report = envelope(KIND, SCHEMA, "bench oneshot-search", seeds, space=space,
                      truth=str(truth), epochs=epochs, train_seeds=train_seeds,
                      standalone=str(builder.out), methods={})
    for m, rs in results.items():
        idx = [row[r.arch] for r in rs]
        pct = [percentile(truth_vals, v) for v in val[idx]]
        method, kwargs = specs[m]
        report["methods"][m] = {
            "method": method, "options": _options(kwargs),
            "cells": [r.arch for r in rs],
            "val_acc": stat(val[idx]), "test_acc": stat(test[idx]),
            "truth_percentile": stat(pct),
            "search_seconds": stat([r.seconds for r in rs]),
            "degenerate_rate": float(np.mean([r.degenerate for r in rs])),
            "supernet_val_acc": stat([r.supernet_val_acc for r in rs]),
            "per_seed": [{"seed": int(seed), "cell": r.arch, "val_acc": float(val[i]),
                          "test_acc": float(test[i]), "truth_percentile": p,
                          "degenerate": bool(r.degenerate), "search_seconds": r.seconds,
                          "supernet_val_acc": r.supernet_val_acc,
                          "sampler_info": r.sampler_info}
                         for seed, r, i, p in zip(seeds, rs, idx, pct, strict=True)],
        }
    return report


def _seed_mean(values: np.ndarray) -> np.ndarray:
    """Per cell, the mean over its finished training seeds (NaN for a cell with none)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, said by the JSON
        return np.nanmean(values, axis=1)
