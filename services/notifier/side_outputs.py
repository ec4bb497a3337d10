"""Anomalous records the notifier sets aside, written to the error bucket with reasons.

Per source batch and shard (deterministic key from the batch's name, so a redo
overwrites): ``late-anomalies/<partition>/<name>.jsonl.gz`` for readings at or before the
watermark decisions were made at, ``unusable-anomalies/<partition>/<name>.jsonl.gz`` for
records the notifier cannot place. The partition is the event time of the earliest
entry (times outside the years 1-9999 in UTC are not read as times).

Per burst SQS refuses for its content: ``unsendable-notifications/<partition of the
window start>/<burst id>.json``, the reason and the whole notification (the same key for
the same burst, so a redo overwrites it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from sensorpipe.objects import hive_partition, jsonl, readable_event_time
from sensorpipe.store import ObjectStore
from services.notifier.bursts import Anomaly, LocationState

LATE_PREFIX = "late-anomalies"
UNUSABLE_PREFIX = "unusable-anomalies"
UNSENDABLE_PREFIX = "unsendable-notifications"


def _iso(at_us: int | None) -> str | None:
    if at_us is None:
        return None
    try:
        moment = datetime.fromtimestamp(at_us // 1_000_000, UTC)
    except (OverflowError, ValueError, OSError):  # a watermark beyond the years 1-9999
        return f"{at_us} µs since the epoch"
    return moment.replace(microsecond=at_us % 1_000_000).isoformat(timespec="milliseconds")


def write_unsendable(
    store: ObjectStore, body: dict[str, Any], reason: str, *, service: str
) -> None:
    """Keep a notification SQS refused, with the reason, where an operator finds it."""
    moment = readable_event_time(body["window"]["start"]) or datetime(1970, 1, 1, tzinfo=UTC)
    key = f"{UNSENDABLE_PREFIX}/{hive_partition(moment)}/{body['burst_id']}.json"
    entry = {"reason": reason, "location": body["location"], "notification": body}
    store.put(
        key,
        orjson.dumps(entry, option=orjson.OPT_SORT_KEYS),
        metadata={"service": service, "burst-id": str(body["burst_id"])},
    )


@dataclass
class SideOutput:
    """Records of one batch that go to the error bucket, with their reasons."""

    name: str  # names the objects: the source batch and shard
    batch_id: str
    created_at: str
    late: list[dict[str, Any]] = field(default_factory=list)
    unusable: list[dict[str, Any]] = field(default_factory=list)

    def add_late(self, anomaly: Anomaly, state: LocationState, decided_us: int | None) -> None:
        self.late.append(
            {
                "reason": "late: at or before the watermark bursts were already decided at "
                "(its source wrote it more than the grace late, or a replay of readings "
                "already evaluated)",
                "location": state.location,
                "watermark": _iso(decided_us),
                "reading_key": anomaly.key,
                "record": anomaly.record,
            }
        )

    def add_unusable(self, record: Any, reason: str) -> None:
        self.unusable.append({"reason": reason, "record": record})

    def write(self, store: ObjectStore, *, service: str) -> None:
        for prefix, entries in ((LATE_PREFIX, self.late), (UNUSABLE_PREFIX, self.unusable)):
            if not entries:
                continue
            key = f"{prefix}/{hive_partition(self._partition_time(entries))}/{self.name}"
            store.put(
                f"{key}.jsonl.gz",
                jsonl(entries, compress=True),
                content_type="application/x-ndjson",
                gzipped=True,
                metadata={
                    "service": service,
                    "batch-id": self.batch_id,
                    "count": str(len(entries)),
                },
            )

    def _partition_time(self, entries: list[dict[str, Any]]) -> datetime:
        """Event time of the earliest entry, else the batch's creation time."""
        times = []
        for entry in entries:
            record = entry["record"]
            data = record.get("sensor_data") if isinstance(record, dict) else None
            stamp = data.get("timestamp") if isinstance(data, dict) else None
            moment = readable_event_time(stamp)
            if moment is not None:
                times.append(moment)
        if times:
            return min(times)
        return readable_event_time(self.created_at) or datetime(1970, 1, 1, tzinfo=UTC)
