"""The journal of a bench harness: each finished unit of work (one fit of ``bench predictor``,
one search of ``bench search``) as one JSON line beside ``--json``, so that a killed bench
(SIGKILL, out of memory, a closed laptop) resumes where it stopped when the same command runs
again. The first line records the settings shared by every unit (the table, the metric...),
each unit's key its own (a predictor's parameters): a journal of other shared settings is
refused rather than mixed in, while a bench with other predictors or strategies reuses the
units that match. The CLI removes it once the JSON is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archrank.errors import ArchrankError
from archrank.files import atomic_path, hold_lock, is_stream, read_journal

FORMAT = "archrank-bench-journal-1"


def journal_for(out: str | os.PathLike[str] | None,
                suffix: str = ".journal.jsonl") -> Path | None:
    """Where the journal of a job writing ``out`` lives (none without a file to sit beside:
    no output, a stream such as ``-`` or /dev/stdout, or /dev/null and other non-regular
    files written in place)."""
    if out is None or is_stream(out):
        return None
    p = Path(out)
    if p.exists() and not p.is_file():
        return None
    return Path(f"{out}{suffix}")


def discard(path: Path | None) -> None:
    """Remove a finished job's journal (its output now holds every result); its lock file
    went when the journal's lock was released (``files.FileLock``), and one another job
    holds now is not this job's to remove."""
    if path is not None:
        path.unlink(missing_ok=True)


class BenchJournal:
    """Finished units keyed by a tuple (e.g. ``(predictor, size, seed)``); ``path=None``
    keeps them in memory only (no ``--json``: nothing to resume into)."""

    def __init__(self, path: Path | None, command: str, settings: dict[str, Any]) -> None:
        self.path = path
        # through JSON once, so that a header read back compares equal (tuples become lists)
        self.header = json.loads(json.dumps({"format": FORMAT, "command": command,
                                             "settings": settings}, default=str))
        self.done: dict[str, dict[str, Any]] = {}
        self._lock = None
        if path is not None:  # one bench per journal: a second one on the same --json is
            self._lock = hold_lock(path, "the bench journal")  # refused
            try:
                self._open(path)
            except BaseException:
                self.close()  # not held by a refused journal (its exception may live on)
                raise

    def close(self) -> None:
        """Release the journal's lock (the harness is done with it)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @staticmethod
    def key(parts: Sequence[Any]) -> str:
        return json.dumps(list(parts), sort_keys=True, default=str)

    @staticmethod
    def digest(settings: Any) -> str:
        """A short fingerprint of one unit's own settings (a predictor's resolved parameters,
        a strategy's), part of its key: a bench with other predictors or options reuses the
        units whose settings match and runs the rest."""
        text = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def _open(self, path: Path) -> None:
        if not path.exists():
            self._write_fresh(path)
            return
        header, records, _ = read_journal(path)  # (a torn last line: that unit is redone)
        if header is None and not records:  # killed while the header was written
            self._write_fresh(path)
            return
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ArchrankError(f"{path}: line 1: not a bench journal; move it away")
        if header != self.header and not records:  # nothing finished under it: a new one
            self._write_fresh(path)
            return
        if header != self.header:
            diff = _differences(header.get("settings", {}), self.header["settings"])
            raise ArchrankError(
                f"{path} holds the unfinished results of a {header.get('command')} with other "
                f"settings ({', '.join(diff) or 'command'}); rerun that command to finish it, "
                f"or remove the journal to start afresh")
        for i, rec in enumerate(records, start=2):
            try:
                self.done[rec["key"]] = rec["result"]
            except (KeyError, TypeError):
                raise ArchrankError(f"{path}: line {i}: not a journal record") from None
        with atomic_path(path) as tmp:  # drop a torn last line: appends start on a fresh one
            tmp.write_text("".join(json.dumps(r) + "\n" for r in (
                self.header, *({"key": k, "result": v} for k, v in self.done.items()))))

    def _write_fresh(self, path: Path) -> None:
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(self.header) + "\n")
        except OSError as exc:
            raise ArchrankError(f"{path}: cannot write the journal ({exc.strerror or exc})"
                                ) from None

    def get(self, parts: Sequence[Any]) -> dict[str, Any] | None:
        return self.done.get(self.key(parts))

    def add(self, parts: Sequence[Any], result: dict[str, Any]) -> None:
        """Record one finished unit (flushed to disk before the next starts)."""
        key = self.key(parts)
        self.done[key] = result
        if self.path is None:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "result": result}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # a full disk: the work so far is in the journal, not lost
            raise ArchrankError(f"{self.path}: cannot write the journal "
                                f"({exc.strerror or exc}); the units before this one are "
                                "kept there: free some space and run the same command "
                                "again") from None


def _differences(theirs: Any, mine: Any, prefix: str = "") -> list[str]:
    """The setting names (``search.budget``...) whose values differ, one level of nesting
    deep."""
    if not (isinstance(theirs, dict) and isinstance(mine, dict)):
        return [prefix.rstrip(".")] if theirs != mine else []
    out = []
    for k in sorted(set(theirs) | set(mine)):
        a, b = theirs.get(k), mine.get(k)
        if a == b:
            continue
        if prefix or not (isinstance(a, dict) and isinstance(b, dict)):
            out.append(prefix + k)
        else:
            out.extend(_differences(a, b, f"{k}."))
    return out
