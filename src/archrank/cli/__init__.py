"""Command-line interface: ``archrank --help``.

Every command runs through ``main``, the one place that turns failures into exit statuses:

- a user error (``ArchrankError``, or a bad option caught by click) prints ``error: ...`` on
  one line of stderr and exits with status 2;
- Ctrl-C (SIGINT) and SIGTERM stop the command the same way (the command keeps what finished
  and says how to resume) and exit with 128 + the signal number (130, 143);
- a check that ran and found problems (``bench check`` of a table with bad rows) exits with
  status 1 (``CHECK_FAILED``);
- a reader that stops reading (``archrank runs export RUN | head``) ends the command quietly
  with status 141 (128 + SIGPIPE, what a program killed by the broken pipe would return);
- anything else is a bug: one ``internal error`` line naming the exception and saying it is a
  bug, exit status 70 (``EX_SOFTWARE``), and the traceback only when ``ARCHRANK_TRACEBACK=1``
  is set.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import typer

try:  # typer >= 0.17 carries its own copy of click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

# Importing the command modules registers their commands on the apps.
from archrank.cli import bench as _bench  # noqa: F401  (registration)
from archrank.cli import oneshot as _oneshot  # noqa: F401
from archrank.cli import predictor as _predictor  # noqa: F401
from archrank.cli import report as _report  # noqa: F401
from archrank.cli import search as _search  # noqa: F401
from archrank.cli import spaces as _spaces  # noqa: F401
from archrank.cli import truth as _truth  # noqa: F401
from archrank.cli import zc as _zc  # noqa: F401
from archrank.cli.app import (
    BAD_INPUT,
    BROKEN_PIPE,
    INTERNAL_ERROR,
    app,
    console,
    err,
    ignore_stop_signals,
    tidy_help,
)
from archrank.errors import ArchrankError, Interrupted

TRACEBACK_ENV = "ARCHRANK_TRACEBACK"


def _one_line(text: str) -> str:
    """A message on one line (a multi-line message is joined, control characters dropped)."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    line = " ".join(parts)
    return "".join(ch if ch.isprintable() else "?" for ch in line)


def error_line(message: str) -> None:
    """Print ``error: MESSAGE`` on one line of stderr (markup-free: user text is literal)."""
    err.print("error:", style="bold red", end=" ")
    err.print(_one_line(message), soft_wrap=True)


_last_signal = signal.SIGINT


_closing = False  # the command has ended (its error line printed): signals only end it


def _raise_interrupt(signum: int, frame: Any) -> None:
    global _last_signal
    if _closing:  # e.g. torchrun's SIGTERM to the survivors after a peer failed
        return
    _last_signal = signum
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in the main thread while a
    command runs (so a ``kill`` stops a search as cleanly as Ctrl-C), remembering which
    signal it was for the exit status; a signal the caller ignores (``nohup``) stays
    ignored, and the old handlers come back after."""
    global _last_signal
    _last_signal = signal.SIGINT
    old: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            # (not the main thread, or not on this platform: leave the default)
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # ignored on purpose (nohup, a background job): keep it so
                old[sig] = signal.signal(sig, _raise_interrupt)
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings as one ``warning:`` line on standard error, not Python's file:line report
    with the source line under it."""
    import warnings

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:
        err.print(f"warning: {_one_line(str(message))}", soft_wrap=True)

    before = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = before


