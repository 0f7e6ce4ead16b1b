"""Writing the user's files safely: one place every output path goes through.

``check_output(path, flag)`` runs before any work starts, so a long job never loses its
result to a missing folder or a read-only file at the end (and no missing folder is created
silently). ``open_output(path)`` then writes:

- a regular file (new or existing) atomically: into a temporary file next to it, renamed into
  place on success (the old file stays whole if the job fails or is killed; its permission
  bits are kept);
- anything else (``/dev/null``, a FIFO, a terminal) in place, never replacing it;
- through a symbolic link: the file the link points to is written, the link stays a link;
- ``-``: standard output; ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` likewise write
  through the open descriptor (``open_descriptor``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from archrank.errors import ArchrankError


def _real(path: Path) -> Path:
    """``path`` with symbolic links followed (also a dangling link's target)."""
    return Path(os.path.realpath(path))


_FD_PATH = re.compile(r"^/dev/(?:(stdout)|(stderr)|fd/(\d+))$|^/proc/self/fd/(\d+)$")


def open_descriptor(path: str | os.PathLike[str]) -> int | None:
    """The file descriptor a path such as ``/dev/stdout`` or ``/dev/fd/3`` names, else None:
    such a path is written through the open descriptor (as ``-`` is), never resolved and
    replaced (followed, ``/dev/stdout`` is the file ``>>`` appends to, or a pipe's name)."""
    m = _FD_PATH.match(str(path))
    if m is None:
        return None
    return 1 if m.group(1) else 2 if m.group(2) else int(m.group(3) or m.group(4))


def is_stream(path: str | os.PathLike[str]) -> bool:
    """Whether an output path is a stream (``-`` or an open descriptor), not a file of its
    own: nothing (a journal, a lock, a checkpoint) can sit beside it."""
    return str(path) == "-" or open_descriptor(path) is not None


# What archrank reads inside an input directory (a run's database and lock, a work dir's
# checkpoints and journals): an output may replace anything else there (a report, an export).
_READ_IN_DIRS = ("run.sqlite", "run.lock")
_READ_SUFFIXES = (".pt", ".jsonl")


def _read_by_archrank(path: Path) -> bool:
    return path.exists() and (path.name.startswith(_READ_IN_DIRS)
                              or path.name.endswith(_READ_SUFFIXES))


def check_output(path: str | os.PathLike[str], flag: str = "--out",
                 inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
    """``path`` as a ``Path`` if a file can be written there; a one-line error naming ``flag``
    and the problem otherwise. ``inputs`` are what the command reads (files, run or data
    directories): an output that is one of them, or a file archrank reads inside one (a
    run's database, a checkpoint, a journal), would destroy it; anything else there (an
    earlier report or export) may be replaced. Creates nothing."""
    if str(path) == "":
        raise ArchrankError(f"{flag or 'output'}: an empty path (give a file name)")
    p = Path(path)
    if is_stream(p):
        return p
    where = f"{flag} {p}" if flag else str(p)
    if str(p) == ".":  # an option's empty text arrives as Path(""), which is "." too
        raise ArchrankError(f"{where}: is the working folder (or an empty path); give a file "
                            "name")
    real = _real(p)
    if real.is_dir():
        raise ArchrankError(f"{where}: is a directory; give a file name")
    for given in inputs:
        if given is None or str(given) == "-" or str(given).startswith("nbgraph:"):
            continue
        source = _real(Path(str(given).split("?", 1)[0]))  # a table spec's ?COLUMN=VALUE
        if real == source:
            raise ArchrankError(f"{where}: this is the input {given}; write elsewhere "
                                "(it would be overwritten)")
        if source.is_dir() and source in real.parents and _read_by_archrank(real):
            raise ArchrankError(f"{where}: a file of the input {given} (it would be "
                                "overwritten); write elsewhere")
    folder = real.parent
    if not folder.is_dir():
        raise ArchrankError(f"{where}: folder {folder} does not exist (create it first)")
    try:
        st = real.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ArchrankError(f"{where}: cannot use this path ({exc.strerror})") from None
    if st is not None and not os.access(real, os.W_OK):
        raise ArchrankError(f"{where}: file is not writable")
    regular = st is None or stat.S_ISREG(st.st_mode)
    if regular and not os.access(folder, os.W_OK | os.X_OK):
        raise ArchrankError(f"{where}: folder {folder} is not writable")
    return p


def check_plot_dir(path: str | os.PathLike[str] | None, flag: str = "--plot") -> None:
    """A folder figures can go to: an existing, writable folder, or a new one whose parent
    exists (created when written; a missing parent is an error, never created silently).
    Checked before the work, so a long benchmark does not fail at its very end."""
    if path is None:
        return
    p = _real(Path(path))
    if p.exists() and not p.is_dir():
        raise ArchrankError(f"{flag} {path}: is a file; give a folder for the figures")
    folder = p if p.is_dir() else p.parent
    if not folder.is_dir():
        raise ArchrankError(f"{flag} {path}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArchrankError(f"{flag} {path}: folder {folder} is not writable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an unused path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file is removed when the block raises, so ``path`` is either the old file
    or the complete new one. An existing file's permission bits are kept. Temporary files of
    ``path`` left by writers killed outright (SIGKILL runs no clean-up; a supernet checkpoint
    leaves one its size) are removed first.
    """
    target = _real(Path(path))  # through a symbolic link: the link stays, its file changes
    _remove_orphans(target)
    # A fresh name the writer creates itself, so the file gets the usual (umask) permissions.
    tmp_path = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp_path
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(target.stat().st_mode)
            os.chmod(tmp_path, mode)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _remove_orphans(target: Path) -> None:
    """Remove ``.NAME.PID.*.tmp`` files next to ``target`` whose writer process is gone."""
    prefix = f".{target.name}."
    try:
        names = [n for n in os.listdir(target.parent or ".")
                 if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        parts = name[len(prefix):].split(".")  # exactly PID.HEX8.tmp (not another file's)
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[1]) != 8:
            continue
        pid = parts[0]
        if int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # the writer is dead here; untouched for a minute (a
            # writer of another PID namespace writing a shared folder is not seen as alive)
            with contextlib.suppress(OSError):
                orphan = target.parent / name
                if time.time() - orphan.stat().st_mtime > 60:
                    orphan.unlink()
        except OSError:  # alive (another user's) or unknown: leave it
            continue


@contextlib.contextmanager
def open_output(path: str | os.PathLike[str], mode: str = "w", flag: str = "--out",
                **kwargs: Any) -> Iterator[IO[Any]]:
    """An open file for writing ``path`` safely (see the module docstring); ``mode`` is
    ``"w"`` or ``"wb"``. OS errors become one-line errors naming ``flag`` and the path."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_output writes ('w' or 'wb'), not {mode!r}")
    p = Path(path)
    fd = 1 if str(p) == "-" else open_descriptor(p)
    where = f"{flag} {p}" if flag else str(p)
    if fd in (1, 2):
        stream = sys.stdout if fd == 1 else sys.stderr
        name = "standard output" if fd == 1 else "standard error"
        prefix = f"{where}: " if flag else ""
        if stream is None:  # started with it closed (`>&-`)
            raise ArchrankError(f"{prefix}cannot write {name} (it is closed)")
        try:
            yield stream.buffer if mode == "wb" else stream
        except BrokenPipeError:  # a reader that quit: the CLI ends quietly with 141
            raise
        except OSError as exc:  # `> /dev/full`
            raise ArchrankError(f"{prefix}cannot write {name} ({exc.strerror or exc})"
                                ) from None
        return
    if fd is not None:
        try:
            with open(fd, mode, closefd=False, **kwargs) as fh:
                yield fh
        except OSError as exc:
            raise ArchrankError(f"{where}: cannot write ({exc.strerror or exc})") from None
        return
    real = _real(p)
    try:
        if real.exists() and not real.is_file():  # a device, FIFO, socket: write in place
            with open(real, mode, **kwargs) as fh:
                yield fh
            return
        with atomic_path(real) as tmp, open(tmp, mode.replace("w", "x"), **kwargs) as fh:
            yield fh
    except OSError as exc:
        raise ArchrankError(f"{where}: cannot write ({exc.strerror or exc})") from None


def write_output(path: str | os.PathLike[str], text: str, flag: str = "--out") -> None:
    """Write ``text`` to ``path`` with ``open_output``."""
    with open_output(path, "w", flag, encoding="utf-8") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike[str], data: Any, flag: str = "--json") -> None:
    """Write ``data`` as indented JSON (non-finite floats refused) with ``open_output``."""
    import json

    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError:  # a NaN or infinity slipped into a result: write them as null
        text = json.dumps(_finite(data), indent=2) + "\n"
    write_output(path, text, flag)


def _finite(obj: Any) -> Any:
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The hidden lock file of ``path`` (``DIR/.NAME.lock``)."""
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


class FileLock:
    """A held lock file (``hold_lock``). ``close`` releases it and removes the file, so that
    a finished job leaves no hidden ``.NAME.lock`` behind; so does dropping the last
    reference (a CLI command that holds its lock in a local until it returns). A process
    killed outright leaves the file, unlocked, for the next job to take."""

    def __init__(self, fh: IO[Any], where: Path) -> None:
        self._fh: IO[Any] | None = fh
        self.path = where

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            if _same_file(fh, self.path):  # removed while held: nobody can take it between
                self.path.unlink()
        except OSError:
            pass
        finally:
            fh.close()

    def __del__(self) -> None:
        self.close()


def _same_file(fh: IO[Any], where: Path) -> bool:
    """Whether the open ``fh`` is still the file at ``where`` (not removed or replaced)."""
    try:
        a, b = os.fstat(fh.fileno()), os.stat(where)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def hold_lock(path: str | os.PathLike[str], what: str, *, wait: bool = False
              ) -> FileLock | None:
    """Take the exclusive advisory lock of ``path`` (``lock_path``) without waiting: a
    ``FileLock``, whose closing (or the process's end, also by SIGKILL) releases it; a
    one-line error when another process holds it, so that two jobs never write one file at
    once. ``None`` where ``fcntl`` is missing (not POSIX) or the folder does not exist.
    ``wait``: wait for the holder instead (a short critical section, such as merging into a
    shared file, that any number of processes take in turn)."""
    try:
        import fcntl
    except ImportError:
        return None
    target = Path(path)
    where = lock_path(target)
    if (str(path) == "-" or not where.parent.is_dir()
            or (target.exists() and not target.is_file())):
        return None  # nothing written there (stdout, a missing folder, /dev/null)
    for _ in range(1000 if wait else 10):  # (each holder removes the file it held)
        try:
            fh = open(where, "a")  # noqa: SIM115 (held open: the lock lives as long as it)
        except OSError:  # a read-only folder: this job cannot write the file either, and
            return None  # whatever it does write fails with its own message
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.close()
            raise ArchrankError(f"{path}: {what} is in use (by another archrank process, "
                                "or by this one)") from None
        except OSError as exc:  # a file system without flock (NFS without lockd...)
            fh.close()
            warnings.warn(f"{path}: cannot lock {what} on this file system ({exc.strerror}); "
                          "make sure no other process writes it", stacklevel=2)
            return None
        if _same_file(fh, where):
            return FileLock(fh, where)
        fh.close()  # its holder removed the file as we opened it: take the new one
    raise ArchrankError(f"{path}: cannot take the lock of {what} ({where} keeps changing)")


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], what: str, *, wait: bool = False) -> Iterator[None]:
    """``hold_lock`` for the duration of a block."""
    lock = hold_lock(path, what, wait=wait)
    try:
        yield
    finally:
        if lock is not None:
            lock.close()


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as a message shows it: relative to the working directory when it lies
    inside it (records keep absolute paths so that a run resumes from anywhere; a user
    reads the path as given)."""
    text = str(path)
    base, sep, query = text.partition("?")  # a table spec's ?COLUMN=VALUE
    p = Path(base)
    if p.is_absolute():
        with contextlib.suppress(ValueError):
            base = str(p.relative_to(Path.cwd()))
    return base + sep + query


def read_journal(path: Path) -> tuple[Any, list[Any], bool]:
    """``(header, records, torn)`` of a JSON Lines journal (one header line, then one record
    a line): ``header`` is None when the first line is missing or not JSON (a kill while it
    was written); a last line torn by a kill while appending is dropped (``torn``); a bad
    line anywhere else is a one-line error naming it. Every journal of archrank reads so."""
    import json

    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    records: list[Any] = []
    torn = False
    for i, line in enumerate(lines[1:], start=2):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):
                torn = True
                break
            raise ArchrankError(f"{path}: line {i}: not JSON") from None
    return header, records, torn
