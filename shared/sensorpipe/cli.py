"""What every command line of the project shares: quiet pipes and one-line setting errors.

Two things every entry point (each service, the dashboard, the simulator, the demo and
the console scripts) must do alike:

- end quietly when its reader goes away. ``pipeline-controller history | head -1``
  closes the pipe early; Python would then print a ``BrokenPipeError`` traceback (and a
  second complaint when it flushes stdout at exit). :func:`command` wraps a ``main``:
  it flushes stdout inside the guard, and on a broken pipe points stdout at
  ``/dev/null`` (so the interpreter's final flush is silent) and exits
  :data:`EXIT_BROKEN_PIPE`, 141 = 128 + SIGPIPE, what a shell reports for a writer
  killed by SIGPIPE (``yes | head -1``). The Python documentation's recipe, once;
- refuse a bad setting with one line. :func:`load_settings` parses a pydantic-settings
  model (environment variables, plus values given as flags) and turns pydantic's
  multi-line report into a :class:`~sensorpipe.config.errors.SettingsError` naming each
  variable or flag, its value, the problem and what is allowed. Plain flags that are
  not settings use :func:`bounded_int`, so a number out of range is an argparse usage
  error (exit 2) like any other.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    # Imported where used: `command` must stay stdlib-only (the controller's get and
    # history work where the config libraries cannot be imported).
    from pydantic.fields import FieldInfo
    from pydantic_core import ErrorDetails
    from pydantic_settings import BaseSettings

    from sensorpipe.config.errors import SettingProblem

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE (13): what a shell reports for `yes | head -1`

P = ParamSpec("P")
SettingsT = TypeVar("SettingsT", bound="BaseSettings")


def command(main: Callable[P, int]) -> Callable[P, int]:
    """Wrap an entry point's ``main`` so a reader that goes away ends it quietly.

    Its output is flushed before it returns (or exits, e.g. after ``--help``), so a
    broken pipe surfaces here, where it is caught, and not at interpreter exit.
    """

    @functools.wraps(main)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            try:
                return main(*args, **kwargs)
            finally:
                sys.stdout.flush()
        except BrokenPipeError:
            _discard_stdout()
            return EXIT_BROKEN_PIPE

    return guarded


def _discard_stdout() -> None:
    # Whatever is still buffered would fail again at exit: send it nowhere instead.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def load_settings(
    kind: type[SettingsT], flags: Mapping[str, tuple[str, Any]] | None = None
) -> SettingsT:
    """Parse ``kind`` from the environment, with ``flags`` (field name -> (flag, value))
    taking precedence; every bad value becomes one :class:`SettingsError`."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError as PydanticSettingsError

    from sensorpipe.config.errors import SettingProblem, SettingsError

    given = dict(flags or {})
    try:
        return kind(**{field: value for field, (_flag, value) in given.items()})
    except ValidationError as exc:
        raise SettingsError(
            [_problem(kind, err, given) for err in exc.errors(include_url=False)]
        ) from None
    except PydanticSettingsError as exc:  # e.g. a complex value that is not JSON
        raise SettingsError([SettingProblem(_env_prefix(kind) + "*", None, str(exc))]) from None


def _env_prefix(kind: type[BaseSettings]) -> str:
    return str(kind.model_config.get("env_prefix", "")).upper()


def _problem(
    kind: type[BaseSettings], err: ErrorDetails, flags: Mapping[str, tuple[str, Any]]
) -> SettingProblem:
    from sensorpipe.config.errors import SettingProblem

    field = str(err["loc"][0]) if err["loc"] else ""
    source = flags[field][0] if field in flags else _env_prefix(kind) + field.upper()
    message = err["msg"].removeprefix("Value error, ")
    allowed = _allowed(err, kind.model_fields.get(field))
    # The field's own name too: the variable's spelling may differ in case.
    if allowed:
        problem = f"{field} {allowed} ({message})"
    else:
        problem = f"{field} {message}" if message.startswith("must ") else f"{field}: {message}"
    return SettingProblem(source, _shown(err.get("input")), problem)


def _shown(value: object) -> str | None:
    if value is None or isinstance(value, dict):  # a dict: the model's whole input
        return None
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


_KINDS = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false (or 1/0, yes/no, on/off)",
    "bool_type": "must be true or false (or 1/0, yes/no, on/off)",
}
_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _allowed(err: ErrorDetails, field: FieldInfo | None) -> str | None:
    """What the field accepts, in words, or None when pydantic's message says it all."""
    kind = err["type"]
    if kind == "literal_error":
        return f"must be one of {(err.get('ctx') or {}).get('expected', '?')}"
    bounds = _bounds(field)
    if kind in _KINDS:
        return _KINDS[kind] + (f" {bounds}" if bounds else "")
    if kind in _BOUND_ERRORS and bounds:
        return f"must be {bounds}"
    return None


def _bounds(field: FieldInfo | None) -> str:
    import annotated_types

    if field is None:
        return ""
    words = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            words.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            words.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            words.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {item.lt}")
    return " and ".join(words)


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number in ``low..high``: anything else is a usage
    error (exit 2) naming the flag, the value and the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{value} is outside {allowed}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in its messages
    return parse
