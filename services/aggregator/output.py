"""What the aggregator writes: window documents and the late side output.

Window objects (aggregated bucket), one per (sensor, window), key from that identity:
``<output_prefix>/year=/month=/day=/hour=/sensor_id=<id>/<window start>.json``. A
revision (readings that came after the window was written, within the allowed
lateness) rewrites the same key with the complete document and ``revision`` one
higher; the bucket is versioned, so every revision stays readable, and a lake picks the
latest per (sensor_id, window_start) by the highest ``revision`` (docs/WINDOWS.md). A
document lists the ids of its member readings and keeps every metric's ``m2``, so it is
also the state a later revision starts from.

Late and unusable side outputs (error bucket), one object each per source batch and
shard (or per message without a position), one line per record with its reason:
``late/<partition of the batch's earliest reading>/<batch>.jsonl.gz`` for readings beyond
the allowed lateness, ``unusable/<partition>/<batch>.jsonl.gz`` for records that cannot
be windowed at all.

The sensor id is one key segment, ``sensor_id=<sensorpipe.objects.key_segment(id)>``:
an id with ``/``, ``=``, ``..``, a newline or any other character gives one safe segment,
two ids never give the same one, and an id whose encoding passes :data:`_MAX_SEGMENT`
characters is shortened with a digest of the whole id: keys stay within S3's 1,024 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from sensorpipe.errors import SensorPipeError
from sensorpipe.objects import event_time_partition, hive_partition, jsonl, key_segment
from sensorpipe.records import event_time_us, instant_text
from sensorpipe.store import ObjectStore, Put
from services.aggregator.statistics import from_summary, summary
from services.aggregator.windows import Provenance, WindowId, WindowState

DOCUMENT_VERSION = 2
_US = 1_000_000
# The longest sensor segment of a window key, in bytes (S3 keys: 1,024 bytes at most).
_MAX_SEGMENT = 240
UNUSABLE_PREFIX = "unusable"


class OutputReadError(SensorPipeError):
    """A written window cannot be read back as a window document."""


@lru_cache(maxsize=4096)  # window starts and ends: every sensor's share one per minute
def _iso(at_us: int) -> str:
    moment = datetime.fromtimestamp(at_us // _US, UTC).replace(microsecond=at_us % _US)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def _start_parts(start_us: int) -> tuple[str, str]:
    start = datetime.fromtimestamp(start_us // _US, UTC)
    return hive_partition(start), start.strftime("%Y%m%dT%H%M%SZ")


def sensor_segment(sensor_id: str) -> str:
    """A sensor id as one safe, collision-free, bounded key segment."""
    return key_segment(sensor_id, limit=_MAX_SEGMENT)


def window_key(prefix: str, window: WindowId) -> str:
    partition, name = _start_parts(window.start_us)
    sensor = sensor_segment(window.sensor_id)
    return f"{prefix.strip('/')}/{partition}/sensor_id={sensor}/{name}.json"


def window_document(state: WindowState, size_us: int) -> dict[str, Any]:
    """The output row of a window: statistics, identity, provenance, members."""
    start = state.id.start_us
    provenance = state.provenance.to_dict()
    return {
        "document_version": DOCUMENT_VERSION,
        "sensor_id": state.id.sensor_id,
        "location": state.location,
        "window_start": _iso(start),
        "window_end": _iso(start + size_us),
        "window_seconds": size_us // _US,
        "revision": state.revision,
        "first_reading_at": instant_text(state.first_us),
        "last_reading_at": instant_text(state.last_us),
        "record_count": state.records,
        "anomaly_count": state.anomalies,
        "metrics": summary(state.moments, state.records),
        "scenarios": provenance["scenarios"],
        "config_versions": provenance["config_versions"],
        "lineage": {
            "batch_ids": provenance["batch_ids"],
            "node_ids": provenance["node_ids"],
            "job_id_hashes": provenance["job_id_hashes"],
        },
        # The window's readings: each is (sensor_id, window_start + offset), sorted.
        "reading_offsets_us": np.ascontiguousarray(state.members),  # orjson writes it natively
    }


def state_from_document(doc: dict[str, Any], window: WindowId) -> WindowState:
    """The whole state of a written window, to revise it."""
    members = np.array(doc["reading_offsets_us"], dtype=np.int64)
    if len(members) and (members.min() < 0 or np.any(np.diff(members) <= 0)):
        raise ValueError("reading offsets are not sorted offsets within the window")
    first_us = event_time_us(doc["first_reading_at"])
    last_us = event_time_us(doc["last_reading_at"])
    if first_us is None or last_us is None:
        raise ValueError("first or last reading time is not readable")
    lineage = doc.get("lineage") or {}
    provenance = Provenance.from_dict(
        {
            "scenarios": doc.get("scenarios", []),
            "config_versions": doc.get("config_versions", []),
            **lineage,
        }
    )
    return WindowState(
        window,
        from_summary(doc["metrics"]),
        members,
        int(doc["record_count"]),
        int(doc["anomaly_count"]),
        first_us,
        last_us,
        doc.get("location"),
        provenance,
        int(doc.get("revision", 0)),
    )


@dataclass(frozen=True, slots=True)
class RenderedWindow:
    key: str
    body: bytes
    metadata: dict[str, str]


def render_window(prefix: str, state: WindowState, size_us: int) -> RenderedWindow:
    doc = window_document(state, size_us)
    metadata = {
        "sensor-id": sensor_segment(state.id.sensor_id),
        "window-start": doc["window_start"],
        "window-end": doc["window_end"],
        "revision": str(doc["revision"]),
        "record-count": str(doc["record_count"]),
        "scenario": ",".join(doc["scenarios"]),
        "config-version": ",".join(str(v) for v in doc["config_versions"]),
        "first-event-time": doc["first_reading_at"],
        "last-event-time": doc["last_reading_at"],
    }
    return RenderedWindow(
        window_key(prefix, state.id),
        orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY),
        metadata,
    )


class WindowStore:
    """Window documents in the aggregated bucket."""

    def __init__(self, store: ObjectStore, prefix: str, size_us: int) -> None:
        self._store = store
        self.prefix = prefix
        self.size_us = size_us

    def write(self, states: list[WindowState]) -> None:
        """Write the windows' documents (rendered here, sent by the store)."""
        puts = []
        for state in states:
            rendered = render_window(self.prefix, state, self.size_us)
            puts.append(Put(rendered.key, rendered.body, rendered.metadata))
        if puts:
            self._store.put_many(puts)

    def read(self, window: WindowId) -> WindowState | None:
        """The written window, or None if it was never written."""
        key = window_key(self.prefix, window)
        stored = self._store.get(key)
        if stored is None:
            return None
        try:
            return state_from_document(orjson.loads(stored.body), window)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise OutputReadError(
                f"{self._store.uri(key)} is not a window document: {exc}",
                hint="restore an earlier version (the bucket is versioned) or delete it",
            ) from exc


