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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archrank.cache import atomic_path
from archrank.errors import ArchrankError, first_line
from archrank.files import is_stream, locked, read_journal
from archrank.metrics import kendall_tau
from archrank.oracles.training import TrainingOracle

METRICS = ("val_acc", "test_acc", "val_loss", "test_loss", "train_loss")
JOURNAL_FORMAT = "archrank-truth-journal"


def journal_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".journal.jsonl")


def check_table_path(out: str | Path) -> None:
    """A one-line error for a truth table's path that is not a file of its own: standard
    output, a device or a folder (an atomic rename over ``/dev/null`` replaced the device), or
    another table's journal (its trainings)."""
    path = Path(out)
    if str(out).endswith(".journal.jsonl"):
        raise ArchrankError(f"{out}: a truth table's journal name; give the table's own name "
                            "(e.g. truth.csv)")
    if is_stream(out) or (path.exists() and not path.is_file()):
        raise ArchrankError(f"{out}: a truth table is a file (its trainings are journaled "
                            "beside it), not standard output, a device or a folder")


def check_sources(oracle: TrainingOracle, sources: Iterable[str | Path]) -> None:
    """One-line errors for ``bench table --from`` sources that cannot give trainings of
    ``oracle``'s setting: a missing file, a table without its recipe beside it or without
    per-seed columns, a journal or table of another space, recipe, width, depth or dataset.
    The CLI calls it before the new table's journal exists, so that a refused source leaves
    nothing behind that would block the corrected command."""
    mine = recipe_info(oracle)
    for src in sources:
        path = Path(src)
        if not path.is_file():
            raise ArchrankError(f"--from {path}: no such truth table or journal")
        if path.name.endswith(".journal.jsonl"):
            setting, source = _setting_from(path)
        else:
            own = [f for f in (journal_path(path), path.with_suffix(".json")) if f.is_file()]
            if not own:
                raise ArchrankError(f"--from {path}: no recipe beside it (neither "
                                    f"{journal_path(path).name} nor "
                                    f"{path.with_suffix('.json').name}); --from needs the "
                                    "table's journal or its bench table --json report")
            setting, source = _setting_from(own[0])
            _check_space(path, oracle.space)
            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                header = [h.strip() for h in fh.readline().split(",")]
            if not any(h.startswith("val_acc_s") and h[9:].isdigit() for h in header):
                raise ArchrankError(f"--from {path}: no per-seed columns (val_acc_s<seed>): "
                                    "not a truth table of bench table")
        differ = setting_differences(setting, mine)
        if setting.get("space", oracle.space.name) != oracle.space.name:
            differ.insert(0, "space")
        if differ:
            raise ArchrankError(f"--from {path}: trained with another {', '.join(differ)} "
                                f"(from {source}) than this table")


