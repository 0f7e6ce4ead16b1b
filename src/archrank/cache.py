"""The user cache directory and atomic file writes.

Expensive, reproducible results (a search-space enumeration, a generated dataset) are kept in
``platformdirs.user_cache_dir("archrank")`` so that they are computed once per machine; set
``ARCHRANK_CACHE_DIR`` to use another folder (tests point it at a temporary one).  Files are
written to a temporary name in the same folder and renamed into place, so a killed process or
two processes racing never leave a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from platformdirs import user_cache_dir

from archrank.errors import ArchrankError

ENV_VAR = "ARCHRANK_CACHE_DIR"


def cache_dir(create: bool = True) -> Path:
    """The cache folder (``$ARCHRANK_CACHE_DIR`` or the user cache dir), created if asked."""
    path = Path(os.environ.get(ENV_VAR) or user_cache_dir("archrank")).expanduser()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchrankError(
                f"cannot create the cache folder {path} ({exc.strerror}); set {ENV_VAR} "
                "to a writable folder"
            ) from None
    return path


def cache_path(name: str, create: bool = True) -> Path:
    """Path of the cache file ``name`` inside ``cache_dir()``."""
    return cache_dir(create) / name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an unused path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file is removed when the block raises, so ``path`` is either the old file
    or the complete new one.
    """
    target = Path(path)
    # A fresh name the writer creates itself, so the file gets the usual (umask) permissions.
    tmp_path = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
