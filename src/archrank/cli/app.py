"""The typer applications every command module registers on, and the consoles they print to.

Both consoles have rich markup switched off: text from the user (paths, column names, run
directories) is printed as given, never read as ``[style]`` markup. Styles are given with
``style=`` instead.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import signal
from typing import Any

import typer
from rich.console import Console

from archrank.errors import ArchrankError

console = Console(markup=False, highlight=False, emoji=False)
err = Console(stderr=True, markup=False, highlight=False, emoji=False)
# Validation signals `oneshot fit` and `bench oneshot` score sub-networks on by default: the
# setting every bench oneshot figure was measured with (docs/benchmarks.md); the whole
# 12,800-signal split of the MNIST-1D default costs five times as much a path.
VAL_SAMPLES = 2000

# Exit statuses (README "Exit status"; ``archrank.cli.run`` maps exceptions to them): 0
# success, CHECK_FAILED, BAD_INPUT, 128 + the signal for an interruption (130 SIGINT, 143
# SIGTERM), BROKEN_PIPE, INTERNAL_ERROR.
CHECK_FAILED = 1  # a check that ran and failed (bench check found bad rows)
BAD_INPUT = 2  # bad input or option: a one-line error
INTERNAL_ERROR = 70  # a bug (EX_SOFTWARE of sysexits.h)
BROKEN_PIPE = 128 + 13  # the reader stopped reading (as a program SIGPIPE killed)


# -- --set options ---------------------------------------------------------------------------
def ignore_stop_signals() -> dict[int, Any]:
    """Ignore SIGINT and SIGTERM from now on (a command that has ended, or clean-up a second
    Ctrl-C must not cut short); returns the handlers they had, to put back."""
    before = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            before[sig] = signal.signal(sig, signal.SIG_IGN)
    return before


def _parse_value(item: str, raw: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true/false, null, lists, objects),
    else the text itself."""
    if len(raw) > 10_000:
        raise ArchrankError(f"--set {item[:40]!r}...: value longer than 10,000 characters")
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
    except (ValueError, RecursionError):  # an integer of thousands of digits, deep nesting
        raise ArchrankError(f"--set {item[:60]!r}: not a usable value") from None


def parse_sets(items: list[str] | None, *, prefixed: str | None = None,
               own: str | None = None) -> dict[str, Any]:
    """``--set`` options as nested dicts: ``explore=0.2``, ``predictor.epochs=50`` (strategy
    options; ``predictor.X`` goes to the predictor), or with ``prefixed`` (the form's name,
    e.g. "STRATEGY.KEY") a component name first (``gates.explore=0.2``). ``own``: the one
    component the command configures, whose name may lead too (``--set rea.population=5``
    as ``bench search`` takes it). Only the syntax is checked here; the component checks
    names and values (``archrank.params``) before any work starts."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, raw = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if own is not None and not prefixed and len(parts) >= 2 and parts[0] == own:
            parts.pop(0)
        if not eq or not parts or (prefixed and len(parts) < 2):
            form = f"{prefixed}=VALUE" if prefixed else "KEY=VALUE or predictor.KEY=VALUE"
            raise ArchrankError(f"--set {item[:60]!r}: expected {form}")
        if len(parts) > 3:
            raise ArchrankError(f"--set {item[:60]!r}: too many dotted parts")
        node = out
        if prefixed:
            node = node.setdefault(parts.pop(0), {})
        if parts[0] == "predictor" and len(parts) == 2:
            parts[0] = "predictor_params"
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ArchrankError(f"--set {item[:60]!r}: {p!r} was already given a value")
        node[parts[-1]] = _parse_value(item, raw)
    return out


def check_seed_option(seed: int | None, flag: str = "--seed") -> None:
    """A one-line error for a seed no generator takes (negative, or 2^32 and above: numpy
    and torch raised their own errors deep inside a command)."""
    if seed is not None and not 0 <= seed < 2**32:
        raise ArchrankError(f"{flag} must lie in 0..{2**32 - 1}, got {seed}")


def check_least(**flags: tuple[float | None, float]) -> None:
    """One-line errors naming the flag for values below their least, before any work starts
    (``epochs=(epochs, 1)`` checks ``--epochs``; ``None``: not given): a recipe or network
    that refused the value later said so without the flag. An option named ``lr`` must be
    above 0 rather than at least it."""
    for name, (value, least) in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if name == "lr" and not value > 0:
            raise ArchrankError(f"{flag} must be above 0, got {value}")
        if value < least:
            raise ArchrankError(f"{flag} must be at least {least:g}, got {value}")


def check_network_size(space: str, dataset: str | None, width: int | None,
                       depth: int | None) -> tuple[int, int] | None:
    """``archrank.nn.check_size`` of the network ``--width`` / ``--depth`` ask for (the
    other from the dataset's default), naming the flags, before the data or any file; the
    network's ``(width, depth)``, or None when neither flag is given or ``space`` builds no
    network (the command's own error names the space)."""
    if width is None and depth is None:
        return None
    from archrank.nn import NETWORK_SPACES, check_size
    from archrank.oracles.training import default_setup

    if space not in NETWORK_SPACES:
        return None
    size = default_setup(space, dataset or "mnist1d")
    width = size["width"] if width is None else width
    depth = size["depth"] if depth is None else depth
    check_size(space, width, depth, names=("--width", "--depth"))
    return width, depth


# -- --device ---------------------------------------------------------------------------------
# The house rule: code runs on the CPU and uses a GPU when one is present. Every command that
# trains takes its --device from here (one default and one help text, not copies that drift:
# oneshot search once defaulted to cpu while oneshot train took the GPU).
DEVICE_DEFAULT = "auto"


def device_option() -> Any:
    """The ``--device`` option of a command that trains, checked as it is parsed (an unknown
    device, or cuda without a GPU: one line before any output or work)."""
    return typer.Option(DEVICE_DEFAULT, "--device", callback=_checked_device,
                        help="auto (the GPU when one is present, else the CPU), cpu or cuda.")


def _checked_device(value: str) -> str:
    from archrank.nn import resolve_device

    try:
        resolve_device(value)
    except ArchrankError as exc:
        raise ArchrankError(f"--device: {exc}") from None
    return value


# -- --help ---------------------------------------------------------------------------------
_DEFAULT_IN_HELP = re.compile(r"\s*\((?:default:?\s+(?:is\s+)?([^()]+)|(-?\d[\d.,_]*))\)(\.?)\s*$")


def _prose(paragraph: str) -> str:
    """A paragraph of a docstring as one line when it is prose: typer keeps the single line
    breaks of every paragraph after the first, and rich then wraps each source line again at
    the terminal's width ("...run the same command again" / "after a kill"). Examples, lists
    and other indented blocks keep their lines."""
    lines = paragraph.splitlines()
    if any(line[:1].isspace() or line.lstrip().startswith(("-", "*", "\b", "$"))
           for line in lines):
        return paragraph
    return " ".join(line.strip() for line in lines)


_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.(?=\s|$)")


def _summary(paragraph: str) -> str:
    """The first sentence of a help paragraph (a full stop outside brackets), as the line a
    group's list of commands shows."""
    for end in _SENTENCE_END.finditer(paragraph):
        before = paragraph[:end.start()]
        if before.count("(") == before.count(")"):
            return before.rstrip() + "."
    return paragraph


# --help examples fit the terminal (80 columns at most): rich prints the help with a column of
# margin on either side, and a command line it wrapped itself could no longer be copied whole.
HELP_WIDTH = 80
_EXAMPLE_START = ("archrank ", "torchrun ")
_LABELLED = re.compile(r"^(\s*)(Examples?:)\s+((?:archrank|torchrun) .*)$")  # "Example: cmd"
_TOKEN = re.compile(r"""(?:"[^"]*"|'[^']*'|\S)+""")  # a shell word, quotes kept whole


def example_width() -> int:
    """Columns an example line may take: the terminal's, 80 at most, less rich's margins."""
    import shutil

    return max(20, min(shutil.get_terminal_size((HELP_WIDTH, 24)).columns, HELP_WIDTH) - 4)


def _units(words: list[str]) -> list[str]:
    """Shell words grouped so that a flag keeps its value (``--metric cifar10_test``): the
    places where a long command may break."""
    units: list[str] = []
    for word in words:
        if units and not word.startswith("-") and units[-1].startswith("--") \
                and " " not in units[-1]:
            units[-1] += " " + word
        else:
            units.append(word)
    return units


def _wrap_command(indent: str, command: str, width: int) -> list[str]:
    """One example command as lines of at most ``width`` columns where it can: broken
    between flags (a flag with its value), each line but the last ending in `` \\`` and the
    next indented two more spaces, so that a copy pastes as one command; a trailing
    ``# comment`` goes on a line of its own above it (a backslash in a comment continues
    nothing)."""
    words = _TOKEN.findall(command)
    if len(indent) + len(command) <= width:
        return [indent + command]
    comment = next((k for k, w in enumerate(words) if w.startswith("#")), len(words))
    lines = [indent + " ".join(words[comment:])] if comment < len(words) else []
    units = _units(words[:comment])
    current = indent + units.pop(0)
    while units:
        unit = units.pop(0)
        room = width - (2 if units else 0)  # (2: the " \\" of a line continued)
        if len(current) + 1 + len(unit) <= room:
            current += " " + unit
            continue
        if " " in unit and len(indent) + 2 + len(unit) > room:  # too long for a line of
            units[:0] = unit.split(" ")  # its own as well: the flag and its value apart
            continue
        lines.append(current + " \\")
        current = f"{indent}  {unit}"
    return [*lines, current]


def _wrap_examples(text: str, width: int | None = None) -> str:
    """Example commands longer than ``width`` (``example_width()``) broken between shell
    words (``_wrap_command``); an example on its label's line (``Example: archrank ...``)
    moved onto a line of its own below the label; any other line as it is."""
    width = example_width() if width is None else width
    lines, out = text.split("\n"), []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        labelled = _LABELLED.match(line)
        if labelled:
            out += [labelled.group(1) + labelled.group(2), ""]
            line = labelled.group(1) + "  " + labelled.group(3)
        elif not line.strip().startswith(_EXAMPLE_START):
            out.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())]
        command = [line.strip()]
        while command[-1].endswith("\\") and i < len(lines):  # an example continued already
            command[-1] = command[-1][:-1].rstrip()
            command.append(lines[i].strip())
            i += 1
        out += _wrap_command(indent, " ".join(command), width)
    return "\n".join(out)