class TruthBuilder:
    """Trains ``archs`` (cell strings of ``oracle.space``) with each of ``seeds``."""

    # header entries that say where a journal came from but not what it trained: neither a
    # resume nor ``reuse`` compares them (the truth a pick is judged by may be named by
    # another path, or be a copy, and its trainings are the same; a --cells file may be
    # named from another folder: the header's archs pin its cells)
    NOTES = frozenset({"truth", "cells_file"})

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
        check_table_path(out)
        self.out = Path(out)
        self.journal = journal_path(out)
        self.header = {"format": JOURNAL_FORMAT, "space": self.space.name,
                       "oracle": {k: v for k, v in oracle.describe().items() if k != "seed"},
                       "seeds": self.seeds, "archs": self.archs, **(info or {})}
        self.results: dict[tuple[str, int], dict[str, Any]] = {}
        self._open_journal()

    # -- journal ------------------------------------------------------------------------------
    def _open_journal(self) -> None:
        with locked(self.journal, "the truth table's journal"):  # not while another writes
            self._read_journal()

    def _read_journal(self) -> None:
        if not self.journal.exists():
            self._append(self.header)
            return
        header, records, _ = read_journal(self.journal)
        if header is None and not records:  # a kill while the header was written
            with atomic_path(self.journal) as tmp:
                tmp.write_text(json.dumps(self.header) + "\n")
            return
        if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
            raise ArchrankError(f"{self.journal}: line 1: not a truth-table journal")
        diff = sorted(k for k in set(header) | set(self.header)
                      if k not in self.NOTES and header.get(k) != self.header.get(k))
        if diff:
            raise ArchrankError(f"{self.journal} was started with other settings ({', '.join(diff)}"
                                f"); use another --out or the same options")
        for rec in records:  # (a torn last line: that training is redone)
            if not _stands(rec):
                continue  # not the cell's doing (memory, a killed device...): trained again
            self.results[(rec["arch"], int(rec["seed"]))] = rec
        # drop a torn last line so that appends start on a fresh line
        good = "\n".join([json.dumps(header), *(json.dumps(r) for r in self.results.values())])
        with atomic_path(self.journal) as tmp:
            tmp.write_text(good + "\n")

    def reuse(self, journals: Iterable[Path]) -> int:
        """Take into this journal the trainings of this table's cells that other journals of
        the same setting hold (another set of picks trained in the same work dir), so that no
        cell is trained twice; how many were taken. Journals of another recipe, other
        training seeds or another space are skipped."""
        with locked(self.journal, "the truth table's journal"):
            return self._reuse(journals)

    def _reuse(self, journals: Iterable[Path]) -> int:
        skip = {"archs", *self.NOTES}
        mine = {k: v for k, v in self.header.items() if k not in skip}
        taken = 0
        for path in journals:
            if path.resolve() == self.journal.resolve():
                continue
            try:
                header, records, _ = read_journal(path)
            except (OSError, ArchrankError):  # unreadable or damaged: not ours to fix here
                continue
            if not isinstance(header, dict) or {
                    k: v for k, v in header.items() if k not in skip} != mine:
                continue
            taken += self._take(records)
        return taken

    def reuse_tables(self, tables: Iterable[str | Path]) -> int:
        """Take into this journal the trainings that other truth tables (``bench table``
        CSVs, finished) or their journals (``*.journal.jsonl``, finished or not) hold for
        this table's cells and seeds, so that a table of more seeds is built from tables of
        fewer without training anything twice; how many were taken.

        Unlike ``reuse``, a source of another setting is an error, not skipped (it was named
        on purpose; ``check_sources``, which the CLI calls before any journal exists). A
        table keeps only the mean training time of a cell, so each seed taken from it gets
        that mean as its own."""
        tables = [Path(t) for t in tables]
        check_sources(self.oracle, tables)
        with locked(self.journal, "the truth table's journal"):
            taken = 0
            for path in tables:
                if path.name.endswith(".journal.jsonl"):
                    taken += self._take(read_journal(path)[1])
                else:
                    taken += self._reuse_table(path)
            return taken

    def _take(self, records: Iterable[dict[str, Any]]) -> int:
        """Journal the records (of another journal) that train a pending (cell, seed) and
        stand (``_stands``); how many. A record's cell is read in this table's spelling."""
        wanted = set(self.pending)
        taken = 0
        for rec in records:
            try:
                key = (self.space.format(self.space.parse(rec["arch"])), int(rec["seed"]))
            except (KeyError, TypeError, ValueError, ArchrankError):
                continue
            if key in wanted and _stands(rec):
                wanted.discard(key)
                rec = {**rec, "arch": key[0]}
                self.results[key] = rec
                self._append(rec)
                taken += 1
        return taken

    def _reuse_table(self, path: Path) -> int:
        from archrank.tables import load_benchmark

        bench = load_benchmark(path, self.space)
        row_of = {self.space.format(a): i for i, a in enumerate(bench.archs)}
        seeds = sorted({int(s) for m, _, s in (c.rpartition("_s") for c in bench.metrics)
                        if m in METRICS and s.isdigit()})
        cols = {c: bench.values(c) for c in ("params", "flops", "train_time_s")
                if c in bench.metrics}
        per = {(m, s): bench.values(f"{m}_s{s}") for m in METRICS for s in seeds
               if f"{m}_s{s}" in bench.metrics}
        taken = 0
        for arch, seed in self.pending:
            i = row_of.get(arch)
            if i is None or seed not in seeds:
                continue
            metrics = {m: float(v[i]) for (m, s), v in per.items()
                       if s == seed and math.isfinite(v[i])}
            if "val_acc" not in metrics:  # that training failed there: trained here
                continue
            metrics.update({k: float(v[i]) for k, v in
                            (("params", cols.get("params")), ("flops", cols.get("flops")),
                             ("train_seconds", cols.get("train_time_s")))
                            if v is not None and math.isfinite(v[i])})
            rec = {"arch": arch, "seed": seed, "status": "ok", "metrics": metrics,
                   "error": None, "from": str(path)}
            self.results[(arch, seed)] = rec
            self._append(rec)
            taken += 1
        return taken

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
        """Train every pending pair, ``in_flight`` at a time, journaling each result (the
        journal is locked meanwhile: a second process on the same table is refused)."""
        with locked(self.journal, "the truth table's journal"):
            self._run(executor, in_flight, on_result)

    def _run(self, executor: Executor, in_flight: int,
             on_result: Callable[[int, dict[str, Any]], None] | None) -> None:
        from archrank.runs.loop import evaluate_arch, for_executor

        todo = self.pending
        oracles = {s: for_executor(_with_seed(self.oracle, s), executor) for s in self.seeds}
        running: dict[Future, tuple[str, int]] = {}
        while todo or running:
            while todo and len(running) < max(1, in_flight):
                arch, seed = todo.pop(0)
                fut = executor.submit(evaluate_arch, oracles[seed], self.space.parse(arch))
                running[fut] = (arch, seed)
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                arch, seed = running.pop(fut)
                try:
                    evaluation, _, _ = fut.result()
                except Exception as exc:  # evaluate_arch keeps a training's own errors
                    raise ArchrankError(
                        f"a training worker stopped ({type(exc).__name__}: {first_line(exc)});"
                        f" {len(self.results)} trainings are journaled: run the same command"
                        " again to continue") from None
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
            # population std (ddof 0); empty where fewer than two seeds finished (no spread
            # was measured: a diverged seed left one value)
            stds = {m: np.where(np.isfinite(v).sum(axis=1) > 1, np.nanstd(v, axis=1), np.nan)
                    for m, v in per.items()}
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


