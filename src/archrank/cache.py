"""The user cache directory and atomic file writes.

Expensive, reproducible results (a search-space enumeration, a generated dataset) are kept in
``platformdirs.user_cache_dir("archrank")`` so that they are computed once per machine; set
``ARCHRANK_CACHE_DIR`` to use another folder (tests point it at a temporary one).  Files are
written to a temporary name in the same folder and renamed into place, so a killed process or
two processes racing never leave a half-written file under the final name (``atomic_path``,
from ``archrank.files``).
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

from archrank.errors import ArchrankError
from archrank.files import atomic_path

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


__all__ = ["ENV_VAR", "atomic_path", "cache_dir", "cache_path"]
