"""NATS-Bench topology files (the NAS-Bench-201 space), read without the NATS-Bench API.

Two official layouts, both bz2-compressed pickles (``pickle.pbz2``) of plain dicts:

* one file, ``NATS-tss-v1_0-3ffb9.pickle.pbz2``: ``{"meta_archs": [arch string, ...],
  "arch2infos": {index: {hp: ArchResults}}, "evaluated_indexes": [...]}``;
* a directory, ``NATS-tss-v1_0-3ffb9-simple/``: ``meta.pickle.pbz2`` (``{"meta_archs": ...}``)
  and one ``{index:06d}.pickle.pbz2`` per architecture holding ``{hp: ArchResults}``.

``hp`` is the training schedule (``"12"`` or ``"200"`` epochs). An ``ArchResults`` is the state
dict of the API's class of that name: ``arch_index``, ``arch_str``, ``dataset_seed``
(``{dataset: [seeds]}``) and ``all_results`` (``{(dataset, seed): ResultsCount}``), where a
``ResultsCount`` holds ``epochs``, ``eval_acc1es`` (``{"x-valid@199": acc, ...}``),
``train_times`` (``{epoch: seconds}``), ``params``, ``flop`` and ``latency``. Values are means
over the seeds, after the last epoch, as the API's ``get_metrics(..., is_random=False)``; an
accuracy whose seeds cannot be averaged (different schedules, a seed without the final value)
is left missing, with one warning per file.
Files are read with the allow-list unpickler; trained weights, if a file holds any, are not
built (they read as ``None``).

Columns: ``cifar10_valid`` (cifar10-valid / x-valid), ``cifar10_test`` (cifar10 / ori-test),
``cifar100_valid``, ``cifar100_test``, ``ImageNet16-120_valid``, ``ImageNet16-120_test``
(x-valid / x-test), ``<dataset>_train_time`` (seconds for the whole schedule), ``params``
(MB), ``flops`` (M) and ``latency`` (s) on CIFAR-10, and the benchmark ``index`` (a text
column: an id, no metric). The cost of a query is ``cifar10_valid_train_time``, what the API
charges for a CIFAR-10 search.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from archrank.errors import BenchmarkFormatError, InvalidArchitecture
from archrank.tables.safe_pickle import TensorSkippingUnpickler, load_pickle_file
from archrank.tables.table import TabularBenchmark

EXT = "pickle.pbz2"
# (dataset, evaluation set) -> column
ACCURACY_COLUMNS = {
    ("cifar10-valid", "x-valid"): "cifar10_valid",
    ("cifar10", "ori-test"): "cifar10_test",
    ("cifar100", "x-valid"): "cifar100_valid",
    ("cifar100", "x-test"): "cifar100_test",
    ("ImageNet16-120", "x-valid"): "ImageNet16-120_valid",
    ("ImageNet16-120", "x-test"): "ImageNet16-120_test",
}
TIME_PREFIX = {"cifar10-valid": "cifar10_valid", "cifar10": "cifar10", "cifar100": "cifar100",
               "ImageNet16-120": "ImageNet16-120"}
COST_COLUMN = "cifar10_valid_train_time"
COST_DATASETS = ("cifar10-valid", "cifar10")  # params / flops / latency taken from the first


def _number(value: Any, where: str, field: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise BenchmarkFormatError(f"{where}: field {field!r} is not a number ({value!r})")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise BenchmarkFormatError(
            f"{where}: field {field!r} is not a number ({value!r})"
        ) from None
    return out if math.isfinite(out) else math.nan


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _run_values(run: Any, where: str) -> dict[str, float]:
    """Numbers of one trial (a ResultsCount state dict) after its last epoch."""
    if not isinstance(run, Mapping):
        raise BenchmarkFormatError(
            f"{where}: expected a ResultsCount dict, got {type(run).__name__}"
        )
    epochs = run.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 1:
        raise BenchmarkFormatError(
            f"{where}: field 'epochs' must be a positive integer, got {epochs!r}"
        )
    last = int(epochs) - 1
    out: dict[str, float] = {"epochs": float(epochs)}
    accs = run.get("eval_acc1es") or {}
    if not isinstance(accs, Mapping):
        raise BenchmarkFormatError(f"{where}: field 'eval_acc1es' must be a dict")
    for key, value in accs.items():
        name, _, epoch = str(key).partition("@")
        if epoch == str(last):
            out[f"acc:{name}"] = _number(value, where, f"eval_acc1es[{key!r}]")
    times = run.get("train_times")
    if isinstance(times, Mapping) and times:
        try:
            out["time"] = sum(_number(times[i], where, "train_times") for i in range(last + 1))
        except KeyError:
            out["time"] = math.nan  # an incomplete record of epoch times
    elif times is not None and not isinstance(times, Mapping):
        raise BenchmarkFormatError(f"{where}: field 'train_times' must be a dict")
    out["params"] = _number(run.get("params"), where, "params")
    out["flops"] = _number(run.get("flop"), where, "flop")
    latency = run.get("latency")
    if isinstance(latency, list | tuple) and latency:
        lats = [_number(x, where, "latency") for x in latency]
        out["latency"] = _mean([x for x in lats if x > 0])
    return out


def _seed_mean(values: list[float], seeds: list[Any], epochs: set[float]) -> tuple[float, str]:
    """The mean of one accuracy over a dataset's seeds, or NaN and why it cannot be taken:
    the seeds were trained for different epochs, or a seed lacks the final value another
    has (the mean would silently be the other seeds'; the NATS-Bench API fails there too)."""
    if len(epochs) > 1 and not all(math.isnan(v) for v in values):
        return math.nan, ("seeds trained for different epochs ("
                          f"{', '.join(str(int(e)) for e in sorted(epochs))})")
    lacking = [s for s, v in zip(seeds, values, strict=True) if math.isnan(v)]
    if lacking and len(lacking) < len(values):
        return math.nan, f"seed {lacking[0]!r} has no final value another seed has"
    return _mean(values), ""


def arch_results_row(state: Any, where: str,
                     notes: list[str] | None = None) -> dict[str, float]:
    """Columns of one architecture from an ArchResults state dict (see module doc).

    An accuracy whose seeds cannot be averaged (``_seed_mean``) is left missing and the
    reason appended to ``notes``."""
    notes = [] if notes is None else notes
    if not isinstance(state, Mapping):
        raise BenchmarkFormatError(
            f"{where}: expected an ArchResults dict, got {type(state).__name__}"
        )
    seeds_of = state.get("dataset_seed")
    results = state.get("all_results")
    if not isinstance(seeds_of, Mapping) or not isinstance(results, Mapping):
        raise BenchmarkFormatError(
            f"{where}: ArchResults needs dicts 'dataset_seed' and 'all_results'"
        )
    row: dict[str, float] = {}
    costs: dict[str, dict[str, float]] = {}
    for dataset, seeds in seeds_of.items():
        if not isinstance(seeds, list | tuple | set):
            raise BenchmarkFormatError(f"{where}: dataset_seed[{dataset!r}] must be a list")
        runs = []
        for seed in seeds:
            if (dataset, seed) not in results:
                raise BenchmarkFormatError(f"{where}: no result for ({dataset!r}, {seed!r})")
            runs.append(_run_values(results[(dataset, seed)], f"{where} ({dataset}, seed {seed})"))
        epochs = {r["epochs"] for r in runs}
        for (ds, setname), column in ACCURACY_COLUMNS.items():
            if ds == dataset:
                values = [r.get(f"acc:{setname}", math.nan) for r in runs]
                row[column], why = _seed_mean(values, list(seeds), epochs)
                if why:  # left missing; build_table warns
                    notes.append(f"{where} ({dataset}, {setname}): {why}")
        prefix = TIME_PREFIX.get(str(dataset))
        if prefix is not None:
            row[f"{prefix}_train_time"] = _mean([r.get("time", math.nan) for r in runs])
        costs[str(dataset)] = {k: _mean([r.get(k, math.nan) for r in runs])
                               for k in ("params", "flops", "latency")}
    for dataset in COST_DATASETS:
        if dataset in costs:
            row.update(costs[dataset])
            break
    return row


def _hp_key(hp2state: Any, hp: str, where: str) -> Any:
    """The entry of ``hp`` in ``{hp: ArchResults}`` (keys may be str or int), or ``None``."""
    if not isinstance(hp2state, Mapping):
        raise BenchmarkFormatError(
            f"{where}: expected a dict of training schedule -> results, got "
            f"{type(hp2state).__name__}"
        )
    for key in (hp, int(hp) if hp.isdigit() else None):
        if key is not None and key in hp2state:
            return hp2state[key]
    return None


def build_table(
    meta_archs: Any,
    entries: Iterable[tuple[int, Any, str]],
    *,
    source: str | Path,
    hp_label: str,
    available: set[str],
) -> TabularBenchmark:
    """A benchmark from ``(index, ArchResults state or None, where)`` triples."""
    from archrank.spaces import get_space

    if not isinstance(meta_archs, list | tuple) or not all(isinstance(a, str) for a in meta_archs):
        raise BenchmarkFormatError(f"{source}: 'meta_archs' must be a list of architecture strings")
    space = get_space("nb201")
    archs, rows, indexes = [], [], []
    notes: list[str] = []
    for index, state, where in entries:
        if state is None:
            continue  # not trained with this schedule
        if isinstance(index, np.integer):
            index = int(index)
        if not isinstance(index, int) or not 0 <= index < len(meta_archs):
            raise BenchmarkFormatError(
                f"{where}: architecture index {index!r} is not in meta_archs"
            )
        text = meta_archs[index]
        recorded = state.get("arch_str") if isinstance(state, Mapping) else None
        if isinstance(recorded, str) and recorded != text:
            raise BenchmarkFormatError(
                f"{where}: arch_str {recorded!r} differs from meta_archs[{index}] {text!r}"
            )
        try:
            arch = space.parse(text)
        except InvalidArchitecture as exc:
            raise BenchmarkFormatError(f"{where}: {exc}") from None
        row = arch_results_row(state, where, notes)
        archs.append(arch)
        rows.append(row)
        indexes.append(str(index))
    if not rows:
        raise BenchmarkFormatError(
            f"{source}: no architecture has results for the {hp_label} schedule; available: "
            f"{', '.join(sorted(available)) or 'none'}"
        )
    if notes:
        first = notes[0].removeprefix(f"{source}: ")
        warnings.warn(f"{source}: {len(notes)} accuracy value(s) left missing because their "
                      f"seeds cannot be averaged; the first: {first}", stacklevel=3)
    names = [*ACCURACY_COLUMNS.values()]
    names += [f"{p}_train_time" for p in TIME_PREFIX.values()] + ["params", "flops", "latency"]
    present = [n for n in names if any(n in r for r in rows)]
    columns = {n: np.array([r.get(n, math.nan) for r in rows], dtype=np.float64) for n in present}
    cost = COST_COLUMN if COST_COLUMN in columns else next(
        (n for n in present if n.endswith("_train_time")), None
    )
    return TabularBenchmark(space, archs, columns, str(source), cost_column=cost,
                            text_columns={"index": indexes})  # the benchmark's own id


def arch2infos(data: Any, path: Path, kind: str) -> Mapping:
    """The ``arch2infos`` dict of a loaded NATS-Bench / NAS-Bench-201 file (both share the
    layout); a one-line error naming the file when it is something else."""
    if not isinstance(data, Mapping):
        raise BenchmarkFormatError(
            f"{path}: expected a dict with 'meta_archs' and 'arch2infos', got {type(data).__name__}"
        )
    missing = [k for k in ("meta_archs", "arch2infos") if k not in data]
    if missing:
        raise BenchmarkFormatError(f"{path}: missing key {missing[0]!r} (not {kind}?)")
    infos = data["arch2infos"]
    if not isinstance(infos, Mapping):
        raise BenchmarkFormatError(f"{path}: 'arch2infos' must be a dict")
    return infos


def read_nats(path: str | Path, hp: str | int = "200") -> TabularBenchmark:
    """Read a NATS-Bench topology benchmark: the single file or the ``-simple`` directory.

    ``hp`` picks the training schedule (``"200"`` epochs by default, or ``"12"``).
    Example: ``read_nats("NATS-tss-v1_0-3ffb9-simple").best("cifar10_valid")``.
    """
    path = Path(path)
    hp = str(hp)
    if path.is_dir():
        return _read_directory(path, hp)
    data = load_pickle_file(path, unpickler=TensorSkippingUnpickler)
    infos = arch2infos(data, path, "a NATS-Bench topology file")
    available: set[str] = set()
    entries = []
    for index in infos:
        where = f"{path}: arch2infos[{index!r}]"
        hp2state = infos[index]
        state = _hp_key(hp2state, hp, where)
        available.update(str(k) for k in hp2state)
        entries.append((index, state, where))
    entries.sort(key=lambda e: e[0] if isinstance(e[0], int) else -1)
    return build_table(data["meta_archs"], entries, source=path, hp_label=hp,
                       available=available)


def _read_directory(path: Path, hp: str) -> TabularBenchmark:
    meta_file = path / f"meta.{EXT}"
    if not meta_file.is_file():
        raise BenchmarkFormatError(
            f"{path}: no meta.{EXT} (not a NATS-Bench '-simple' directory?)"
        )
    meta = load_pickle_file(meta_file)
    if not isinstance(meta, Mapping) or "meta_archs" not in meta:
        raise BenchmarkFormatError(f"{meta_file}: missing key 'meta_archs'")
    meta_archs = meta["meta_archs"]
    available: set[str] = set()

    def entries() -> Iterable[tuple[int, Any, str]]:
        count = len(meta_archs) if isinstance(meta_archs, list | tuple) else 0
        for index in range(count):
            for name in (f"{index:06d}.{EXT}", f"{index}.{EXT}"):
                file = path / name
                if file.is_file():
                    hp2state = load_pickle_file(file, unpickler=TensorSkippingUnpickler)
                    state = _hp_key(hp2state, hp, str(file))
                    available.update(str(k) for k in hp2state)
                    yield index, state, str(file)
                    break

    return build_table(meta_archs, entries(), source=path, hp_label=hp, available=available)


__all__ = ["ACCURACY_COLUMNS", "COST_COLUMN", "arch_results_row", "build_table", "read_nats"]
