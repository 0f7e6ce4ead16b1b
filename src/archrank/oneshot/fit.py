"""Fitting the weight-sharing space with a graph network (Chen et al., AAAI 2021).

Supernet scores are the true quality plus an error that differs from sub-network to
sub-network. ``fit_space`` scores a uniform sample of distinct cells with shared weights,
fits a graph predictor (``gcn`` by default, any of ``archrank.predictors``) to those noisy
scores, and predicts every cell of the space. The result, a ``ScoreTable`` with the predicted
score, the supernet score where sampled, and exact params/FLOPs (and table latency when a
``LatencyTable`` is given) per cell, answers any selection instantly (``hardware.select``).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import ArchrankError, first_line
from archrank.oneshot.hardware import LatencyTable
from archrank.oneshot.scoring import SCORE_METRICS, SubnetScorer, score_archs
from archrank.spaces import SPACES, get_space
from archrank.tables.table import bad_utf8_line, open_text

DEFAULT_SAMPLES = 1000
COLUMNS = ("arch", "hash", "predicted", "supernet_val_acc", "supernet_val_loss", "params",
           "flops", "latency_ms")


@dataclass
class ScoreTable:
    """One row per cell of the space (see the module docstring); NaN where not measured."""

    space: str
    archs: list[str]
    hashes: list[str]
    columns: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.archs)

    def write_csv(self, path: str | Path) -> None:
        """Write the table (atomically; ``-``: standard output)."""
        from archrank.files import open_output

        path = Path(path)
        names = [c for c in COLUMNS[2:] if c in self.columns]
        if str(path) != "-":
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ArchrankError(f"{path}: cannot write ({exc.strerror})") from None
        with open_output(path, "w", "", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["arch", "hash", *names])
            cols = [self.columns[c] for c in names]
            for i, (arch, h) in enumerate(zip(self.archs, self.hashes, strict=True)):
                writer.writerow([arch, h, *(_cell(c[i]) for c in cols)])

    @classmethod
    def read_csv(cls, path: str | Path, space: str | None = None) -> ScoreTable:
        """Read a table written by ``write_csv``; one-line errors naming line and field
        (``space`` None: the space whose cells the first row holds)."""
        path = Path(path)
        if not path.is_file():
            raise ArchrankError(f"{path}: a directory, not a score table" if path.is_dir()
                                else f"{path}: no such score table")
        reader = None
        try:
            with open_text(path) as fh:  # as every table: .gz, a byte-order mark
                reader = csv.reader(fh, strict=True)
                header, archs, hashes, rows = _read_rows(path, reader)
        except OSError as exc:
            raise ArchrankError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ArchrankError(f"{path}: line {bad_utf8_line(path)}: not UTF-8 text "
                                "(is this a score table?)") from None
        except csv.Error as exc:
            line = reader.line_num if reader is not None else 1
            raise ArchrankError(f"{path}: line {line}: malformed CSV ({exc})") from None
        if not archs:
            raise ArchrankError(f"{path}: the score table has no rows")
        values = np.array(rows, dtype=np.float64).reshape(len(rows), len(header) - 2)
        columns = {name: values[:, i] for i, name in enumerate(header[2:])}
        if np.isnan(columns["predicted"]).any():
            line = 2 + int(np.flatnonzero(np.isnan(columns["predicted"]))[0])
            raise ArchrankError(f"{path}: line {line}, field 'predicted': empty or not a "
                                "number")
        for name in ("predicted", "params", "flops", "latency_ms"):  # scores and costs
            if name in columns and np.isinf(columns[name]).any():
                line = 2 + int(np.flatnonzero(np.isinf(columns[name]))[0])
                raise ArchrankError(f"{path}: line {line}, field {name!r}: not finite")
            if name != "predicted" and name in columns and (columns[name] < 0).any():
                line = 2 + int(np.flatnonzero(columns[name] < 0)[0])
                raise ArchrankError(f"{path}: line {line}, field {name!r}: a negative cost")
        space = space or space_of_cell(path, archs[0])
        sp = get_space(space)
        for line, arch in enumerate(archs, start=2):  # cells of the space, not any text
            try:
                sp.parse(arch)
            except ArchrankError as exc:
                raise ArchrankError(f"{path}: line {line}, field 'arch': not a {space} cell "
                                    f"({first_line(exc)})") from None
        first: dict[str, int] = {}  # (cells that hash alike have rows of their own)
        for line, arch in enumerate(archs, start=2):
            if first.setdefault(arch, line) != line:  # --top would list one cell twice
                raise ArchrankError(f"{path}: line {line}: the cell of line {first[arch]} "
                                    "again")
        return cls(space, archs, hashes, columns)


def space_of_cell(path: str | Path, arch: str) -> str:
    """The first registered space that parses ``arch`` (a score table's first cell)."""
    for name in SPACES:
        try:
            get_space(name).parse(arch)
            return name
        except (ArchrankError, ValueError):
            continue
    raise ArchrankError(f"{path}: line 2, field 'arch': {arch[:60]!r} is a cell of no known "
                        "space")


def _read_rows(path: Path, reader: Any) -> tuple[list[str], list[str], list[str],
                                                  list[list[float]]]:
    header = next(reader, None)
    if not header or header[:3] != ["arch", "hash", "predicted"]:
        raise ArchrankError(f"{path}: line 1: not a score table (expected the columns "
                            "arch, hash, predicted, ...)")
    unknown = [c for c in header[2:] if c not in COLUMNS]
    if unknown:
        raise ArchrankError(f"{path}: line 1: unknown column {unknown[0]!r}")
    twice = [c for c in header if header.count(c) > 1]
    if twice:  # the last copy would win in silence
        raise ArchrankError(f"{path}: line 1: the column {twice[0]!r} is given twice")
    archs, hashes, rows = [], [], []
    for line, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise ArchrankError(f"{path}: line {line}: {len(row)} fields, expected "
                                f"{len(header)}")
        archs.append(row[0])
        hashes.append(row[1])
        try:
            rows.append([float(v) if v != "" else math.nan for v in row[2:]])
        except ValueError:
            bad = next(i for i, v in enumerate(row[2:]) if not _is_float(v))
            raise ArchrankError(f"{path}: line {line}, field {header[2 + bad]!r}: not a "
                                f"number: {row[2 + bad]!r}") from None
    return header, archs, hashes, rows


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return v == ""
    return True


def _cell(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


DEFAULT_POOL = 2000  # cells predicted in a space that cannot be enumerated


def sample_codes(space: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct cells of an enumerable op-on-edge space, uniformly, as codes."""
    size = space.size
    if size is None:
        raise ArchrankError(f"space {space.name!r} cannot be enumerated")
    n = min(int(n), size)
    index = np.sort(rng.choice(size, size=n, replace=False))
    k, edges = len(space.edge_op_names), space.num_edges
    powers = k ** np.arange(edges - 1, -1, -1)
    return (index[:, None] // powers[None, :]) % k  # enumerate() order: base-k digits


def check_score_metric(metric: str) -> None:
    """A one-line error for a supernet score other than ``SCORE_METRICS`` (checked by the CLI
    before any checkpoint is read or latency measured)."""
    if metric not in SCORE_METRICS:
        raise ArchrankError(f"unknown supernet score {metric!r}; choose from "
                            f"{', '.join(SCORE_METRICS)}")


def fit_space(
    scorer: SubnetScorer,
    *,
    samples: int = DEFAULT_SAMPLES,
    predictor: str = "gcn",
    metric: str = "val_acc",
    seed: int = 0,
    latency: LatencyTable | None = None,
    executor: Executor | None = None,
    predictor_params: dict[str, Any] | None = None,
    on_scored: Callable[[int, int], None] | None = None,
    pool: int = DEFAULT_POOL,
) -> ScoreTable:
    """Score ``samples`` cells with shared weights, fit ``predictor`` to them, predict all.

    ``metric`` is the supernet score fitted: ``val_acc`` or ``val_loss`` (negated, so that
    higher is better in ``predicted`` either way). A space that cannot be enumerated (darts)
    is predicted over the scored cells plus ``pool`` more drawn uniformly (distinct hashes);
    its exact costs come from the supernet (darts: the skeleton plus each op unit, vectorised).
    """
    check_score_metric(metric)
    if samples < 2:
        raise ArchrankError(f"--samples must be at least 2, got {samples}")
    net = scorer.supernet
    space = net.space
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if not space.enumerable:
        return _fit_pool(scorer, samples, predictor, metric, seed, latency, executor,
                         predictor_params, on_scored, pool)
    codes = sample_codes(space, samples, np.random.default_rng(seed))
    graphs = space.graphs_from_codes(codes)  # type: ignore[attr-defined]
    every = space.enumerate()
    powers = len(space.edge_op_names) ** np.arange(space.num_edges - 1, -1, -1)  # type: ignore[attr-defined]
    scores, model = _score_and_fit(scorer, codes, graphs, [every[i] for i in codes @ powers],
                                   predictor, metric, seed, executor, predictor_params,
                                   on_scored, seconds, start)

    start = time.perf_counter()
    all_codes = space.codes(every)  # type: ignore[attr-defined]
    predicted = model.predict(space.graphs_from_codes(all_codes),  # type: ignore[attr-defined]
                              arch_features=_arch_features(model, every))
    costs = net.costs(all_codes)
    columns: dict[str, np.ndarray] = {"predicted": predicted}
    for m in SCORE_METRICS:  # enumerate() order is the codes read as base-k numbers
        col = np.full(len(every), np.nan)
        col[codes @ powers] = scores[m]
        columns[f"supernet_{m}"] = col
    columns["params"] = costs["params"].astype(np.float64)
    columns["flops"] = costs["flops"].astype(np.float64)
    if latency is not None:
        columns["latency_ms"] = latency.predict(net, all_codes)
    seconds["predict"] = time.perf_counter() - start
    table = ScoreTable(space.name, [space.format(a) for a in every],
                       list(space.hash_table()), columns)  # type: ignore[attr-defined]
    table.info = {"samples": len(codes), "predictor": predictor, "metric": metric,
                  "seed": seed, "seconds": seconds,
                  "score_seconds_per_cell": float(np.mean(scores["seconds"])) if len(codes)
                  else 0.0}
    return table


def _arch_features(model: Any, archs: list[Any]) -> np.ndarray | None:
    """The model's arch inputs of ``archs`` (``None`` if it takes none): a predictor with
    architecture-level signals (``gates++``: FLOPs, parameters, cached zero-cost proxies at
    the benchmark setting) fits the supernet's scores with them, as in ``bench predictor``."""
    from archrank.signals import fit_signals

    if not getattr(model, "arch_inputs", None):
        return None
    return fit_signals(model, archs)["arch_features"]


def _score_and_fit(scorer: SubnetScorer, codes: np.ndarray, graphs: Any, archs: list[Any],
                   predictor: str, metric: str, seed: int, executor: Executor | None,
                   predictor_params: dict[str, Any] | None,
                   on_scored: Callable[[int, int], None] | None, seconds: dict[str, float],
                   start: float) -> tuple[dict[str, np.ndarray], Any]:
    """Score the paths ``codes`` (cells ``archs``) with shared weights and fit ``predictor``
    to their graphs."""
    from archrank.predictors.base import make_predictor

    scores = score_archs(scorer, codes, executor,
                         on_done=(lambda d: on_scored(d, len(codes))) if on_scored else None)
    seconds["score"] = time.perf_counter() - start
    y = scores[metric] if metric == "val_acc" else -scores[metric]
    if len(y) and np.all(y == y[0]):
        other = "val_loss" if metric == "val_acc" else "val_acc"
        raise ArchrankError(
            f"the supernet scores all {len(y)} sampled cells alike ({metric} "
            f"{float(scores[metric][0]):g}): nothing to fit; train it longer, score on more "
            f"validation samples (--val-samples), or by {other} (--score {other})")
    start = time.perf_counter()
    model = make_predictor(predictor, scorer.supernet.space, seed=seed,
                           **(predictor_params or {}))
    model.fit(graphs, y, arch_features=_arch_features(model, archs))
    seconds["fit"] = time.perf_counter() - start
    return scores, model


def _fit_pool(scorer: SubnetScorer, samples: int, predictor: str, metric: str, seed: int,
              latency: LatencyTable | None, executor: Executor | None,
              predictor_params: dict[str, Any] | None,
              on_scored: Callable[[int, int], None] | None, pool: int) -> ScoreTable:
    """``fit_space`` for a space that cannot be enumerated (see there)."""
    if pool < 0:
        raise ArchrankError(f"--pool must be at least 0, got {pool}")
    net = scorer.supernet
    space: Any = net.space
    seconds: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    every = space.from_codes(np.concatenate([space.random_codes(samples, rng),
                                             space.random_codes(pool, rng)]))
    hashes = space.hash_many(every)
    first = sorted({h: i for i, h in reversed(list(enumerate(hashes)))}.values())
    every, hashes = [every[i] for i in first], [hashes[i] for i in first]
    scored = np.flatnonzero(np.asarray(first) < samples)
    all_codes = space.codes(every)
    codes = all_codes[scored]

    picked = [every[i] for i in scored]
    scores, model = _score_and_fit(scorer, codes, space.to_graphs(picked), picked, predictor,
                                   metric, seed, executor, predictor_params, on_scored,
                                   seconds, time.perf_counter())

    start = time.perf_counter()
    columns: dict[str, np.ndarray] = {
        "predicted": model.predict(space.to_graphs(every),
                                   arch_features=_arch_features(model, every))}
    for m in SCORE_METRICS:
        col = np.full(len(every), np.nan)
        col[scored] = scores[m]
        columns[f"supernet_{m}"] = col
    costs = net.costs(all_codes)
    columns["params"] = costs["params"].astype(np.float64)
    columns["flops"] = costs["flops"].astype(np.float64)
    if latency is not None:
        columns["latency_ms"] = latency.predict(net, all_codes)
    seconds["predict"] = time.perf_counter() - start
    table = ScoreTable(space.name, [space.format(a) for a in every], hashes, columns)
    table.info = {"samples": len(codes), "pool": len(every), "predictor": predictor,
                  "metric": metric, "seed": seed, "seconds": seconds,
                  "score_seconds_per_cell": float(np.mean(scores["seconds"])) if len(codes)
                  else 0.0}
    return table
