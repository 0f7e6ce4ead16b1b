"""What ``archrank report`` reads: a registry of input kinds, and the dispatch from a path.

Every JSON file an archrank command writes for later reading carries ``"kind"`` (what it is)
and ``"schema"`` (an integer bumped when a field changes meaning). A kind registers here a
reader (path + parsed JSON -> an input object) and a renderer (all inputs of that kind ->
report sections and named figures); run directories are the kind ``run``. The kinds, their
fields and how to add one are listed in ``docs/report.md``.

A kind another module adds (``bench-oneshot``, ``oneshot-scores``...) registers itself
with ``register`` at import and is listed in ``PLUGINS`` so the report imports it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archrank.errors import ArchrankError, first_line

RUN_KIND = "run"


@dataclass
class Figure:
    """One matplotlib figure with a file-safe ``name`` (``--plot`` writes NAME.svg/.png)."""

    name: str
    figure: Any  # matplotlib.figure.Figure
    caption: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str
    cells: bool = False  # the last column holds cells as text (shown monospace)


@dataclass
class Drawing:
    """A cell drawn as SVG (``archrank.report.cells``)."""

    svg: str
    caption: str


@dataclass
class Section:
    """A titled part of the report: figures, tables and drawings in order."""

    title: str
    blocks: list[Figure | Table | Drawing] = field(default_factory=list)
    intro: str = ""

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


@dataclass(frozen=True)
class ReportOptions:
    """Choices the report leaves to the user (``archrank report --help``)."""

    scatter: str | None = None  # "PREDICTOR:SIZE" for the predicted-vs-true scatter
    top: int = 10  # rows of the top-cells table


Reader = Callable[[Path, dict[str, Any]], Any]
Renderer = Callable[[Sequence[Any], ReportOptions], list[Section]]


@dataclass(frozen=True)
class Kind:
    """One kind of input: its newest understood schema, how to read and how to render it."""

    name: str
    schema: int
    what: str  # a few words for error messages and docs
    read: Reader
    render: Renderer
    suffixes: tuple[str, ...] = ()  # files of these suffixes are this kind (not JSON)


KINDS: dict[str, Kind] = {}
# Modules that register kinds; a new kind's module is added here.
PLUGINS = ("archrank.report.runs", "archrank.report.predictor", "archrank.report.search",
           "archrank.report.oneshot", "archrank.report.oneshot_search",
           "archrank.report.oneshot_bench")


def register(kind: Kind) -> None:
    KINDS[kind.name] = kind


def load_plugins() -> dict[str, Kind]:
    for module in PLUGINS:
        importlib.import_module(module)
    return KINDS


def expected() -> str:
    """The inputs the report understands, for error messages."""
    kinds = load_plugins()
    names = ", ".join(k for k, v in kinds.items() if k != RUN_KIND and not v.suffixes)
    files = "".join(f", a {v.what}" for v in kinds.values() if v.suffixes)
    return (f"a run directory (with run.sqlite){files} or a JSON file whose 'kind' is one "
            f"of: {names}")


@dataclass
class Input:
    """One path read by its kind's reader."""

    path: Path
    kind: str
    data: Any


# JSON records archrank writes for people and scripts that are no report input: kind -> the
# command that wrote it. One of a run (``run_dir``) stands for that run directory.
RECORDS = {"search-summary": "archrank search --json", "run-show": "archrank runs show --json",
           "bench-check": "archrank bench check --json"}


def _legacy_kind(data: dict[str, Any]) -> str | None:
    """Kind of a JSON written before files carried one (schema 0)."""
    if data.get("command") == "bench predictor":
        return "bench-predictor"
    if "strategies" in data and "optimum" in data and "budget" in data:
        return "bench-search"
    if {"run_dir", "strategy", "queries", "best"} <= data.keys():
        return "search-summary"
    if {"file", "space", "invalid", "hash_mismatches"} <= data.keys():
        return "bench-check"
    return None


def _record(path: Path, name: str, data: dict[str, Any]) -> Input:
    """A record of a run (``search --json``, ``runs show --json``) read as its run directory,
    as the user meant it; any other record a one-line error saying what it is."""
    what = f"{path}: the output of `{RECORDS[name]}` (kind {name!r})"
    run_dir = data.get("run_dir")
    if not isinstance(run_dir, str) or not run_dir:
        raise ArchrankError(f"{what}, which has no report; archrank report reads "
                            f"{expected()}")
    found = [d for d in (Path(run_dir), path.parent / run_dir) if (d / "run.sqlite").is_file()]
    if not found:
        raise ArchrankError(f"{what} of the run {run_dir}, which is no run directory (any "
                            "more); report the run directory itself")
    return Input(found[0], RUN_KIND, load_plugins()[RUN_KIND].read(found[0], {}))