def _stands(record: dict[str, Any]) -> bool:
    """Whether a journaled training is final: it finished, or the cell itself diverged (a
    failure that is not the cell's doing, such as memory or a killed device, is retried)."""
    return record.get("status") != "failed" or str(record.get("error") or "").startswith(
        "training diverged")


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
    the cells (the higher half, or the lower for a loss).

    The better half is never chosen by the values being compared: chosen by their own mean,
    two seeds of a cell that got in with one low value must have had the other high, which
    makes them look anti-correlated there (a review found the first version's better-half
    figures biased low this way: 0.05 instead of 0.19 on the committed truth). So a pair of
    seeds is compared on the half chosen by the mean of the *other* seeds (none left with two
    seeds: ``None``), a seed against the rest on the half chosen by the rest's mean.
    ``seed_std_mean`` (the mean over cells of the population std, ddof 0, of a cell's
    seeds) and ``cells`` use the half by the mean of all seeds (a Gaussian sample's spread is
    independent of its mean).
    """
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values).any(axis=1)
    v = values[ok]
    out: dict[str, Any] = {"cells": int(ok.sum()), "seeds": int(values.shape[1])}
    k = v.shape[1] if v.ndim == 2 else 0
    if len(v) < 3 or k < 2:
        return out

    def half(by: np.ndarray) -> np.ndarray:
        # the better ceil(n/2) by rank (ties by row order): ">= median" took every cell tied
        # at the median (12 of 20 at chance), and fewer than two distinct values left no tau
        order = np.argsort(-by if higher_is_better else by, kind="stable")
        rows = np.zeros(len(by), dtype=bool)
        rows[order[:(len(by) + 1) // 2]] = True
        return rows

    def stats(pairs: list[float], rest: list[float], rows: np.ndarray) -> dict[str, Any]:
        return {"seed_to_seed_kendall_tau": float(np.mean(pairs)) if pairs else None,
                "one_vs_rest_kendall_tau": float(np.mean(rest)),
                "seed_std_mean": float(v[rows].std(axis=1).mean()), "cells": int(rows.sum())}

    seed_pairs = list(itertools.combinations(range(k), 2))
    everything = np.ones(len(v), bool)
    out["all"] = stats(
        [kendall_tau(v[:, a], v[:, b]) for a, b in seed_pairs],
        [kendall_tau(v[:, a], np.delete(v, a, axis=1).mean(axis=1)) for a in range(k)],
        everything)
    pairs, rest = [], []
    for a, b in seed_pairs:
        if k > 2:
            rows = half(np.delete(v, [a, b], axis=1).mean(axis=1))
            pairs.append(kendall_tau(v[rows, a], v[rows, b]))
    for a in range(k):
        others = np.delete(v, a, axis=1).mean(axis=1)
        rows = half(others)
        rest.append(kendall_tau(v[rows, a], others[rows]))
    out["better_half"] = stats(pairs, rest, half(v.mean(axis=1)))
    return out


def recipe_info(oracle: TrainingOracle) -> dict[str, Any]:
    """The training setting of a truth table (JSON-able)."""
    return {"recipe": asdict(oracle.recipe), "width": oracle.width, "depth": oracle.depth,
            "dataset": oracle.dataset.describe()}


def ceiling_kendall_tau(seed_to_seed: float, seeds: int) -> float:
    """The Kendall tau an error-free predictor is expected to reach against the mean of
    ``seeds`` trainings, when single trainings agree with ``seed_to_seed`` tau.

    Model: each training is the true quality plus independent Gaussian noise. Greiner's
    relation turns the seed-to-seed tau into a correlation ``r = sin(pi tau / 2)``; the mean
    of k trainings has reliability ``k r / (1 + (k - 1) r)`` (Spearman-Brown), the truth's
    correlation with the true quality is its square root, and back to a tau. With one seed
    and tau 0.29 this gives 0.46, the issue-11 figure.
    """
    if not math.isfinite(seed_to_seed) or seeds < 1:
        return float("nan")
    r = math.sin(math.pi * max(seed_to_seed, 0.0) / 2.0)
    reliability = seeds * r / (1.0 + (seeds - 1) * r) if r > 0 else 0.0
    return 2.0 / math.pi * math.asin(math.sqrt(min(max(reliability, 0.0), 1.0)))


# -- reading a truth table back ------------------------------------------------------------
@dataclass
class Truth:
    """A truth table as the benchmarks use it: cells, mean and per-seed ``val_acc``, FLOPs,
    and the setting it was trained at (``recipe``, ``width``, ``depth``, ``dataset``: the
    ``recipe_info`` of its ``bench table`` run), read from its journal or JSON."""

    path: Path
    space: str
    archs: list[str]
    val_acc: np.ndarray  # mean over the training seeds
    per_seed: np.ndarray  # [cells, seeds]
    seeds: list[int]
    flops: np.ndarray | None
    setting: dict[str, Any]
    setting_source: str

    def ceiling(self) -> dict[str, Any]:
        """``noise_ceiling`` of the per-seed values, with ``kendall_tau``: what an error-free
        predictor reaches against the mean (``ceiling_kendall_tau``)."""
        out = noise_ceiling(self.per_seed)
        for label in ("all", "better_half"):
            pair = out.get(label, {}).get("seed_to_seed_kendall_tau")
            if pair is not None:
                out[label]["perfect_predictor_kendall_tau"] = ceiling_kendall_tau(
                    pair, out["seeds"])
        out["kendall_tau"] = out.get("all", {}).get("perfect_predictor_kendall_tau",
                                                      float("nan"))
        return out


def read_truth(path: str | Path, space: str, recipe: str | Path | None = None) -> Truth:
    """Read a truth table of ``space`` and its setting; one-line errors for a table of another
    space, one without ``val_acc`` or its per-seed columns, and one without a recipe.

    The setting comes from ``recipe`` (a ``bench table --json`` report or a truth journal)
    when given, else from the journal beside the table (``TABLE.csv.journal.jsonl``), else
    from ``TABLE.json`` (the ``--json`` report of ``bench table``, same name)."""
    from archrank.spaces import get_space
    from archrank.tables import load_benchmark

    path = Path(path)
    if not path.is_file():
        raise ArchrankError(f"{path}: no such truth table")
    space_obj = get_space(space)
    _check_space(path, space_obj)
    bench = load_benchmark(path, space_obj)  # the columns first: a run's export has no seeds
    seed_cols = sorted((int(m[len("val_acc_s"):]), m) for m in bench.metrics
                       if m.startswith("val_acc_s") and m[len("val_acc_s"):].isdigit())
    if "val_acc" not in bench.metrics or len(seed_cols) < 2:
        raise ArchrankError(f"{path}: a truth table needs the columns val_acc and val_acc_s<seed> "
                            "of at least two training seeds (archrank bench table writes them)")
    setting, source = _truth_setting(path, recipe)
    if setting.get("space", space) != space:
        raise ArchrankError(f"{source} is the recipe of a {setting['space']} truth, not of "
                            f"{space}" if recipe is not None else
                            f"{path} is a truth of space {setting['space']}, not {space} "
                            f"(from {source})")
    seeds = [s for s, _ in seed_cols]
    if "seeds" in setting and [int(s) for s in setting["seeds"]] != seeds:
        raise ArchrankError(f"{path}: columns of training seeds {seeds}, but {source} says "
                            f"{setting['seeds']}")
    repeats = bench.text_repeats()
    if repeats:  # counted twice in every tau and percentile
        first, later = repeats[0]
        raise ArchrankError(f"{path}: {bench.row_name(later)} repeats the cell of "
                            f"{bench.row_name(first)} ({len(repeats)} repeated rows); a truth "
                            "holds each cell once, its seeds in columns")
    per_seed = np.stack([bench.values(c) for _, c in seed_cols], axis=1)
    val = bench.values("val_acc")
    columns = {"val_acc": val, **{c: per_seed[:, j] for j, (_, c) in enumerate(seed_cols)}}
    for name, col in columns.items():
        if np.isinf(col).any():
            row = int(np.flatnonzero(np.isinf(col))[0])
            raise ArchrankError(f"{path}: {bench.row_name(row)}, field {name!r}: not finite")
        if np.isnan(col).all():
            raise ArchrankError(f"{path}: column {name!r} has no values")
    keep = np.isfinite(val)
    if keep.sum() < 3:
        raise ArchrankError(f"{path}: only {int(keep.sum())} cells have a val_acc")
    if not keep.all():  # cells whose every training failed: said, not dropped in silence
        import warnings

        warnings.warn(f"{path}: {int((~keep).sum())} cells without a val_acc are left out "
                      f"(first: {bench.row_name(int(np.flatnonzero(~keep)[0]))})",
                      stacklevel=2)
    flops = bench.values("flops")[keep] if "flops" in bench.metrics else None
    archs = [space_obj.format(a) for a, k in zip(bench.archs, keep, strict=True) if k]
    return Truth(path, space, archs, val[keep], per_seed[keep], seeds, flops, setting, source)


def _check_space(path: Path, space: Any) -> None:
    """The first cell must be one of ``space``'s; else name the space it belongs to."""
    from archrank.spaces import SPACES, get_space
    from archrank.tables.table import open_text

    try:
        with open_text(path) as fh:  # as load_benchmark reads it: .gz, byte-order mark
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            row = next(reader, None)
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise ArchrankError(f"{path}: cannot read the truth table ({exc})") from None
    if "arch" not in header or row is None or len(row) != len(header):
        return  # load_benchmark names the problem
    arch = row[header.index("arch")]
    try:
        space.parse(arch)
        return
    except (ArchrankError, ValueError):
        pass
    for name in SPACES:
        try:
            get_space(name).parse(arch)
        except (ArchrankError, ValueError):
            continue
        raise ArchrankError(f"{path}: line 2, field 'arch': a cell of space {name}, not "
                            f"{space.name} (this is a truth of another space)")
    raise ArchrankError(f"{path}: line 2, field 'arch': {arch[:60]!r} is not a {space.name} "
                        "cell")


