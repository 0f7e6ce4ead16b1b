"""Checking a component's parameters against what it declares, before any work starts.

Predictors declare their parameters as a dict of defaults (``check_params`` in
``predictors.base``), strategies as keyword arguments with defaults; ``check_kwargs`` checks
names, and ``check_value`` the type of each value against its default's type (a ``None``
default, "automatic", takes ``null`` or a value of the type ``OPTIONAL_TYPES`` gives its name,
else any plain value):

- an ``int`` default takes an integer (a whole float such as ``1e3`` becomes ``1000``),
- a ``float`` default a finite number, a ``bool`` default ``true``/``false``,
- a ``str`` default text, a ``dict`` / ``list`` default a JSON object / list;

and, everywhere, no NaN or infinity, no number beyond 2^31 in size, no negative number
where the default is a non-negative number, no count below 1 for the names in
``AT_LEAST_ONE`` (epochs, batch sizes, ...) or in a component's own ``at_least_one``
(``n_estimators`` of the trees...: declared there, checked here, so that -3 and 0 get the same
message), and no rate at or below 0 for ``POSITIVE``.
Ranges a component knows better (``explore`` in [0, 1], a loss name) stay with the
component, which raises a one-line error itself.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Iterable
from typing import Any

from archrank.errors import ArchrankError, InvalidOption

LIMIT = 2**31

# The type of a parameter whose default is ``None`` ("automatic"), by its name: the same name
# means the same thing in every component (``epochs`` is a count, ``lr`` a rate).
OPTIONAL_TYPES: dict[str, Any] = {
    "epochs": 0, "batch_size": 0, "ensemble": 0, "threads": 0, "seed": 0, "ae_seed": 0,
    "max_fit_steps": 0, "width": 0, "depth": 0, "lr": 0.0, "device": "",
}


# Counts that mean nothing at zero wherever they appear (an untrained model, no batch), and
# rates that must move something.
AT_LEAST_ONE = frozenset({"epochs", "batch_size", "ensemble", "max_fit_steps", "width",
                          "depth"})
POSITIVE = frozenset({"lr"})


def check_seed(owner: str, seed: Any) -> int:
    """``seed`` as an int (any size: a model folds it into what its libraries take); a
    one-line error naming ``owner`` for anything else (a float, a bool, a string)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ArchrankError(f"{owner}: seed must be an integer, got {seed!r}")
    return int(seed)


def _kind(value: Any) -> str:
    if isinstance(value, (bool, type(None))):
        return {True: "true", False: "false", None: "null"}[value]
    return type(value).__name__


def check_value(owner: str, name: str, value: Any, default: Any,
                at_least_one: frozenset[str] = frozenset()) -> Any:
    """``value`` (converted where lossless) if it suits a parameter whose default is
    ``default``; else a one-line ``ArchrankError`` naming ``owner``, ``name`` and the value.
    ``None`` is accepted where the default is ``None``. The names in ``at_least_one`` (the
    component's counts) take no number below 1, as those in ``AT_LEAST_ONE``."""
    def bad(expected: str) -> ArchrankError:
        text = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return InvalidOption(f"{owner}: parameter {name!r} must be {expected}, "
                             f"got {text} ({_kind(value)})")

    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if number and not isinstance(value, numbers.Integral) and not math.isfinite(float(value)):
        raise bad("a finite number")
    if number and abs(value) > LIMIT:
        raise bad(f"at most {LIMIT:,} in size")
    if number and (name in AT_LEAST_ONE or name in at_least_one) and value < 1:
        raise bad("at least 1")
    if default is None:
        if value is None:
            return None
        default = OPTIONAL_TYPES.get(name)
    if isinstance(default, bool):
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            raise bad("true or false")
        return bool(value)
    if isinstance(default, numbers.Integral):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad("an integer")
        if not isinstance(value, numbers.Integral) and not float(value).is_integer():
            raise bad("an integer")
        value = int(value)
        if default >= 0 and value < 0:
            raise bad("at least 0")
        return value
    if isinstance(default, numbers.Real):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad("a number")
        if name in POSITIVE and not value > 0:
            raise bad("positive")
        if default >= 0 and value < 0:
            raise bad("at least 0")
        return value
    if isinstance(default, str):
        # --set reads values as JSON, so a text option given as 0 or true arrives as a number
        # or bool: take its text back (lossless), e.g. gates++.op_info=0
        if isinstance(value, bool):
            return "true" if value else "false"
        if number:
            return str(value)
        if not isinstance(value, str):
            raise bad("text")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise bad("a JSON object ({...})")
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise bad("a JSON list ([...])")
        return value
    if default is None and isinstance(value, (dict, list, tuple)):
        raise bad("a single value, not a JSON object or list")
    return value


def check_kwargs(owner: str, params: dict[str, Any], declared: dict[str, Any],
                 nullable: frozenset[str] = frozenset(),
                 at_least_one: Iterable[str] = ()) -> dict[str, Any]:
    """``declared`` updated with ``params``, each checked with ``check_value``; a one-line
    error names any parameter ``owner`` does not declare and lists the valid ones. The
    parameters in ``nullable`` also take ``null``; those in ``at_least_one`` are counts."""
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise InvalidOption(
            f"{owner} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(declared)) or '(none)'}"
        )
    counts = frozenset(at_least_one)
    checked = {k: None if v is None and k in nullable
               else check_value(owner, k, v, declared[k], counts) for k, v in params.items()}
    return {**declared, **checked}


def declared_kwargs(cls: type, exclude: tuple[str, ...] = ()
                    ) -> tuple[dict[str, Any], frozenset[str]]:
    """The keyword parameters (with defaults) of ``cls.__init__`` and of its bases' (through
    ``**kwargs``), leaving out ``exclude``; and those annotated as optional (``X | None``)."""
    out: dict[str, Any] = {}
    nullable: set[str] = set()
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD
                                            and p.default is not p.empty):
                default = None if p.default is p.empty else p.default
                if default is None and "dict" in str(p.annotation):
                    default = {}  # an optional mapping (e.g. predictor_params)
                out[p.name] = default
                if "None" in str(p.annotation):
                    nullable.add(p.name)
    for name in ("self", *exclude):
        out.pop(name, None)
    return out, frozenset(nullable)