@contextlib.contextmanager
def _notices() -> Iterator[None]:
    """The library's notices (the ``archrank`` logger at INFO: a long one-off computation
    such as enumerating NB101) as lines on standard error."""
    import logging

    class Show(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            err.print(_one_line(record.getMessage()), soft_wrap=True, highlight=False)

    logger = logging.getLogger("archrank")
    handler, level = Show(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    global _closing
    _closing = False
    with _signals_as_interrupts(), _one_line_warnings(), _notices():
        try:
            return _run(sys.argv[1:] if argv is None else list(argv))
        finally:
            _closing = True  # a signal while the handlers unwind prints no traceback


def _run(args: list[str]) -> int:
    """``run``'s body: the command, and what its end prints and returns."""
    global _closing
    try:
        try:
            # Not ``app(...)``: typer's own main turns Ctrl-C into a bare exit status
            # 130, losing what the interrupted command had to say (and which signal).
            command = tidy_help(typer.main.get_command(app))
            _one_process_unless_training(args)
            with command.make_context("archrank", args) as ctx, _stdout_for_data(args):
                command.invoke(ctx)
                # What is still buffered goes out now, inside the handlers: a reader that
                # quit is then a BrokenPipeError here (141), not a failed flush at exit
                # that went unnoticed (status 0 with the output cut short)
                _flush_stdout()
            return 0
        except BaseException:
            _closing = True  # from here on a signal (torchrun's SIGTERM to the
            raise  # survivors) only ends the process: no traceback mid-report
    except typer.Exit as exc:  # --help, --version, typer.Exit(1) of a command
        return int(exc.exit_code)
    except ArchrankError as exc:
        if _quiet_rank(exc, args):
            return BAD_INPUT
        error_line(str(exc))
        return BAD_INPUT
    except click_exc.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            typer.echo(exc.ctx.get_help())  # a group called without a command
            return BAD_INPUT
        hint = ""
        if exc.ctx is not None:
            hint = f" (see: {exc.ctx.command_path} --help)"
        error_line(exc.format_message() + hint)
        return BAD_INPUT
    except click_exc.ClickException as exc:
        error_line(exc.format_message())
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort) as exc:
        status = 128 + int(_last_signal)
        if _quiet_rank(exc, args):  # rank 0 says how to continue
            return status
        if isinstance(exc, Interrupted) and exc.message:
            err.print(_one_line(exc.message), soft_wrap=True)
        else:
            err.print("interrupted", soft_wrap=True)
        return status
    except BrokenPipeError:  # e.g. `archrank runs export RUN | head`: quiet, and not 0 (the
        # output was cut short: `set -o pipefail` scripts can tell), 141 as for a program
        # SIGPIPE killed; nothing on stderr (the reader chose to stop)
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the final flush)
        return BROKEN_PIPE
    except RecursionError:
        error_line("input nested too deeply to process")
        return BAD_INPUT
    except MemoryError:
        error_line("out of memory (is an input far larger than expected?)")
        return BAD_INPUT
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exc()
        error_line(f"internal error (a bug in archrank, please report it): "
                   f"{type(exc).__name__}: {exc} (set {TRACEBACK_ENV}=1 for the traceback)")
        return INTERNAL_ERROR


def _flush_stdout() -> None:
    """Flush standard output (none when the command was started with it closed); a broken
    pipe propagates (141), any other failure (``> /dev/full``) is a one-line error."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise ArchrankError(f"cannot write standard output ({exc.strerror or exc})") from None


def _command(args: list[str]) -> list[str]:
    """The command's words (``["oneshot", "train"]``): the first two that are no option."""
    return [a for a in args if not a.startswith("-")][:2]


def _one_process_unless_training(args: list[str]) -> None:
    """Under torchrun (``WORLD_SIZE`` above 1) only ``oneshot train`` is data-parallel; any
    other command would run once per process, each writing the same outputs."""
    world = os.environ.get("WORLD_SIZE", "1").strip()
    words = _command(args)
    if world not in ("", "1", "0") and words and words != ["oneshot", "train"]:
        raise ArchrankError(f"started by torchrun (WORLD_SIZE={world}): only `archrank oneshot "
                            f"train` runs data-parallel; run `archrank {' '.join(words)}` "
                            "as one process")


def _quiet_rank(exc: BaseException, args: list[str]) -> bool:
    """Whether a process other than rank 0 of a torchrun training keeps its message to
    itself: bad input fails every process alike, and a Ctrl-C stops them all, and rank 0
    says so; a failure of the processes together (a lost peer, no rendezvous) is news from
    any, and another command (refused under torchrun) speaks for itself."""
    from archrank.oneshot.trainer import DistributedFailure

    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return False
    return (world > 1 and rank > 0 and _command(args) == ["oneshot", "train"]
            and not isinstance(exc, DistributedFailure))


# Options whose value ``-`` writes their data to standard output.
_DATA_OPTIONS = ("--out", "-o", "--json")


@contextlib.contextmanager
def _stdout_for_data(args: list[str]) -> Iterator[None]:
    """With ``--out -`` or ``--json -`` standard output carries the data, so the command's
    status lines and tables go to standard error (they made the JSON / CSV unreadable)."""
    from archrank.files import open_descriptor

    def stdout(value: str) -> bool:
        return value == "-" or open_descriptor(value) == 1

    values = [a for prev, a in itertools.pairwise(args) if prev in _DATA_OPTIONS]
    values += [a.split("=", 1)[1] for a in args
               if a.split("=", 1)[0] in _DATA_OPTIONS and "=" in a]
    values += [a[2:] for a in args if a.startswith("-o") and len(a) > 2]  # -o- / -oFILE
    claimed = sum(stdout(v) for v in values)
    if claimed > 1:
        raise ArchrankError("two outputs to standard output ('-') would mix; give one of "
                            "them a file")
    if not claimed:
        yield
        return
    before = console.stderr
    console.stderr = True
    try:
        yield
    finally:
        console.stderr = before


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``archrank`` script. After an interruption the process only shuts
    down (worker pools' finalizers run at exit): a second Ctrl-C then would print a
    traceback from inside them, so further SIGINT / SIGTERM are ignored (SIGKILL still
    works)."""
    status = run(argv)
    if status > 128:
        ignore_stop_signals()
    sys.exit(status)