def _truth_setting(path: Path, recipe: str | Path | None) -> tuple[dict[str, Any], str]:
    """``recipe_info`` of the truth (plus ``space``/``seeds`` where recorded), and its file.
    A ``recipe`` given beside a table whose own journal or JSON exists must agree with it
    (else a pick would be trained with another recipe than the truth's, in silence)."""
    given = None if recipe is None else Path(recipe)
    own = next((f for f in (journal_path(path), path.with_suffix(".json"))
                if f.is_file() and (given is None or f.resolve() != given.resolve())), None)
    if given is None:
        if own is None:
            raise ArchrankError(f"{path}: no recipe found (neither {journal_path(path).name} "
                                f"nor {path.with_suffix('.json').name} beside it); give "
                                "--recipe FILE, the --json report of the bench table run that "
                                "made it")
        return _setting_from(own)
    theirs = _setting_from(given)
    if own is not None:
        differ = setting_differences(_setting_from(own)[0], theirs[0],
                                     ("recipe", "width", "depth", "seeds"))
        if differ:
            raise ArchrankError(f"--recipe {recipe} differs from {own.name}, the truth's own "
                                f"record, in {', '.join(differ)}")
    return theirs


def setting_differences(a: dict[str, Any], b: dict[str, Any],
                        keys: Sequence[str] = ("recipe", "width", "depth")) -> list[str]:
    """The names of the truth-setting entries (``recipe_info`` and a truth's recorded
    setting) in which ``a`` and ``b`` differ: ``keys`` that both record, then ``dataset``
    when the data's fingerprints differ."""
    differ = [k for k in keys if k in a and k in b and a[k] != b[k]]
    if (a.get("dataset") or {}).get("fingerprint") != (b.get("dataset") or {}).get(
            "fingerprint"):
        differ.append("dataset")
    return differ


