"""Zero-cost proxies of whole spaces at the benchmark setting, cached per space.

Architecture-level signals (``archrank.zc``'s proxies) are known for every cell without
training it, so predictors can take them as inputs; computing them takes time (per cell, a
forward/backward pass of the real network), so ``ZCCache`` keeps them in the user cache dir
(``archrank.cache``), one file per space and setting (``zc-nb101.npz`` at the benchmark
setting, ``zc-nb101-small.npz`` for the small networks, ``ZCSetting.named``), keyed by canonical
cell hash:

* the **setting** (network width and depth, input shape, classes, proxy batch, seed) is stored
  with the values; a cache written under another setting is invalidated (with a warning) and
  rebuilt, never mixed;
* a corrupt or unreadable file is rebuilt with a warning;
* a file of another space is an error (move or delete it: it is not ours to replace);
* filling saves every 30 s, at the end and on Ctrl-C (atomic rename), so a stopped fill
  resumes where it stopped (a killed one from its last save).

``params`` and ``flops`` are exact and vectorised (``archrank.nn.counting``): instant for any
number of cells, nb101's 423,624 included. The other proxies build each cell's network: on nb201
at the benchmark setting about 0.05 s (synflow) and 0.15 s (each gradient proxy, batch 16) per
cell on one core. There is no CIFAR-10 here, so the proxy batch is **synthetic**: ``batch_size``
images of standard normal noise (seeded) with uniformly random labels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archrank.cache import atomic_path, cache_path
from archrank.errors import ArchrankError, first_line
from archrank.executors import process_pool, stop_pool
from archrank.files import locked
from archrank.zc import PROXIES, check_proxies, compute_proxies

FORMAT = 1
# Bump when what a proxy measures changes (archrank.nn's builders or initialisation order,
# archrank.zc's proxies, the representative of a hash): older caches are then rebuilt instead
# of serving stale values. Files from before the field existed are version 1.
CODE_VERSION = 1
# per space where it moved alone: darts 2 (session 12) counts the ReLU of the factorized
# reductions in nwot (an F.relu the kernel hook did not see); darts 3 (session 13) scores a
# hash on its canonical genotype (before: whichever equivalent genotype came first)
SPACE_CODE_VERSION = {"darts": 3}


def code_version(space: str) -> int:
    return SPACE_CODE_VERSION.get(space, CODE_VERSION)
# how a hash's cell is chosen for its proxies (``SearchSpace.canonical``: the first cell of
# the space's order, what whole-space fills always met first). Files written before session 10
# without it are read as they are: right when filled for the whole space; a table's fill then
# took the first of the table's cells that hash alike (nb201_zc.csv: 106 of 520 hashes had
# another string first), so such a cache is best filled again (docs/benchmarks.md).
REPRESENTATIVE = "canonical"
EXACT = ("params", "flops")  # vectorised counts, no network built
# Proxies filled by default: every proxy on nb201 (about 0.30 CPU-s a cell at the benchmark
# setting, networks scored in place: synflow 0.05 s, the four gradient proxies sharing one
# pass 0.24 s; see docs/benchmarks.md, "GATES++"); on nb101 only the exact counts (seconds a
# cell otherwise). At the small setting every proxy (``ZCCache.fill``).
DEFAULT_PROXIES: dict[str, tuple[str, ...]] = {
    "nb201": PROXIES,
    "nb101": EXACT,
}
# Named settings a signal can ask for with ``proxy@name`` (``archrank.signals``): the
# benchmark networks, or "small" ones (one cell a stage/stack, a narrow stem, 3x16x16 inputs)
# where the benchmark networks are too slow to score cell by cell (nb101: 0.05 CPU-s a cell
# for every proxy instead of about 4 s; docs/benchmarks.md, "GATES++").
BENCHMARK = "benchmark"
SMALL_SIZE: dict[str, dict[str, int]] = {
    "nb201": {"width": 8, "depth": 1},
    "nb101": {"width": 16, "depth": 1},
}
SETTINGS: tuple[str, ...] = (BENCHMARK, "small")


@dataclass(frozen=True)
class ZCSetting:
    """Everything the cached values depend on (the benchmark setting by default)."""

    space: str
    width: int
    depth: int
    input_shape: tuple[int, ...] = (3, 32, 32)
    num_classes: int = 10
    batch_size: int = 16
    seed: int = 0
    inputs: str = "synthetic"

    @classmethod
    def benchmark(cls, space: str, **changes: Any) -> ZCSetting:
        """NB201: C=16, N=5; NB101: 128 stem channels, 3 cells per stack; 3x32x32, 10 classes."""
        from archrank.nn import BENCHMARK_SIZE, NETWORK_SPACES

        if space not in BENCHMARK_SIZE:
            raise ArchrankError(f"zero-cost proxies need real networks; choose a space from "
                                f"{', '.join(NETWORK_SPACES)}, not {space!r}")
        size = BENCHMARK_SIZE[space]
        return cls(**{"space": space, "width": size["width"], "depth": size["depth"],
                      **changes})

    @classmethod
    def named(cls, space: str, name: str) -> ZCSetting:
        """The setting ``name`` (one of ``SETTINGS``) of ``space``."""
        if name == BENCHMARK:
            return cls.benchmark(space)
        if name == "small":
            if space not in SMALL_SIZE:
                raise ArchrankError(f"no small zero-cost setting for space {space!r}; "
                                    f"spaces with one: {', '.join(SMALL_SIZE)}")
            return cls.benchmark(space, **SMALL_SIZE[space], input_shape=(3, 16, 16))
        raise ArchrankError(f"unknown zero-cost setting {name!r}; choose from "
                            f"{', '.join(SETTINGS)}")

    def tag(self) -> str:
        """How this setting names its cache file: "" for the benchmark setting, the name of
        a named one, else a digest of the setting (a cache is never shared by settings)."""
        for name in SETTINGS:
            try:
                if ZCSetting.named(self.space, name) == self:
                    return "" if name == BENCHMARK else name
            except ArchrankError:
                continue
        digest = hashlib.sha1(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()
        return digest[:10]

    def cache_file(self, base: str | Path | None = None) -> Path:
        """The cache file of this setting: ``zc-SPACE[-TAG].npz`` in the user cache dir, or
        ``base`` with ``-TAG`` added to its stem for a setting other than the benchmark's."""
        tag = self.tag()
        if base is None:
            return cache_path(f"zc-{self.space}{'-' + tag if tag else ''}.npz")
        base = Path(base)
        return base.with_name(f"{base.stem}-{tag}{base.suffix}") if tag else base

    def key(self) -> dict[str, Any]:
        return {**asdict(self), "input_shape": list(self.input_shape)}

    def network(self, arch: Any) -> torch.nn.Module:
        """``arch``'s network at this setting, its weights from the setting's seed."""
        from archrank.nn import build_network

        return build_network(self.space, arch, width=self.width, depth=self.depth,
                             num_classes=self.num_classes, in_channels=self.input_shape[0],
                             input_kind="2d" if len(self.input_shape) == 3 else "1d",
                             seed=self.seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The synthetic proxy batch: seeded N(0, 1) inputs, uniform random labels."""
        gen = torch.Generator().manual_seed(self.seed)
        x = torch.randn((self.batch_size, *self.input_shape), generator=gen)
        y = torch.randint(0, self.num_classes, (self.batch_size,), generator=gen)
        return x, y


def exact_costs(space: Any, archs: Sequence[Any], setting: ZCSetting) -> dict[str, np.ndarray]:
    """``params`` and ``flops`` ("macs") of every cell's network, vectorised."""
    from archrank.nn.counting import nb101_costs, nb201_costs

    common = {"num_classes": setting.num_classes, "in_channels": setting.input_shape[0],
              "input_kind": "2d" if len(setting.input_shape) == 3 else "1d"}
    if setting.space == "nb201":
        common.pop("input_kind")
        out = nb201_costs([a.ops for a in archs], channels=setting.width,
                          cells_per_stage=setting.depth, input_size=setting.input_shape[1:],
                          **common)
    elif setting.space == "nb101":
        out = nb101_costs([a.matrix for a in archs], [a.ops for a in archs],
                          stem_channels=setting.width, cells_per_stack=setting.depth,
                          input_size=setting.input_shape[1:], **common)
    else:  # no vectorised count (darts): each network built and counted, about a second each
        out = _built_costs(archs, setting)
    return {k: v.astype(np.float64) for k, v in out.items()}


def _built_costs(archs: Sequence[Any], setting: ZCSetting) -> dict[str, np.ndarray]:
    """``params`` and ``flops`` of networks built one by one (spaces without a vectorised
    count)."""
    from archrank.nn import torch_threads
    from archrank.nn.counting import count_flops, count_params

    params, flops = np.zeros(len(archs)), np.zeros(len(archs))
    with torch_threads(1):
        for i, arch in enumerate(archs):
            net = setting.network(arch)
            params[i] = count_params(net)
            flops[i] = count_flops(net, setting.input_shape)
    return {"params": params, "flops": flops}


def _score_chunk(setting: ZCSetting, archs: list[Any], names: tuple[str, ...]) -> np.ndarray:
    """Per-cell proxies ``names`` of ``archs`` [len, k] (runs in a worker process)."""
    from archrank.nn import torch_threads

    batch = setting.batch()
    out = np.full((len(archs), len(names)), np.nan)
    with torch_threads(1):
        for i, arch in enumerate(archs):
            values = compute_proxies(setting.network(arch), batch, names, scratch=True)
            out[i] = [values[n] for n in names]
    return out


class ZCCache:
    """The zero-cost values of one space under one setting (see the module docstring)."""

    def __init__(self, space: Any, setting: ZCSetting | None = None,
                 path: str | Path | None = None) -> None:
        self.space = space
        self.setting = setting or ZCSetting.benchmark(space.name)
        if self.setting.space != space.name:
            raise ArchrankError(f"zero-cost setting is for space {self.setting.space!r}, "
                                f"not {space.name!r}")
        self.path = Path(path) if path is not None else self.setting.cache_file()
        self.hashes: list[str] = []
        self.index: dict[str, int] = {}
        self._legacy = False  # read from a table fill of before session 10 (``_read``)
        self.values: dict[str, np.ndarray] = {}
        self._load()

    # -- file ---------------------------------------------------------------------------------
    def _read(self, warn: bool = True) -> tuple[list[str], dict[str, np.ndarray]] | None:
        """The file's hashes and values; ``None`` when there is none, or (with a warning)
        when it is corrupt or of another setting, so that it is rebuilt."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as blob:
                meta = json.loads(str(blob["meta"]))
                hashes = [str(h) for h in blob["hashes"]]
                values = {n: np.asarray(blob[f"v_{n}"], dtype=np.float64)
                          for n in meta["proxies"]}
            if meta.get("format") != FORMAT or any(len(v) != len(hashes)
                                                   for v in values.values()):
                raise ValueError("inconsistent arrays")
        except Exception as exc:  # truncated, foreign or hand-edited file: rebuild it
            if warn:
                # numpy's advice on pickled data means the file is no npz archive at all
                why = ("not an npz archive" if "pickle" in str(exc) else first_line(exc))
                warnings.warn(f"{self.path}: corrupt zero-cost cache ({why}); it will be "
                              f"rebuilt", stacklevel=4)
            return None
        if meta.get("space") != self.space.name:
            raise ArchrankError(f"{self.path}: a zero-cost cache of space "
                                f"{meta.get('space')!r}, not {self.space.name!r}; move or "
                                f"delete it (or set ARCHRANK_CACHE_DIR to another folder)")
        code = meta.get("code", 1)
        if meta.get("setting") != self.setting.key() or code != code_version(self.space.name):
            if warn:
                warnings.warn(f"{self.path}: written under another setting "
                              f"({self._differs(meta.get('setting'), code)}); invalidated, "
                              f"it will be rebuilt", stacklevel=4)
            return None
        distinct = self.space.distinct_cells()
        if meta.get("representative") != REPRESENTATIVE and (distinct is None
                                                             or len(hashes) < distinct):
            # filled from a table before session 10: a hash's proxies may be those of another
            # string of the cell than today's representative (nb201_zc.csv: 106 of 520);
            # kept marked when more cells are filled into it (``save``)
            self._legacy = True
            if warn:
                warnings.warn(f"{self.path}: filled from a table before session 10 (older "
                              "representatives of cells that hash alike); delete it and fill "
                              "it again", stacklevel=4)
        return hashes, values

    def _differs(self, stored: Any, code: Any) -> str:
        """What differs between a file's setting and this cache's, field by field."""
        now = self.setting.key()
        if code != code_version(self.space.name):
            return f"proxy code version {code}, now {code_version(self.space.name)}"
        if isinstance(stored, dict) and isinstance(now, dict):
            diff = [f"{k} {stored.get(k)!r}, now {now.get(k)!r}"
                    for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k)]
            if diff:
                return "; ".join(diff)
        return f"{stored}, now {now}"

    def _load(self) -> None:
        read = self._read()
        if read is not None:
            self.hashes, self.values = read
            self.index = {h: i for i, h in enumerate(self.hashes)}

    def _merge_file(self) -> None:
        """Take what another process wrote to the file since it was read (values missing
        here), so that two fills of one cache do not overwrite each other's cells."""
        read = self._read(warn=False)
        if read is None:
            return
        hashes, values = read
        rows = self._rows(hashes)
        for name, col in values.items():
            mine = self._column(name)
            take = np.isnan(mine[rows]) & ~np.isnan(col)
            mine[rows[take]] = col[take]

    def save(self) -> None:
        """Write the cache atomically, merged (under a file lock) with what other processes
        wrote to it meanwhile."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # (a lock of its own, ".NAME.merge.lock": a fill holds the cache's for its whole
            # run, and its saves take this one in turn with any other process's)
            with locked(self.path.with_name(self.path.name + ".merge"), "the merge into "
                        "this zero-cost cache", wait=True):
                self._merge_file()
                meta = {"format": FORMAT, "code": code_version(self.space.name),
                        "space": self.space.name,
                        "setting": self.setting.key(), "proxies": sorted(self.values),
                        "representative": "legacy" if self._legacy else REPRESENTATIVE}
                arrays = {f"v_{n}": v for n, v in self.values.items()}
                with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, meta=np.array(json.dumps(meta)),
                             hashes=np.array(self.hashes, dtype=str), **arrays)
                _remove_empty(self.path.with_name(self.path.name + ".lock"))
        except OSError as exc:
            raise ArchrankError(f"{self.path}: cannot write ({exc.strerror})") from None

    # -- values -------------------------------------------------------------------------------
    def _rows(self, hashes: Sequence[str]) -> np.ndarray:
        """Row of every hash, adding rows (NaN values) for new ones."""
        new = [h for h in dict.fromkeys(hashes) if h not in self.index]
        if new:
            start = len(self.hashes)
            self.hashes.extend(new)
            self.index.update({h: start + i for i, h in enumerate(new)})
            for name in self.values:
                self.values[name] = np.concatenate([self.values[name], np.full(len(new),
                                                                               np.nan)])
        return np.array([self.index[h] for h in hashes], dtype=np.int64)

    def _column(self, name: str) -> np.ndarray:
        if name not in self.values:
            self.values[name] = np.full(len(self.hashes), np.nan)
        return self.values[name]

    def lookup(self, hashes: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """Values [len(hashes), len(names)], NaN where not cached."""
        rows = np.array([self.index.get(h, -1) for h in hashes], dtype=np.int64)
        out = np.full((len(hashes), len(names)), np.nan)
        hit = rows >= 0
        for k, name in enumerate(names):
            if name in self.values:
                out[hit, k] = self.values[name][rows[hit]]
        return out

    def fill(self, archs: Sequence[Any], names: Sequence[str] | str | None = None, *,
             workers: int = 1, chunk: int = 25, save_seconds: float = 30.0,
             on_done: Callable[[int, int], None] | None = None) -> int:
        """Compute whatever of ``names`` is missing for ``archs`` (one per canonical cell),
        ``chunk`` cells at a time (``on_done`` after each), saving every ``save_seconds``, at
        the end and on Ctrl-C. Returns how many cells the slow proxies were computed for
        (the exact counts, instant, are not counted)."""
        if names is None:  # every proxy at a small setting (what it is for), else per space
            names = (PROXIES if self.setting.tag() == "small"
                     else DEFAULT_PROXIES.get(self.space.name, EXACT))
        names = check_proxies(names)
        hashes = [self.space.hash(a) for a in archs]
        first: dict[str, int] = {}
        for i, h in enumerate(hashes):
            first.setdefault(h, i)
        uniq = list(first)
        # one representative per hash whichever cell came first (a table's or the space's
        # order): the proxies of cells that hash alike differ a little (dead edges)
        cells = [self.space.canonical(archs[first[h]]) for h in uniq]
        rows = self._rows(uniq)
        exact = [n for n in names if n in EXACT]
        if exact:
            todo = np.zeros(len(uniq), dtype=bool)
            for n in exact:
                todo |= np.isnan(self._column(n)[rows])
            if todo.any():
                costs = exact_costs(self.space, [c for c, t in zip(cells, todo, strict=True)
                                                 if t], self.setting)
                for n in exact:
                    self.values[n][rows[todo]] = costs[n]
        slow = tuple(n for n in names if n not in EXACT)
        for n in slow:
            self._column(n)
        missing = np.zeros(len(uniq), dtype=bool)
        for n in slow:
            missing |= np.isnan(self.values[n][rows])
        idx = np.flatnonzero(missing)
        self.save()
        total = len(idx)
        if on_done:
            on_done(0, total)
        if not total:
            return 0
        parts = [idx[s:s + chunk] for s in range(0, total, chunk)]
        done, saved_at = 0, time.monotonic()

        def store(part: np.ndarray, result: np.ndarray) -> None:
            # progress every chunk; the file (rewritten whole: 78 MB for all of NB101) every
            # ``save_seconds``, at the end and on Ctrl-C, so that saving never dominates
            nonlocal done, saved_at
            for k, n in enumerate(slow):
                self.values[n][rows[part]] = result[:, k]
            done += len(part)
            if done == total or time.monotonic() - saved_at >= save_seconds:
                self.save()
                saved_at = time.monotonic()
            if on_done:
                on_done(done, total)

        try:
            if workers <= 1:
                for part in parts:
                    store(part, _score_chunk(self.setting, [cells[i] for i in part], slow))
            else:
                # spawned workers of one torch thread that leave Ctrl-C to this process: it
                # stops them at once (a plain pool's workers each took the interrupt as one
                # failed chunk and went on computing, and leaving the pool waited for the
                # whole fill)
                pool = process_pool(workers)
                try:
                    futures = {pool.submit(_score_chunk, self.setting, [cells[i] for i in p],
                                           slow): p for p in parts}
                    for fut in as_completed(futures):  # every chunk kept as it finishes
                        store(futures[fut], fut.result())
                finally:
                    stop_pool(pool)
        except KeyboardInterrupt:  # what finished is kept (a kill loses the last seconds)
            self.save()
            raise
        return total


def _remove_empty(path: Path) -> None:
    """Remove ``path`` if it is an empty file: the lock file that older archrank versions
    left beside each cache (``zc-SPACE.npz.lock``), which nothing uses now."""
    with contextlib.suppress(OSError):
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()


def split_signal(name: str) -> tuple[str, str] | None:
    """``(proxy, setting)`` of a zero-cost signal name, ``proxy`` or ``proxy@setting``
    (``nwot@small``: nwot of the small networks); ``None`` for a name that is no proxy
    (a table column)."""
    proxy, _, setting = name.partition("@")
    if proxy not in PROXIES:
        return None
    if setting and setting not in SETTINGS:
        raise ArchrankError(f"unknown zero-cost setting {setting!r} in signal {name!r}; "
                            f"choose from {', '.join(SETTINGS)}")
    return proxy, setting or BENCHMARK


def signal_matrix(space: Any, archs: Sequence[Any], names: Sequence[str], *,
                  cache: ZCCache | None = None, path: str | Path | None = None) -> np.ndarray:
    """Arch-level signals ``names`` (proxies) of ``archs`` [len, k] at the cache's setting
    (the benchmark one unless ``cache`` says otherwise).

    ``params`` / ``flops`` are computed on the spot (exact, vectorised); the others come from
    the cache, and a clear error says how many cells lack which signal and how to fill it.
    """
    names = list(check_proxies(list(names)))
    out = np.full((len(archs), len(names)), np.nan)
    zc = cache or ZCCache(space, path=path)
    # columns filled by position: a signal named twice (``params``, ``params@benchmark``)
    # fills both of its columns
    if any(n in EXACT for n in names):
        costs = exact_costs(space, archs, zc.setting)
        for k, n in enumerate(names):
            if n in EXACT:
                out[:, k] = costs[n]
    slow = list(dict.fromkeys(n for n in names if n not in EXACT))  # each looked up once
    if slow:
        hashes = [space.hash(a) for a in archs]
        vals = zc.lookup(hashes, slow)
        for k, n in enumerate(slow):
            col = vals[:, k]
            lack = np.flatnonzero(np.isnan(col))
            if lack.size:
                raise ArchrankError(
                    f"arch-level signal {n!r} is missing for {lack.size:,} of {len(archs):,} "
                    f"cells (first: {space.format(archs[int(lack[0])])}) in {zc.path}; fill it "
                    f"with: archrank zc --space {space.name} --fill --proxies {n}"
                    + (f" --setting {zc.setting.tag()}" if zc.setting.tag() in SETTINGS
                       else "")
                    + " (add --table TABLE to fill only a table's cells"
                    + ("; all 8,765 of nb201 take about 12 CPU-minutes for synflow, about "
                       "50 for the four data-dependent proxies)"
                       if space.name == "nb201" else ": the whole space can take hours)"))
            out[:, [j for j, m in enumerate(names) if m == n]] = col[:, None]
    return out


__all__ = ["DEFAULT_PROXIES", "EXACT", "PROXIES", "SETTINGS", "ZCCache", "ZCSetting",
           "exact_costs", "signal_matrix", "split_signal"]
