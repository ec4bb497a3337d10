"""What every stage agrees on about a record.

A record in an envelope is a dict: ``sensor_data`` holds the source row untouched
(with its ``id``); ``lineage`` (enricher) and ``quality`` (validator) are added beside
it, never inside it.

A reading's identity is its sensor and its *instant*, not the spelling of its
timestamp: ``...T10:00:00+00:00``, ``...T10:00:00.000Z`` and ``...T12:00:00+02:00`` are
one reading. Instants are exact integers of microseconds since the epoch; a timestamp
without an offset is taken as UTC.

``read_timestamp`` is the one definition of a readable timestamp, for every stage: the
validator accepts exactly what it reads (and the aggregator, the notifier and
``objects.parse_event_time`` read with it), so a timestamp that passed validation can
be placed by every later stage. The grammar is the extended ISO-8601 form::

    YYYY-MM-DD(T| )HH:MM[:SS[.f{1,9}]][Z|±HH:MM|±HHMM]

with a real calendar date, hours 00-23, minutes and seconds 00-59 (a leap second, :60,
has no instant in epoch time), an offset below 24 h, fractions beyond microseconds
truncated, and the instant in UTC within years 1-9999 (what a ``datetime`` can hold).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, NamedTuple

METRICS: tuple[str, ...] = ("temperature", "humidity", "pressure", "vibration", "voltage")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# Instants a datetime can spell in UTC: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z.
EARLIEST_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND
LATEST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICROSECOND

_TIMESTAMP = re.compile(
    # year, month, day, hour, minute, second, fraction, zone
    r"(\d{4,})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?(Z|[+-]\d\d:?\d\d)?",
    re.ASCII,
)
_SHOWN = 64  # characters of a bad value quoted in a message


class TimestampError(ValueError):
    """A timestamp no stage can place. ``problem``: ``format`` (not the grammar, or no
    such date or time of day) or ``range`` (outside years 1-9999 in UTC)."""

    def __init__(self, problem: Literal["format", "range"], reason: str) -> None:
        super().__init__(reason)
        self.problem = problem
        self.reason = reason


class Timestamp(NamedTuple):
    """A readable timestamp: its instant (µs since the epoch, UTC) and whether it was
    written with an offset (``zoned``; without one it is taken as UTC)."""

    at_us: int
    zoned: bool


_NAIVE_EPOCH = datetime(1970, 1, 1)


def read_timestamp(value: str) -> Timestamp:
    """The one definition of a readable timestamp (see the module's docstring); raises
    TimestampError saying what is wrong."""
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise TimestampError(
            "format",
            f"{value[:_SHOWN]!r} is not an ISO-8601 date and time "
            "(YYYY-MM-DDTHH:MM[:SS[.ffffff]] with Z or ±HH:MM)",
        )
    year, second, zone = match.group(1, 6, 8)
    if len(year) > 4 or year == "0000":
        raise TimestampError("range", f"year {year[:_SHOWN]} is outside 1-9999")
    if second == "60":
        raise TimestampError(
            "format", f"{value!r} is a leap second (:60), which has no instant in epoch time"
        )
    # The grammar fixed the form; fromisoformat (C, exact) checks the calendar and the
    # clock and reads the offset. It truncates fractions beyond microseconds.
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise TimestampError("format", f"{value!r} is no such date or time ({exc})") from None
    delta = moment - (_NAIVE_EPOCH if zone is None else _EPOCH)
    at_us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not EARLIEST_US <= at_us <= LATEST_US:
        raise TimestampError("range", f"{value!r} is outside years 1-9999 once in UTC")
    return Timestamp(at_us, zone is not None)


def event_time_us(value: object) -> int | None:
    """The instant of a timestamp in µs since the epoch (exact), or None when it is not
    text or not readable (``read_timestamp``)."""
    if not isinstance(value, str):
        return None
    try:
        return read_timestamp(value).at_us
    except TimestampError:
        return None


def instant_text(at_us: int) -> str:
    """The canonical spelling of an instant: UTC, microseconds, ``Z``
    (``datetime.isoformat(timespec="microseconds") + "Z"``, the date looked up per day:
    windows' first and last readings are spelt for every window written)."""
    day, within = divmod(at_us, _DAY_US)
    seconds, micros = divmod(within, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{_date_text(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}Z"


_DAY_US = 86_400_000_000


@lru_cache(maxsize=256)
def _date_text(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def reading_key_at(sensor_id: object, at_us: int) -> str:
    return f"{sensor_id}|{instant_text(at_us)}"


def reading_key(sensor_data: dict[str, Any]) -> str:
    """Identity of a reading: the same sensor at the same instant is the same reading,
    however often it is redelivered, replayed or re-uploaded, however it is spelt. An
    unreadable timestamp is kept as written."""
    stamp = sensor_data.get("timestamp")
    at_us = event_time_us(stamp)
    if at_us is None:
        return f"{sensor_data.get('sensor_id')}|{stamp}"
    return reading_key_at(sensor_data.get("sensor_id"), at_us)


def stable_shard(key: str, shards: int) -> int:
    """Shard of ``key`` among ``shards``: stable across processes and Python runs
    (``hash()`` is salted per process, so it cannot be used)."""
    if shards <= 1:
        return 0
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards
