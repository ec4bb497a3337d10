"""Independent, deliberately naive statements of what the notifier must produce.

Written straight from docs/NOTIFICATIONS.md and docs/WINDOWS.md over the complete input
at once (no watermark machinery, no incremental state, no service code), so they can
judge the service's incremental version:

- :func:`expected_bursts`: the burst definition over a set of anomalous readings;
- :func:`late_in_source_order`: which readings of one source are late (written by the
  source more than the grace after a newer reading of an earlier batch).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Point:
    at_us: int
    key: str
    location: str


def to_us(timestamp: str) -> int:
    """Microseconds since the epoch of an ISO-8601 timestamp (naive means UTC)."""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def reading_key(record: dict[str, Any]) -> str:
    """``sensor_id|instant``: one reading however its timestamp is spelt (the instant in
    UTC with microseconds and ``Z``)."""
    data = record["sensor_data"]
    moment = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{data['sensor_id']}|{moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}Z"


def point(record: dict[str, Any]) -> Point:
    data = record["sensor_data"]
    return Point(to_us(data["timestamp"]), reading_key(record), data["location"])


def expected_bursts(
    records: Iterable[dict[str, Any]],
    *,
    min_anomalies: int,
    window_s: float,
    cooldown_s: float,
) -> dict[str, list[tuple[str, ...]]]:
    """location -> bursts, each the tuple of member reading keys in time order."""
    window = round(window_s * 1_000_000)
    cooldown = round(cooldown_s * 1_000_000)
    by_location: dict[str, set[Point]] = defaultdict(set)
    for record in records:
        p = point(record)
        by_location[p.location].add(p)
    out: dict[str, list[tuple[str, ...]]] = {}
    for location, points in by_location.items():
        seq = sorted(points)
        bursts: list[tuple[str, ...]] = []
        not_before: int | None = None  # a burst must start strictly after this
        i = 0
        while i < len(seq):
            first = seq[i]
            if not_before is not None and first.at_us <= not_before:
                i += 1
                continue
            within = [p for p in seq[i:] if p.at_us - first.at_us <= window]
            if len(within) < min_anomalies:
                i += 1
                continue
            end = within[min_anomalies - 1].at_us
            members = [p for p in seq[i:] if p.at_us <= end]
            bursts.append(tuple(p.key for p in members))
            not_before = end + cooldown
            i += len(members)
        if bursts:
            out[location] = bursts
    return out


def late_in_source_order(
    batches: Sequence[tuple[Sequence[int], Sequence[dict[str, Any]]]], *, grace_s: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One source's batches in the order it wrote them, each (event times of all its
    readings, its anomalous records): (first copies on time, first copies late).

    A reading is late when its time is at or before the newest time of the batches
    written before its own minus the grace. Only a reading's first copy counts (a later
    copy of a known reading changes nothing)."""
    grace = round(grace_s * 1_000_000)
    newest: int | None = None
    seen: set[str] = set()
    on_time: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    for times, records in batches:
        for record in records:
            key = reading_key(record)
            if key in seen:
                continue
            seen.add(key)
            is_late = newest is not None and to_us(record["sensor_data"]["timestamp"]) <= (
                newest - grace
            )
            (late if is_late else on_time).append(record)
        if times:
            newest = max(times) if newest is None else max(newest, *times)
    return on_time, late
