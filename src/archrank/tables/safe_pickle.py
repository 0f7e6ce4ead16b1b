"""Reading benchmark pickles without running them: an allow-list unpickler.

Official benchmark files (NAS-Bench-Graph's ``.bench``, NATS-Bench's ``.pickle.pbz2``) are
pickles, and ``pickle.load`` executes whatever callables a file names. These files only hold
data (dicts, lists, numbers, strings, numpy scalars), so this unpickler resolves just the
builtin containers and numpy's scalar/array reconstructors and refuses every other global
with a one-line ``BenchmarkFormatError``. Pickles written under numpy 1 name
``numpy.core.*``, which numpy 2 moved to ``numpy._core.*``; both spellings are accepted.
"""

from __future__ import annotations

import bz2
import codecs
import collections
import importlib
import io
import pickle
from pathlib import Path
from typing import IO, Any

from archrank.errors import BenchmarkFormatError

# Constructors of plain data: calling them cannot touch the outside world.
_BUILTINS = frozenset({
    "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str",
    "bytes", "bytearray", "bool", "slice", "range",
})
_COLLECTIONS = frozenset({"OrderedDict", "defaultdict", "deque"})
# numpy's reconstructors for scalars, dtypes and arrays (module paths without the prefix).
_NUMPY = frozenset({
    ("", "dtype"), ("", "ndarray"),
    ("core.multiarray", "scalar"), ("core.multiarray", "_reconstruct"),
    ("core.numeric", "_frombuffer"),
})


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a callable that is not on the allow-list."""


def _numpy_attr(module: str, name: str) -> Any:
    """Resolve an allowed numpy global under numpy 1 or 2 module names."""
    rest = module.removeprefix("numpy").lstrip(".")
    rest = rest.removeprefix("_core").removeprefix("core").lstrip(".")
    key = (f"core.{rest}" if rest else "", name)
    if key not in _NUMPY and not (rest == "dtypes" and name.endswith("DType")):
        raise RefusedGlobal(f"{module}.{name}")
    candidates = [f"numpy._core.{rest}", f"numpy.core.{rest}"] if rest else ["numpy"]
    if rest == "dtypes":
        candidates = ["numpy.dtypes"]
    for mod_name in candidates:
        try:
            return getattr(importlib.import_module(mod_name), name)
        except (ImportError, AttributeError):
            continue
    raise RefusedGlobal(f"{module}.{name}")


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only plain-data globals (see module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "collections" and name in _COLLECTIONS:
            return getattr(collections, name)
        if module == "_codecs" and name == "encode":  # how protocol 2 writes bytes
            return codecs.encode
        if module == "numpy" or module.startswith("numpy."):
            return _numpy_attr(module, name)
        raise RefusedGlobal(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent references are not supported")


def _skipped(*args: Any, **kwargs: Any) -> None:
    """Stands in for torch's tensor/storage constructors: a skipped tensor reads as ``None``."""
    return None


def _is_torch_dtype(name: str) -> bool:
    import torch

    return isinstance(getattr(torch, name, None), torch.dtype)


class TensorSkippingUnpickler(SafeUnpickler):
    """Also accepts torch tensors (trained weights) but never builds them: they read as ``None``.

    A table needs no weights, and a tensor's constructors (``torch._utils._rebuild_*``, the
    storage classes, ``torch.storage._load_from_bytes``, which would call ``torch.load``) are
    replaced by a stub, so nothing of torch runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and (name.endswith("Storage") or _is_torch_dtype(name)):
            return _skipped
        if module == "torch.storage" and name in _TORCH_STORAGE:
            return _skipped
        if module == "torch._utils" and (
            (name.startswith("_rebuild_") and "tensor" in name) or name == "_rebuild_parameter"
        ):
            return _skipped
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return None  # a tensor's storage in a torch.save file: not read


_TORCH_STORAGE = frozenset({"UntypedStorage", "TypedStorage", "_load_from_bytes"})


def safe_load(
    fh: IO[bytes], source: str | Path, unpickler: type[SafeUnpickler] | None = None
) -> Any:
    """Unpickle plain data from ``fh``; any problem is a one-line ``BenchmarkFormatError``."""
    try:
        return (unpickler or SafeUnpickler)(fh).load()
    except RefusedGlobal as exc:
        raise BenchmarkFormatError(
            f"{source}: refusing to unpickle {exc} (only plain data is read from benchmark "
            "files; is this the right file?)"
        ) from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise BenchmarkFormatError(
            f"{source}: not a readable pickle ({str(exc) or 'file ends early'}; truncated?)"
        ) from None
    except (OSError, ValueError) as exc:  # e.g. a corrupt bz2 stream
        raise BenchmarkFormatError(f"{source}: cannot decode ({exc}; corrupt file?)") from None
    except (TypeError, AttributeError, IndexError, KeyError, MemoryError, RecursionError) as exc:
        raise BenchmarkFormatError(
            f"{source}: malformed pickle ({type(exc).__name__}: {exc})"
        ) from None


def safe_loads(data: bytes, source: str | Path) -> Any:
    """``safe_load`` of an in-memory pickle."""
    return safe_load(io.BytesIO(data), source)


def load_pickle_file(
    path: str | Path,
    *,
    bz2_compressed: bool | None = None,
    unpickler: type[SafeUnpickler] | None = None,
) -> Any:
    """Plain data from a pickle file, bz2-compressed or not (``None``: detect by magic bytes)."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            if bz2_compressed is None:
                bz2_compressed = raw.read(3) == b"BZh"
                raw.seek(0)
            if bz2_compressed:
                with bz2.BZ2File(raw) as fh:
                    return safe_load(fh, path, unpickler)
            return safe_load(raw, path, unpickler)
    except FileNotFoundError:
        raise BenchmarkFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BenchmarkFormatError(f"{path}: is a directory, expected a pickle file") from None
    except PermissionError:
        raise BenchmarkFormatError(f"{path}: permission denied") from None


__all__ = [
    "RefusedGlobal",
    "SafeUnpickler",
    "TensorSkippingUnpickler",
    "load_pickle_file",
    "safe_load",
    "safe_loads",
]
