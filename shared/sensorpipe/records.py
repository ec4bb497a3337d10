"""What every stage agrees on about a record.

A record in an envelope is a dict: ``sensor_data`` holds the source row untouched
(with its ``id``); ``lineage`` (enricher) and ``quality`` (validator) are added beside
it, never inside it.

A reading's identity is its sensor and its *instant*, not the spelling of its
timestamp: ``...T10:00:00+00:00``, ``...T10:00:00.000Z`` and ``...T12:00:00+02:00`` are
one reading. Instants are exact integers of microseconds since the epoch; a timestamp
without an offset is taken as UTC.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

METRICS: tuple[str, ...] = ("temperature", "humidity", "pressure", "vibration", "voltage")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def event_time_us(value: object) -> int | None:
    """The instant of an ISO-8601 timestamp in µs since the epoch (exact), or None when
    it is not text or not a readable time."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # beyond year 1 .. 9999 once in UTC
        return None
    return (moment - _EPOCH) // _MICROSECOND


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
