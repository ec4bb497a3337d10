"""Taking one message in: parse its readings and decide where each goes.

Nothing changes state here except S3 reads (the message's earlier late output, written
windows): the handler folds the result only once the late output is stored, so a
failure leaves the message untouched for a retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sensorpipe.envelope import Record
from sensorpipe.records import reading_key
from services.aggregator.output import LateLines, LateStore
from services.aggregator.windows import (
    AFTER_WATERMARK,
    NO_EVENT_TIME,
    MembersLookup,
    Reading,
    Verdict,
    WindowBook,
    WindowId,
)


def parse_readings(records: list[Record]) -> tuple[list[Reading], list[tuple[Record, str]]]:
    """Readings with an event time, and the records that cannot be windowed (why)."""
    readings: list[Reading] = []
    unusable: list[tuple[Record, str]] = []
    for record in records:
        data = record.get("sensor_data")
        if not isinstance(data, dict):
            unusable.append((record, "record has no sensor_data object"))
            continue
        sensor, stamp = data.get("sensor_id"), data.get("timestamp")
        if not isinstance(sensor, str) or not sensor:
            unusable.append((record, "reading has no sensor_id"))
            continue
        if not isinstance(stamp, str):
            unusable.append((record, "reading has no timestamp"))
            continue
        try:
            moment = datetime.fromisoformat(stamp)  # accepts 'Z' and offsets (3.11)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            at = moment.timestamp()
        except (ValueError, OverflowError):
            unusable.append((record, f"timestamp {stamp[:64]!r} is not ISO-8601"))
            continue
        readings.append(Reading(reading_key(data), sensor, at, stamp, record))
    return readings, unusable


@dataclass(slots=True)
class Sorted:
    """A message's readings by destination."""

    folds: dict[WindowId, dict[str, Reading]] = field(default_factory=dict)
    rebuilds: set[WindowId] = field(default_factory=set)
    late: list[dict[str, Any]] = field(default_factory=list)
    # Late unless the window, once rebuilt from redelivered messages, holds the reading.
    deferred: list[tuple[Reading, WindowId]] = field(default_factory=list)
    duplicates: int = 0
    # Open (unwritten) windows that already hold one of these readings: counted only in
    # memory so far, so the message must stay unacked until they are written too.
    covered: set[WindowId] = field(default_factory=set)


def sort_readings(
    book: WindowBook,
    readings: list[Reading],
    *,
    ids: dict[str, Any],
    lines: LateLines,
    lookup: MembersLookup,
    late_store: LateStore,
    late_key: str,
    redelivered: bool,
    recovering: bool,
) -> Sorted:
    out = Sorted()
    prior: dict[str, dict[str, Any]] = {}
    latest: dict[str, float] = {}
    if redelivered:
        # A message taken before keeps its late decisions, so a reading is never late
        # in one processing and counted in a window in the next.
        prior = {x["reading_key"]: x for x in late_store.read(late_key) if x.get("reading_key")}
        for reading in readings:
            if reading.at > latest.get(reading.sensor_id, float("-inf")):
                latest[reading.sensor_id] = reading.at
    for reading in readings:
        earlier = prior.get(reading.key)
        if earlier is not None:
            out.late.append(earlier)
            continue
        placed = book.place(
            reading, lookup=lookup, redelivered_latest=latest.get(reading.sensor_id)
        )
        if placed.verdict is Verdict.FOLD:
            group = out.folds.setdefault(placed.window, {})
            if reading.key in group:
                out.duplicates += 1
            else:
                group[reading.key] = reading
            if placed.rebuild:
                out.rebuilds.add(placed.window)
        elif placed.verdict is Verdict.DUPLICATE:
            out.duplicates += 1
            if placed.window in book.open:
                out.covered.add(placed.window)
        elif recovering and not placed.settled:
            out.deferred.append((reading, placed.window))
        else:
            reason = placed.reason or AFTER_WATERMARK
            watermark = book.watermark(reading.sensor_id)
            out.late.append(lines.line(reading, reason, ids, placed.window, watermark))
    return out


def unusable_lines(
    unusable: list[tuple[Record, str]], ids: dict[str, Any], lines: LateLines
) -> list[dict[str, Any]]:
    return [lines.unusable(record, NO_EVENT_TIME, detail, ids) for record, detail in unusable]
