"""The durable record of a search: ``RUN_DIR/run.sqlite`` (SQLite in WAL mode).

Tables:
- ``config``: the run's configuration (key -> JSON value), written once at creation;
- ``asks``: every ``strategy.ask`` call (``batch``), how many tells preceded it
  (``asked_after``), how many architectures it requested and returned;
- ``evaluations``: one row per proposed architecture, keyed by the order it was proposed
  (``seq``), with its canonical ``hash`` (UNIQUE: nothing is evaluated twice), text, status
  (``pending`` until its result arrives, then ``ok`` or ``failed``), metrics (JSON), objective
  value, cost, error, timestamps, and ``tell_seq``, its position among the results told to
  the strategy.

Each proposal and each result is committed as it happens, so killing the process loses at most
the evaluations in flight, and ``asks`` + ``tell_seq`` are exactly what a resume replays.
"""

from __future__ import annotations

import fcntl
import functools
import json
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from archrank.errors import ArchrankError
from archrank.oracles.base import Evaluation

DB_NAME = "run.sqlite"
LOCK_NAME = "run.lock"
SCHEMA_VERSION = 1
# a pending row's error while it is a suspect (mark_lost): "...(stops pinned on it: N)"
LOST = "its worker stopped while it was in flight (stops pinned on it: "
INPUTS_KEY = "inputs"  # config row holding the run's input fingerprints (RunStore.create)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS config (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS asks (
    batch       INTEGER PRIMARY KEY,
    asked_after INTEGER NOT NULL,
    requested   INTEGER NOT NULL,
    returned    INTEGER NOT NULL,
    time        REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    seq         INTEGER PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    arch        TEXT NOT NULL,
    batch       INTEGER NOT NULL REFERENCES asks(batch),
    status      TEXT NOT NULL CHECK (status IN ('pending', 'ok', 'failed')),
    metrics     TEXT,
    objective   REAL,
    cost        REAL,
    error       TEXT,
    started     REAL,
    finished    REAL,
    tell_seq    INTEGER UNIQUE
);
"""


@dataclass
class EvalRecord:
    """One row of ``evaluations``."""

    seq: int
    hash: str
    arch: str
    batch: int
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    objective: float | None = None
    cost: float | None = None
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    tell_seq: int | None = None

    @property
    def done(self) -> bool:
        return self.status != "pending"

    def evaluation(self) -> Evaluation:
        """The ``Evaluation`` this record stores (what the strategy was told)."""
        return Evaluation(metrics=dict(self.metrics), cost=self.cost or 0.0,
                          status="ok" if self.status == "ok" else "failed", error=self.error)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "hash": self.hash, "arch": self.arch, "status": self.status,
            "objective": self.objective, "metrics": self.metrics, "cost": self.cost,
            "error": self.error, "started": self.started, "finished": self.finished,
            "batch": self.batch, "tell_seq": self.tell_seq,
        }


@dataclass(frozen=True)
class AskRecord:
    """One row of ``asks``."""

    batch: int
    asked_after: int
    requested: int
    returned: int


def _changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changes(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if old == new:
        return []
    return [f"{prefix.rstrip('.') or 'value'}: {old} -> {new}"]


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no inf or NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    """numpy scalars and other numbers a metric may come as."""
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Run-database failures inside a ``RunStore`` method as one-line errors: a damaged file
    (``database disk image is malformed``, unreadable JSON in a row), a full or read-only
    disk. The run directory is named so the user knows which run it is."""
    @functools.wraps(method)
    def wrapper(self: RunStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise ArchrankError(f"{self.where}: run database error ({exc})") from None
        except (ValueError, TypeError, RecursionError) as exc:
            raise ArchrankError(f"{self.where}: damaged run database (unreadable value: "
                                f"{str(exc)[:80] or type(exc).__name__})") from None
    return wrapper  # type: ignore[return-value]


class RunExists(ArchrankError):
    """``RunStore.create`` where a run already is (another search's, or one created at the
    same moment)."""


class RunStore:
    """A run directory's database. Open with ``create``, ``open`` or ``memory``."""

    def __init__(self, conn: sqlite3.Connection, run_dir: Path | None,
                 lock_fd: int | None = None) -> None:
        self.conn = conn
        self.run_dir = run_dir
        self._lock_fd = lock_fd
        self._snapshot: Path | None = None

    # -- opening ----------------------------------------------------------------------------
    @staticmethod
    def exists(run_dir: str | Path) -> bool:
        return (Path(run_dir) / DB_NAME).is_file()

    @classmethod
    def create(cls, run_dir: str | Path, config: dict[str, Any],
               inputs: dict[str, Any] | None = None) -> RunStore:
        """A new run directory recording ``config`` and, optionally, ``inputs``: what the run
        depends on beyond its options (the oracle's description with the content fingerprint
        of its table or dataset and its training recipe), which ``check_inputs`` compares on
        every resume. An existing run there is an error."""
        run_dir = Path(run_dir)
        already = f"{run_dir}: already holds a run (resume it with --resume)"
        if cls.exists(run_dir) and not cls._unborn(run_dir):
            raise RunExists(already)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchrankError(f"{run_dir}: cannot create run directory ({exc.strerror})"
                                ) from None
        store = cls._connect(run_dir)
        if cls._state(run_dir) in ("ours", "foreign"):  # another process created it meanwhile
            store.close()  # (unreadable here: our own connect on a full disk; _init says so)
            raise RunExists(already)
        # a database whose creation was killed before its configuration was written (it has
        # no run in it) is created again rather than left to block the directory for good
        store._init(config if inputs is None else {**config, INPUTS_KEY: inputs})
        return store

    @staticmethod
    def _state(run_dir: Path) -> str:
        """What the run database is: ``unborn`` (missing, empty, or its creation never
        finished: ``_init`` writes the schema version in the transaction that creates the
        tables), ``foreign`` (another program's tables, no config), ``unreadable`` (not a
        database: said where it is read) or ``ours``."""
        db = run_dir / DB_NAME
        if not db.is_file():
            return "unborn"
        try:
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        except sqlite3.Error:
            return "unreadable"
        try:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "config" not in tables:
                return "foreign" if tables else "unborn"
            return "unborn" if conn.execute(
                "SELECT 1 FROM config WHERE key = 'schema_version'").fetchone() is None \
                else "ours"
        except sqlite3.Error:  # not a database: not ours to replace
            return "unreadable"
        finally:
            conn.close()

    @classmethod
    def _unborn(cls, run_dir: Path) -> bool:
        """Whether the run database is missing or its creation never finished (``_state``)."""
        return cls._state(run_dir) == "unborn"

    @classmethod
    def half_created(cls, run_dir: str | Path) -> bool:
        """Whether a run database is there but its creation never finished (killed, a full
        disk): no run to resume; ``create`` makes it anew."""
        return cls.exists(run_dir) and cls._unborn(Path(run_dir))

    @staticmethod
    def is_running(run_dir: str | Path) -> bool | None:
        """Whether a process holds the run's lock now (it is being searched), without taking
        it; ``None`` where that cannot be told (an unreadable lock file)."""
        path = Path(run_dir) / LOCK_NAME
        if not path.exists():
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        finally:
            os.close(fd)  # (closing releases a shared lock just taken)
        return False

    @classmethod
    def open(cls, run_dir: str | Path, *, readonly: bool = False) -> RunStore:
        """An existing run directory: for writing (resuming; it takes the run's lock), or
        ``readonly`` for reading (``runs show``, ``runs export``): no lock, so a run that is
        still being written can be read (a consistent WAL snapshot), and a read-only run
        directory too."""
        run_dir = Path(run_dir)
        if run_dir.name == DB_NAME and run_dir.is_file():  # the database named: its run
            run_dir = run_dir.parent
        if not run_dir.is_dir():
            raise ArchrankError(f"{run_dir}: a file, not a run directory" if run_dir.exists()
                                else f"{run_dir}: no such run directory")
        if not cls.exists(run_dir):
            raise ArchrankError(f"{run_dir}: not a run directory (no {DB_NAME})")
        state = cls._state(run_dir)
        if state == "unborn":
            raise ArchrankError(f"{run_dir}: the run was stopped while being created (nothing "
                                "was evaluated); start it again: archrank search --run-dir "
                                f"{run_dir} with the search's options")
        if state == "foreign":
            raise ArchrankError(f"{run_dir / DB_NAME}: not an archrank run database (it has "
                                "tables, none of them a run's config)")
        if readonly:
            store = cls._connect_readonly(run_dir)
        else:
            writable = all(os.access(p, os.W_OK) for p in (run_dir, run_dir / DB_NAME))
            if not writable:
                raise ArchrankError(f"{run_dir}: the run directory is read-only, so the run "
                                    "cannot go on here (runs show / runs export can read it)")
            store = cls._connect(run_dir)
        try:
            version = store.conn.execute(
                "SELECT value FROM config WHERE key = 'schema_version'").fetchone()
            version = None if version is None else json.loads(version[0])
        except (sqlite3.DatabaseError, ValueError, RecursionError) as exc:
            store.close()
            raise ArchrankError(f"{run_dir / DB_NAME}: not a readable run database ({exc})"
                                ) from None
        if version != SCHEMA_VERSION:
            store.close()
            raise ArchrankError(f"{run_dir / DB_NAME}: unsupported run database version")
        return store

    @classmethod
    def snapshot(cls, run_dir: str | Path) -> RunStore:
        """A read-only in-memory copy of a run, taken in one read transaction: consistent while
        another process is still writing the run, and it neither takes the run's lock nor
        blocks the writer (a WAL reader). For reports; never write to it."""
        run_dir = Path(run_dir)
        db = run_dir / DB_NAME
        if not db.is_file():
            raise ArchrankError(f"{run_dir}: not a run directory (no {DB_NAME})")
        mem = sqlite3.connect(":memory:")
        try:
            # read-only, with the copy fallback for a read-only folder without its -shm file
            src = cls._connect_readonly(run_dir)
            try:
                src.conn.backup(mem)
            finally:
                src.close()
            version = mem.execute(
                "SELECT value FROM config WHERE key = 'schema_version'").fetchone()
            version = None if version is None else json.loads(version[0])
        except (sqlite3.Error, ValueError, RecursionError) as exc:
            mem.close()
            raise ArchrankError(f"{db}: not a readable run database ({exc})") from None
        except ArchrankError:
            mem.close()
            raise
        if version != SCHEMA_VERSION:
            mem.close()
            raise ArchrankError(f"{db}: unsupported run database version")
        return cls(mem, run_dir)

    @classmethod
    def memory(cls, config: dict[str, Any]) -> RunStore:
        """An in-memory store (benchmarks: same code path, nothing written to disk)."""
        store = cls(sqlite3.connect(":memory:"), None)
        store._init(config)
        return store

    @classmethod
    def _connect_readonly(cls, run_dir: Path) -> RunStore:
        """A read-only connection (SQLite ``mode=ro``); when SQLite cannot open the WAL
        database that way (a read-only folder without its ``-shm`` file), a snapshot: the
        database and its WAL copied to a temporary folder, read there."""
        db = run_dir / DB_NAME
        conn = None
        try:
            conn = sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True,
                                   timeout=30.0)
            conn.execute("SELECT COUNT(*) FROM config").fetchone()
            return cls(conn, run_dir)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise ArchrankError(f"{db}: not a readable run database ({exc})") from None
        snapshot = Path(tempfile.mkdtemp(prefix="archrank-run-"))
        try:
            for suffix in ("", "-wal"):
                src = run_dir / (DB_NAME + suffix)
                if src.exists():
                    shutil.copyfile(src, snapshot / (DB_NAME + suffix))
            conn = sqlite3.connect(snapshot / DB_NAME, timeout=30.0)
            conn.execute("SELECT COUNT(*) FROM config").fetchone()
        except (OSError, sqlite3.DatabaseError) as exc:
            shutil.rmtree(snapshot, ignore_errors=True)
            raise ArchrankError(f"{db}: cannot read the run database ({exc})") from None
        store = cls(conn, run_dir)
        store._snapshot = snapshot
        return store

    @classmethod
    def _connect(cls, run_dir: Path) -> RunStore:
        try:
            lock_fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ArchrankError(f"{run_dir}: cannot lock the run ({exc.strerror})") from None
        for attempt in range(5):  # a reader testing the lock (is_running) holds it for
            try:                  # microseconds: try again before calling the run in use
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 4:
                    os.close(lock_fd)
                    raise ArchrankError(f"{run_dir}: the run is in use by another archrank "
                                        "process") from None
                time.sleep(0.05)
        conn = sqlite3.connect(run_dir / DB_NAME, timeout=30.0)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            conn.close()
            os.close(lock_fd)
            raise ArchrankError(f"{run_dir / DB_NAME}: not a readable run database ({exc})"
                                ) from None
        if mode != "wal":  # e.g. a file system without shared memory
            conn.close()
            os.close(lock_fd)
            raise ArchrankError(f"{run_dir / DB_NAME}: cannot use WAL journal mode ({mode})")
        # WAL + NORMAL: a committed transaction survives the process being killed.
        conn.execute("PRAGMA synchronous=NORMAL")
        return cls(conn, run_dir, lock_fd)

    @_guarded
    def _init(self, config: dict[str, Any]) -> None:
        with self.conn:  # tables and configuration in one transaction: all or nothing
            self.conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA)
            rows = {"schema_version": SCHEMA_VERSION, "created": time.time(), **config}
            self.conn.executemany(
                "INSERT INTO config (key, value) VALUES (?, ?)",
                [(k, json.dumps(v, sort_keys=True)) for k, v in rows.items()],
            )

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._snapshot is not None:
            shutil.rmtree(self._snapshot, ignore_errors=True)
            self._snapshot = None

    @property
    def where(self) -> str:
        return str(self.run_dir / DB_NAME) if self.run_dir is not None else "in-memory run"

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------
    @property
    @_guarded
    def config(self) -> dict[str, Any]:
        """The configuration the run was created with (without bookkeeping keys)."""
        rows = self.conn.execute("SELECT key, value FROM config").fetchall()
        return {k: json.loads(v) for k, v in rows
                if k not in ("schema_version", "created", INPUTS_KEY)}

    @property
    @_guarded
    def inputs(self) -> dict[str, Any] | None:
        """What the run's results depend on besides its options (``create``), if recorded."""
        row = self.conn.execute("SELECT value FROM config WHERE key = ?",
                                (INPUTS_KEY,)).fetchone()
        return None if row is None else json.loads(row[0])

    def check_inputs(self, current: dict[str, Any]) -> None:
        """A one-line error when ``current`` inputs differ from the recorded ones (a changed
        table, dataset or training recipe would mix old and new results)."""
        recorded = self.inputs
        if recorded is None:
            return
        name = (recorded.get("dataset") or {}).get("name")
        if isinstance(name, str):  # a name recorded before the MNIST-1D default changed
            from archrank.datasets import recorded_spec

            recorded = {**recorded, "dataset": {**recorded["dataset"],
                                                "name": recorded_spec(name)[0]}}
        now = json.loads(json.dumps(current, sort_keys=True, default=str))
        changed = _changes(recorded, now)
        source = now.get("source") or (now.get("dataset") or {}).get("name")
        if source:  # the contents' fingerprint: say whose contents
            changed = [f"the contents of {source} ({c})" if c.startswith("fingerprint:")
                       or c.startswith("dataset.fingerprint:") else c for c in changed]
        if changed:
            raise ArchrankError(
                f"{self.run_dir}: the run's inputs changed since it was created "
                f"({'; '.join(changed[:3])}); restore them to resume, or start a new run "
                "with another --run-dir")

    @property
    @_guarded
    def created(self) -> float:
        row = self.conn.execute("SELECT value FROM config WHERE key = 'created'").fetchone()
        return float(json.loads(row[0]))

    @_guarded
    def records(self) -> list[EvalRecord]:
        """Every evaluation row, in proposal order."""
        rows = self.conn.execute(
            "SELECT seq, hash, arch, batch, status, metrics, objective, cost, error, started,"
            " finished, tell_seq FROM evaluations ORDER BY seq").fetchall()
        return [
            EvalRecord(seq=r[0], hash=r[1], arch=r[2], batch=r[3], status=r[4],
                       metrics=json.loads(r[5]) if r[5] else {}, objective=r[6], cost=r[7],
                       error=r[8], started=r[9], finished=r[10], tell_seq=r[11])
            for r in rows
        ]

    @_guarded
    def asks(self) -> list[AskRecord]:
        rows = self.conn.execute(
            "SELECT batch, asked_after, requested, returned FROM asks ORDER BY batch"
        ).fetchall()
        return [AskRecord(*r) for r in rows]

    @_guarded
    def counts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT status, COUNT(*) FROM evaluations GROUP BY status").fetchall()
        return {"pending": 0, "ok": 0, "failed": 0, **dict(rows)}

    def iter_jsonl(self) -> Iterator[str]:
        """Each evaluation as one JSON line (``archrank runs export``)."""
        for rec in self.records():  # strict JSON: a metric's inf / nan is written as null
            yield json.dumps(_strict(rec.to_json()), sort_keys=False, allow_nan=False)

    @_guarded
    def flat_rows(self) -> list[dict[str, Any]]:
        """Each evaluation as one flat row (``runs export --csv``): its fields, with every
        metric as a column of its own (``metrics.NAME`` if NAME is also a field)."""
        rows = []
        for rec in self.records():
            row = rec.to_json()
            metrics = row.pop("metrics") or {}
            for name, value in metrics.items():
                row[f"metrics.{name}" if name in row else name] = value
            rows.append(row)
        return rows

    # -- writing ----------------------------------------------------------------------------
    @_guarded
    def add_ask(self, batch: int, asked_after: int, requested: int,
                proposals: Iterable[tuple[int, str, str]]) -> None:
        """Record one ``ask`` call and its proposals ``(seq, hash, arch_text)`` atomically."""
        proposals = list(proposals)
        now = time.time()
        try:
            with self.conn:
                self.conn.execute(
                    "INSERT INTO asks (batch, asked_after, requested, returned, time)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (batch, asked_after, requested, len(proposals), now))
                self.conn.executemany(
                    "INSERT INTO evaluations (seq, hash, arch, batch, status, started)"
                    " VALUES (?, ?, ?, ?, 'pending', ?)",
                    [(seq, h, text, batch, now) for seq, h, text in proposals])
        except sqlite3.IntegrityError as exc:
            raise RuntimeError(f"refusing to record a repeated proposal: {exc}") from exc

    @_guarded
    def mark_started(self, seq: int, started: float) -> None:
        with self.conn:
            self.conn.execute("UPDATE evaluations SET started = ? WHERE seq = ?",
                              (started, seq))

    @_guarded
    def record_result(self, seq: int, evaluation: Evaluation, objective: float | None,
                      started: float | None, finished: float | None,
                      tell_seq: int | None = None) -> None:
        """Store the result of proposal ``seq`` (and, optionally, its tell position)."""
        with self.conn:
            self.conn.execute(
                "UPDATE evaluations SET status = ?, metrics = ?, objective = ?, cost = ?,"
                " error = ?, started = COALESCE(?, started), finished = ?,"
                " tell_seq = COALESCE(?, tell_seq) WHERE seq = ?",
                (evaluation.status, json.dumps(evaluation.metrics, default=_jsonable),
                 _finite(objective),
                 float(evaluation.cost), evaluation.error, started, finished, tell_seq, seq))

    @_guarded
    def mark_lost(self, seqs: list[int], pinned: bool) -> dict[int, int]:
        """Mark the pending evaluations ``seqs`` as in flight when their worker stopped (kept
        in their ``error`` until they have a result: ``suspects``), and, when the stop is
        ``pinned`` on them (the only cell in flight), count one more; the counts."""
        counts = self.suspects()
        out: dict[int, int] = {}
        with self.conn:
            for seq in seqs:
                row = self.conn.execute("SELECT status FROM evaluations WHERE seq = ?",
                                        (seq,)).fetchone()
                if row is None or row[0] != "pending":
                    continue
                out[seq] = counts.get(seq, 0) + int(pinned)
                self.conn.execute("UPDATE evaluations SET error = ? WHERE seq = ?",
                                  (f"{LOST}{out[seq]})", seq))
        return out

    @_guarded
    def suspects(self) -> dict[int, int]:
        """Pending evaluations that were in flight when a worker stopped, and how many stops
        were pinned on each (``mark_lost``)."""
        rows = self.conn.execute("SELECT seq, error FROM evaluations WHERE status = 'pending'"
                                 " AND error LIKE ?", (LOST + "%",)).fetchall()
        counts = (err[len(LOST):].rstrip(")") for _, err in rows)
        return {int(seq): int(n) if n.isdigit() else 0
                for (seq, _), n in zip(rows, counts, strict=True)}

    @_guarded
    def mark_told(self, seq: int, tell_seq: int) -> None:
        with self.conn:
            self.conn.execute("UPDATE evaluations SET tell_seq = ? WHERE seq = ?",
                              (tell_seq, seq))
