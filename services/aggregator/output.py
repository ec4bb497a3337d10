"""What the aggregator writes: window documents and the late side output.

Window objects (aggregated bucket), one per (sensor, window), key from that identity:
``<output_prefix>/year=/month=/day=/hour=/sensor_id=<id>/<window start>.json``. A
revision (readings that came after the window was written, within the allowed
lateness) rewrites the same key with the complete document and ``revision`` one
higher; the bucket is versioned, so every revision stays readable, and a lake picks the
latest per (sensor_id, window_start) by the highest ``revision`` (docs/WINDOWS.md). A
document lists the ids of its member readings and keeps every metric's ``m2``, so it is
also the state a later revision starts from.

Late side output (error bucket), one object per source batch and shard (or per message
without a position), one line per reading with its reason:
``late/<partition of the earliest reading>/<batch>.jsonl.gz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from sensorpipe.errors import SensorPipeError
from sensorpipe.objects import event_time_partition, hive_partition, jsonl
from sensorpipe.records import event_time_us, instant_text
from sensorpipe.store import ObjectStore, Put
from services.aggregator.statistics import from_summary, summary
from services.aggregator.windows import Provenance, WindowId, WindowState

DOCUMENT_VERSION = 2
_US = 1_000_000


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


def window_key(prefix: str, window: WindowId) -> str:
    partition, name = _start_parts(window.start_us)
    sensor = quote(window.sensor_id, safe="-_.")
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
        "sensor-id": quote(state.id.sensor_id, safe="-_.|"),
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
    record: dict[str, Any],
    *,
    ids: dict[str, Any],
    reason: str,
    detail: str,
    key: str | None = None,
    window: WindowId | None = None,
    size_us: int = 0,
) -> dict[str, Any]:
    """One line of the late side output: the batch's ids, why, the whole record."""
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
        f"{_iso(window.start_us + size_us)}: the watermark was {instant_text(watermark_us)}"
    )


def late_key(name: str, earliest_us: int | None) -> str:
    moment = None if earliest_us is None else datetime.fromtimestamp(earliest_us / _US, UTC)
    safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) or "_"
    return f"late/{event_time_partition(moment)}/{safe}.jsonl.gz"


class LateStore:
    """Late side-output objects in the error bucket."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def write(self, key: str, lines: list[dict[str, Any]], metadata: dict[str, str]) -> None:
        self._store.put(
            key,
            jsonl(lines, compress=True),
            metadata={**metadata, "record-count": str(len(lines))},
            content_type="application/x-ndjson",
            gzipped=True,
        )
