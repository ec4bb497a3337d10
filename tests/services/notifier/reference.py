"""An independent, deliberately naive statement of the burst definition.

Written straight from docs/NOTIFICATIONS.md over the complete input sorted at once (no
watermark, no incremental state), so it can judge the service's incremental version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, order=True)
class Point:
    at_us: int
    key: str
    location: str


def to_us(timestamp: str) -> int:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def point(record: dict[str, Any]) -> Point:
    data = record["sensor_data"]
    return Point(
        to_us(data["timestamp"]), f"{data['sensor_id']}|{data['timestamp']}", data["location"]
    )


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