def read_input(path: str | Path) -> Input:
    """Read one report input; a one-line ``ArchrankError`` naming the file when it is not one."""
    kinds = load_plugins()
    path = Path(path)
    if not path.exists():
        raise ArchrankError(f"{path}: no such file or directory; expected {expected()}")
    if path.is_dir() or path.name == "run.sqlite":
        return Input(path, RUN_KIND, kinds[RUN_KIND].read(path, {}))
    for kind in kinds.values():
        if path.suffix.lower() in kind.suffixes:
            try:
                return Input(path, kind.name, kind.read(path, {}))
            except (OSError, UnicodeDecodeError) as exc:
                raise ArchrankError(f"{path}: cannot read it ({exc}); expected "
                                    f"{expected()}") from None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchrankError(f"{path}: cannot read it as text ({exc}); expected {expected()}"
                            ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchrankError(f"{path}: not JSON (line {exc.lineno}: {exc.msg}); "
                            f"expected {expected()}") from None
    if not isinstance(data, dict):
        raise ArchrankError(f"{path}: a JSON {type(data).__name__}, not an object; "
                            f"expected {expected()}")
    data = _nan_stats(data)
    name = data.get("kind")
    if name is None:
        name = _legacy_kind(data)
        if name is None:
            raise ArchrankError(f"{path}: JSON without a 'kind' field; expected {expected()}")
        data = {**data, "schema": 0}
    if name in RECORDS:
        return _record(path, name, data)
    if not isinstance(name, str) or name not in kinds or name == RUN_KIND:
        raise ArchrankError(f"{path}: unknown kind {name!r}; expected {expected()}")
    kind = kinds[name]
    schema = data.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 0:
        raise ArchrankError(f"{path}: field 'schema' is {schema!r}; expected an integer "
                            f"schema version (0-{kind.schema}) for kind {name!r}")
    if schema > kind.schema:
        raise ArchrankError(f"{path}: {name} schema {schema} is newer than this archrank "
                            f"reads (up to {kind.schema}); upgrade archrank")
    return Input(path, name, kind.read(path, data))


def _nan_stats(data: Any) -> Any:
    """``{"mean": null, "std": null}`` (a NaN as the benches write it: a figure no seed gave)
    read back as NaN, so that figures and tables show a gap rather than fail."""
    if isinstance(data, dict):
        out = {k: _nan_stats(v) for k, v in data.items()}
        if "mean" in out and "std" in out:
            for key in ("mean", "std"):
                if out[key] is None:
                    out[key] = float("nan")
        return out
    if isinstance(data, list):
        return [_nan_stats(v) for v in data]
    return data


def numbers(path: Path, where: str, values: Any, *, none: bool = True) -> list[Any]:
    """``values`` checked to be a list of numbers (``None`` allowed where ``none``: a missing
    value); else a one-line error naming the file and the element."""
    if not isinstance(values, list):
        raise ArchrankError(f"{path}: {where} is not a list")
    for i, v in enumerate(values):
        ok = (v is None and none) or (isinstance(v, int | float) and not isinstance(v, bool))
        if not ok:
            raise ArchrankError(f"{path}: {where}[{i}] is not a number ({v!r})")
    return values


def need(path: Path, data: dict[str, Any], key: str, typ: type | tuple[type, ...],
         what: str) -> Any:
    """``data[key]`` checked against ``typ``; else a one-line error naming file and field."""
    value = data.get(key)
    if not isinstance(value, typ) or (isinstance(value, bool) and bool not in _tuple(typ)):
        raise ArchrankError(f"{path}: field {key!r} is missing or not {what}")
    return value


def _tuple(typ: type | tuple[type, ...]) -> tuple[type, ...]:
    return typ if isinstance(typ, tuple) else (typ,)


def render(inputs: Sequence[Input], options: ReportOptions) -> list[Section]:
    """Sections of every input, kind by kind in the order the kinds first appear in
    ``inputs`` (all inputs of one kind are rendered together: runs are grouped by study)."""
    kinds = load_plugins()
    sections: list[Section] = []
    for name in dict.fromkeys(i.kind for i in inputs):
        mine = [i for i in inputs if i.kind == name]
        try:
            sections.extend(kinds[name].render([i.data for i in mine], options))
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            # a field the readers' checks let through (a hand-edited or foreign file): said
            # with the files, not as an internal error
            raise ArchrankError(f"{', '.join(str(i.path) for i in mine)}: cannot draw this "
                                f"{name} ({type(exc).__name__}: {first_line(exc)}); a field "
                                f"of an unexpected type or size? (if the file is archrank's "
                                f"own, please report it)") from None
    return sections