def late_line(
    record: Any,
    *,
    ids: dict[str, Any],
    reason: str,
    detail: str,
    key: str | None = None,
    window: WindowId | None = None,
    size_us: int = 0,
) -> dict[str, Any]:
    """One line of the late or unusable side output: the batch's ids, why, the whole
    record (whatever it is: an unusable one need not even be an object)."""
    if not isinstance(record, dict):
        record = {"sensor_data": record}
    return {
        **ids,
        "reading_key": key,
        "reason": reason,
        "detail": detail,
        "window_start": _iso(window.start_us) if window is not None else None,
        "window_end": _iso(window.start_us + size_us) if window is not None else None,
        "record": record.get("sensor_data", record),
        "lineage": record.get("lineage"),
        "quality": record.get("quality"),
    }


def late_detail(window: WindowId, size_us: int, watermark_us: int, allowed_us: int) -> str:
    return (
        f"reading of window {_iso(window.start_us)} of {window.sensor_id} came more than "
        f"the allowed lateness ({allowed_us / _US:g} s) after the window's end "
        f"{_iso(window.start_us + size_us)}: the watermark was {_instant(watermark_us)}"
    )


def _instant(at_us: int) -> str:
    """An instant's canonical text, or its number where no date spells it (a watermark
    a source's positions pushed beyond the years 1-9999)."""
    try:
        return instant_text(at_us)
    except (OverflowError, ValueError):
        return f"{at_us} µs since the epoch"


def late_key(name: str, earliest_us: int | None) -> str:
    return _side_key("late", name, earliest_us)


def unusable_key(name: str, earliest_us: int | None) -> str:
    return _side_key(UNUSABLE_PREFIX, name, earliest_us)


def _side_key(prefix: str, name: str, earliest_us: int | None) -> str:
    moment = None if earliest_us is None else datetime.fromtimestamp(earliest_us // _US, UTC)
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.=") else "_" for c in name)
    return f"{prefix}/{event_time_partition(moment)}/{safe[:200] or '_'}.jsonl.gz"


def json_safe(value: Any) -> Any:
    """``value`` as orjson writes it without raising: integers beyond 64 bits become
    text, keys that are not text become text; everything else is kept (a record that
    did not come through JSON may hold anything)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return repr(value)


def _lines(lines: list[dict[str, Any]]) -> bytes:
    try:
        return jsonl(lines, compress=True)
    except (TypeError, orjson.JSONEncodeError):  # something JSON cannot hold: spelt out
        return jsonl([json_safe(line) for line in lines], compress=True)


class LateStore:
    """Late and unusable side-output objects in the error bucket."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def write(self, key: str, lines: list[dict[str, Any]], metadata: dict[str, str]) -> None:
        self._store.put(
            key,
            _lines(lines),
            metadata={**metadata, "record-count": str(len(lines))},
            content_type="application/x-ndjson",
            gzipped=True,
        )