def _setting_from(file: Path) -> tuple[dict[str, Any], str]:
    """The setting recorded in ``file`` (a truth journal or ``bench table --json``)."""
    if not file.is_file():
        raise ArchrankError(f"{file}: no such recipe file")
    try:
        text = file.read_text()
        first = text.splitlines()[0] if text.strip() else ""
        data = json.loads(first if first.lstrip().startswith("{") and
                          file.name.endswith(".jsonl") else text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, IndexError):
        raise ArchrankError(f"{file}: not a truth journal or bench table JSON") from None
    if isinstance(data, dict) and data.get("format") == JOURNAL_FORMAT:
        oracle = data.get("oracle") or {}
        net = oracle.get("network") or {}
        data = {"space": data.get("space"), "seeds": data.get("seeds"),
                "recipe": oracle.get("recipe"), "dataset": oracle.get("dataset"),
                "width": net.get("width"), "depth": net.get("depth")}
    if not isinstance(data, dict):
        raise ArchrankError(f"{file}: not a truth journal or bench table JSON")
    missing = [k for k in ("recipe", "width", "depth", "dataset") if data.get(k) is None]
    if missing:
        raise ArchrankError(f"{file}: no {missing[0]!r}: not the recipe of a truth table "
                            "(bench table --json writes it)")
    keep = ("space", "seeds", "recipe", "width", "depth", "dataset")
    return {k: data[k] for k in keep if data.get(k) is not None}, str(file)
