"""What a source row becomes: a JSON-ready record, or a reason it cannot be sent.

SQLite stores whatever bytes a writer gives it, whatever the column's type, so the
source connection reads TEXT as :class:`RawText` (bytes, undecoded: a text factory that
cannot fail) and this module decides per row. A row whose text is not UTF-8 is *poison*:
it is set aside (quarantine) and the rows around it go on. BLOBs are sent visibly as
``"base64:..."``; non-finite floats, which JSON cannot carry, as ``"Infinity"``,
``"-Infinity"`` or ``"NaN"`` (the validator then rejects the reading with its reason,
instead of a silent ``null``).

``plain_value`` is the never-failing rendering used for fingerprints, and
``safe_values`` the one used for quarantine lines: invalid text keeps its bytes there.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Final

Row = dict[str, Any]
RawRow = dict[str, object]

INVALID_UTF8: Final = "invalid_utf8"
TOO_LARGE: Final = "too_large"


class RawText(bytes):
    """A TEXT value exactly as SQLite stored it (the source's ``text_factory``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Poison:
    """A row that cannot travel, with why."""

    row_id: int
    reason: str  # INVALID_UTF8 or TOO_LARGE: the metric's label
    detail: str
    raw: RawRow


def row_id(raw: RawRow) -> int:
    value = raw["id"]
    if not isinstance(value, int):  # the sensor tables' id is an INTEGER PRIMARY KEY
        raise TypeError(f"row id {value!r} is not an integer")
    return value


def decode_row(raw: RawRow) -> tuple[Row, None] | tuple[None, str]:
    """The record to send, or (None, what is wrong with it)."""
    row: Row = {}
    for name, value in raw.items():
        if isinstance(value, RawText):
            try:
                row[name] = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                return None, (
                    f"column {name!r} is not valid UTF-8 ({exc.reason} at byte {exc.start} "
                    f"of {len(value)})"
                )
        else:
            row[name] = json_safe(value)
    return row, None


def plain_value(value: object) -> Any:
    """A JSON-ready rendering that never fails; equal to what ``decode_row`` sends."""
    if isinstance(value, RawText):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid-utf8:base64:" + base64.b64encode(value).decode("ascii")
    return json_safe(value)


def safe_values(raw: RawRow) -> dict[str, Any]:
    """A row's values for a quarantine line: invalid text as replaced text plus its bytes."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, RawText):
            try:
                out[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                out[name] = {
                    "text": value.decode("utf-8", errors="replace"),
                    "base64": base64.b64encode(value).decode("ascii"),
                }
        elif isinstance(value, bytes):
            out[name] = {"blob_base64": base64.b64encode(value).decode("ascii")}
        else:
            out[name] = json_safe(value)
    return out


def json_safe(value: object) -> Any:
    """A decoded value as it travels: BLOBs and non-finite floats made visible JSON."""
    if isinstance(value, bytes):
        # A BLOB in a sensor column is bad input; keep it visible (and JSON-safe).
        return "base64:" + base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
