"""User-facing errors.

Every error a user can cause (bad input file, invalid cell, unknown option) is an
``ArchrankError``; the CLI prints its message on one line and exits with status 2, so the
message itself must name the problem (file, line, field).
"""


def first_line(exc: BaseException, limit: int | None = 200, empty: str = "") -> str:
    """The first line of ``exc``'s message, cut to ``limit`` characters (``empty`` when it has
    none): what a one-line error quotes of an exception it stands for."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else empty


class ArchrankError(Exception):
    """An error caused by the user's input, shown as one line without a traceback."""


class InvalidArchitecture(ArchrankError, ValueError):
    """An architecture that is not a valid member of its search space."""


class BenchmarkFormatError(ArchrankError, ValueError):
    """A benchmark file that cannot be read: missing column, malformed row, wrong format."""


class NotInBenchmark(ArchrankError, KeyError):
    """An architecture the benchmark table has no record of."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a long job; ``message`` says what was kept and how to go on.

    ``partial`` carries whatever finished (e.g. the completed seeds of a benchmark), for the
    caller to save. The CLI prints ``message`` and exits with 128 + the signal number.
    """

    def __init__(self, message: str = "", partial: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial


class FailedWithPartial(ArchrankError):
    """A long job stopped by an error, with what finished before it (``partial``, as for
    ``Interrupted``) for the caller to save; a one-line error (exit status 2)."""

    def __init__(self, message: str, partial: object = None) -> None:
        super().__init__(message)
        self.partial = partial


class InvalidOption(ArchrankError, ValueError):
    """An option or parameter a component does not have, or a value it cannot take."""
