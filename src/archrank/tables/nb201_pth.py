"""The official NAS-Bench-201 files (``NAS-Bench-201-v1_0-e61699.pth``, ``-v1_1-096897.pth``).

Each is a ``torch.save`` of ``{"meta_archs": [arch string, ...], "arch2infos": {index:
{"less": ArchResults, "full": ArchResults}}, "evaluated_indexes": [...]}``: ``full`` is the
200-epoch schedule, ``less`` the 12-epoch one (in v1_0 only for cifar10-valid). The
ArchResults state dicts are the same as NATS-Bench's, so the columns are those of
``archrank.tables.nats``.

Loading never runs the file. ``torch.load(weights_only=True)`` would be safe too, but its
unpickler is pure Python (20x slower than the C one here: tens of minutes for the 2-5 GB
official files), so the pickle inside the ``torch.save`` container (zip, or the legacy
sequence of pickles those files were written in) is read with the allow-list unpickler of
``safe_pickle``. Tensors (trained weights, if a file has any) are not needed for a table and
are not read: they come back as ``None`` (``TensorSkippingUnpickler``).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from archrank.errors import BenchmarkFormatError
from archrank.tables.nats import arch2infos, build_table
from archrank.tables.safe_pickle import SafeUnpickler, TensorSkippingUnpickler, safe_load
from archrank.tables.table import TabularBenchmark

HP_KEYS = {"200": "full", "12": "less"}
TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy torch.save file


def load_pth(path: str | Path) -> Any:
    """The object saved in a ``torch.save`` file (zip or legacy format), tensors as ``None``."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFormatError(
            f"{path}: no such file" if not path.exists() else f"{path}: not a file"
        )
    try:
        with open(path, "rb") as fh:
            if zipfile.is_zipfile(fh):
                fh.seek(0)
                return _load_zip(fh, path)
            fh.seek(0)
            if fh.read(4) == b"PK\x03\x04":  # a zip's start without its directory at the end
                raise BenchmarkFormatError(
                    f"{path}: a damaged or truncated torch.save (zip) file: its end is missing")
            fh.seek(0)
            return _load_legacy(fh, path)
    except PermissionError:
        raise BenchmarkFormatError(f"{path}: permission denied") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise BenchmarkFormatError(
            f"{path}: not a readable torch file ({exc}; truncated or corrupt?)"
        ) from None


def _load_zip(fh: IO[bytes], path: Path) -> Any:
    with zipfile.ZipFile(fh) as zf:
        names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(names) != 1:
            raise BenchmarkFormatError(f"{path}: not a torch.save file (no data.pkl inside)")
        with zf.open(names[0]) as data:
            return _load_data(data, path)


def _load_legacy(fh: IO[bytes], path: Path) -> Any:
    try:
        magic = SafeUnpickler(fh).load()
    except Exception:
        magic = None
    if magic != TORCH_MAGIC:
        raise BenchmarkFormatError(f"{path}: not a readable torch file (not a torch.save file)")
    safe_load(fh, path)  # protocol version
    safe_load(fh, path)  # system info
    return _load_data(fh, path)  # storages follow; they are not needed


def _load_data(fh: IO[bytes], path: Path) -> Any:
    return safe_load(fh, path, TensorSkippingUnpickler)


def read_nb201_pth(path: str | Path, hp: str | int = "200") -> TabularBenchmark:
    """Read an official NAS-Bench-201 ``.pth`` file (``hp`` ``"200"``: full, ``"12"``: less).

    Example: ``read_nb201_pth("NAS-Bench-201-v1_1-096897.pth").best("cifar10_valid")``.
    """
    path = Path(path)
    hp = str(hp)
    if hp not in HP_KEYS:
        raise BenchmarkFormatError(f"{path}: unknown schedule {hp!r}; NAS-Bench-201 has 200, 12")
    data = load_pth(path)
    infos = arch2infos(data, path, "a NAS-Bench-201 file")
    entries = []
    available: set[str] = set()
    for index in infos:
        where = f"{path}: arch2infos[{index!r}]"
        pair = infos[index]
        if not isinstance(pair, Mapping):
            raise BenchmarkFormatError(f"{where}: expected a dict with 'less' and 'full'")
        available.update(h for h, k in HP_KEYS.items() if k in pair)
        entries.append((index, pair.get(HP_KEYS[hp]), where))
    entries.sort(key=lambda e: e[0] if isinstance(e[0], int) else -1)
    return build_table(data["meta_archs"], entries, source=path, hp_label=hp,
                       available=available)


__all__ = ["load_pth", "read_nb201_pth"]