def tidy_help(command: Any) -> Any:
    """One look for every command's ``--help`` (typer 0.29's defaults differ): prose
    paragraphs reflowed (``_prose``), a group's list of commands showing each command's
    first sentence (``_summary``; it showed the whole first paragraph, line breaks kept), long
    example commands continued with `` \\`` (``_wrap_examples``), switches without a
    ``<bool>`` metavar (``--help`` and ``--version`` included), and a default the help text
    gives in words, ``(default: X)`` or ``(100)`` at its end, shown as ``[default: X]`` like
    the defaults typer shows itself.
    Applied to the command tree ``archrank.cli.run`` invokes; returns ``command``."""
    if getattr(command, "help", None):
        first, *rest = inspect.cleandoc(command.help).split("\n\n")
        command.help = _wrap_examples("\n\n".join([_prose(first), *map(_prose, rest)]))
        if hasattr(command, "short_help") and not command.short_help:
            command.short_help = _summary(_prose(first))
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False):
            param.metavar = ""
        help_text = getattr(param, "help", None)
        match = _DEFAULT_IN_HELP.search(help_text or "")
        if match and param.default is None and not getattr(param, "required", False):
            shown_default = (match.group(1) or match.group(2)).strip()
            param.help = help_text[:match.start()] + match.group(3)
            param.show_default = True
            param._extract_default_help_str = (  # what typer shows after [default: ...]
                lambda *, ctx, value=shown_default: value)
    help_option = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        tidy_help(sub)
    return command


# the registry's names (archrank.predictors, which imports torch: not at CLI start-up); a test
# keeps the two alike
PREDICTOR_NAMES = "gates, gates++, gcn, lstm, mlp, rf, rf_path, ssa, xgb, xgb_path"

FILTER_HELP = ("Keep only the table's rows with COLUMN=VALUE (repeatable), e.g. "
               "dataset=cifar10 for a table that mixes datasets.")


def _version(value: bool) -> None:
    if value:
        from archrank import __version__

        typer.echo(f"archrank {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="archrank",
    help="Predictor-based neural architecture search: rank a search space from a few "
    "evaluated architectures.\n\n"
    "Examples:\n\n"
    "  archrank search --space nb201 --bench ../shared/data/nb201.csv --metric cifar10_test\n\n"
    "  archrank search --resume runs/demo\n\n"
    "  archrank bench predictor --space nb201 --bench ../shared/data/nb201.csv "
    "--metric cifar10_test",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print archrank's version and exit."),
) -> None:
    """Predictor-based neural architecture search."""


space_app = typer.Typer(
    help="Inspect and enumerate one search space.\n\n"
    "Example:\n\n  archrank space enumerate nb201 --out nb201.jsonl",
    no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmark tables and benchmarks of archrank itself.\n\n"
    "Examples:\n\n"
    "  archrank bench check ../shared/data/nb201.csv --space nb201\n\n"
    "  archrank bench search --space nb201 --bench ../shared/data/nb201.csv "
    "--metric cifar10_test --seeds 5\n\n"
    "  archrank bench predictor --space nb201 --bench ../shared/data/nb201_zc.csv "
    "--filter dataset=cifar10 --metric val_acc --train-sizes 50,100",
    no_args_is_help=True)
app.add_typer(space_app, name="space")
app.add_typer(bench_app, name="bench")
oneshot_app = typer.Typer(help="Weight-sharing NAS: train a supernet, fit its scores over the "
                          "space, select under hardware constraints.\n\nExample:\n\n"
                          "  archrank oneshot train --space nb201 --epochs 150 --out s.pt\n\n"
                          "  archrank oneshot fit s.pt --out scores.csv\n\n"
                          "  archrank oneshot select scores.csv --max-flops 500000",
                          no_args_is_help=True)
app.add_typer(oneshot_app, name="oneshot")
