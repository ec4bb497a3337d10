"""What the aggregator writes: window documents and the late side output.

Window objects (aggregated bucket), one per (sensor, window), key from that identity:
``<output_prefix>/year=/month=/day=/hour=/sensor_id=<id>/<window start>.json``. They
are written only if absent ("first writer wins"); each lists the ids of its member
readings, so a later writer can tell a replay (its readings are all members) from
new readings for a window already written (those go to the late side output).

Late side output (error bucket), one object per message, key from the batch:
``late/<partition of the batch's earliest reading>/<batch_id>.jsonl.gz``, one line per
reading with its reason. It is rewritten whole on every processing of that message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from botocore.exceptions import ClientError

from sensorpipe.errors import SensorPipeError
from sensorpipe.objects import (
    ObjectWriter,
    event_time_partition,
    hive_partition,
    jsonl,
    read_jsonl,
)
from services.aggregator.windows import WINDOW_ALREADY_WRITTEN, OpenWindow, Reading, WindowId

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DOCUMENT_VERSION = 1


class OutputReadError(SensorPipeError):
    """An existing window or late object could not be read back."""


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def window_key(prefix: str, window: WindowId) -> str:
    start = datetime.fromtimestamp(window.start, UTC)
    sensor = quote(window.sensor_id, safe="-_.")
    return (
        f"{prefix.strip('/')}/{hive_partition(start)}/sensor_id={sensor}/"
        f"{start.strftime('%Y%m%dT%H%M%SZ')}.json"
    )


def window_document(window: OpenWindow) -> dict[str, Any]:
    """The output row of a window: statistics, identity, provenance and members."""
    earliest, latest = window.earliest, window.latest
    assert earliest is not None and latest is not None  # a window opens with a reading
    return {
        "document_version": DOCUMENT_VERSION,
        "sensor_id": window.id.sensor_id,
        "location": earliest.record["sensor_data"].get("location"),
        "window_start": _iso(window.id.start),
        "window_end": _iso(window.end),
        "window_seconds": window.size,
        "first_reading_at": earliest.timestamp,
        "last_reading_at": latest.timestamp,
        "record_count": window.stats.records,
        "anomaly_count": window.anomalies,
        "metrics": window.stats.summary(),
        "scenarios": sorted(window.scenarios),
        "config_versions": sorted(window.config_versions),
        "lineage": {
            "batch_ids": sorted(window.batch_ids),
            "node_ids": sorted(window.node_ids),
            "job_id_hashes": sorted(window.job_id_hashes),
        },
        "reading_keys": sorted(window.keys),
    }


@dataclass(frozen=True, slots=True)
class RenderedWindow:
    key: str
    body: bytes
    metadata: dict[str, str]
    members: frozenset[str]


def render_window(prefix: str, window: OpenWindow) -> RenderedWindow:
    doc = window_document(window)
    metadata = {
        "sensor-id": quote(window.id.sensor_id, safe="-_.|"),
        "window-start": doc["window_start"],
        "window-end": doc["window_end"],
        "record-count": str(doc["record_count"]),
        "scenario": ",".join(doc["scenarios"]),
        "config-version": ",".join(str(v) for v in doc["config_versions"]),
        "first-event-time": doc["first_reading_at"],
        "last-event-time": doc["last_reading_at"],
    }
    return RenderedWindow(
        key=window_key(prefix, window.id),
        body=orjson.dumps(doc, option=orjson.OPT_SORT_KEYS),
        metadata=metadata,
        members=frozenset(window.keys),
    )


class WindowStore:
    """Window objects in the aggregated bucket."""

    def __init__(self, s3: S3Client, writer: ObjectWriter, bucket: str, prefix: str) -> None:
        self._s3 = s3
        self._writer = writer
        self.bucket = bucket
        self.prefix = prefix

    def write_if_absent(self, rendered: RenderedWindow) -> bool:
        """True if this call wrote the window, False if an earlier writer had."""
        return self._writer.put(
            self.bucket,
            rendered.key,
            rendered.body,
            metadata=rendered.metadata,
            only_if_absent=True,
        )

    def members(self, window: WindowId) -> frozenset[str] | None:
        """Reading ids of the written window, or None if it was never written."""
        key = window_key(self.prefix, window)
        body = _get(self._s3, self.bucket, key)
        if body is None:
            return None
        try:
            keys = orjson.loads(body)["reading_keys"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise OutputReadError(f"s3://{self.bucket}/{key} is not a window document") from exc
        return frozenset(str(k) for k in keys)


def _get(s3: S3Client, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise OutputReadError(f"reading s3://{bucket}/{key} failed: {exc}") from exc


class LateLines:
    """Side-output lines: the ids of the batch, why the reading is here, the record."""

    def __init__(self, *, window_seconds: int, grace_s: float) -> None:
        self._size = window_seconds
        self._grace_s = grace_s

    def line(
        self,
        reading: Reading,
        reason: str,
        ids: dict[str, Any],
        window: WindowId,
        watermark: float,
    ) -> dict[str, Any]:
        end = window.start + self._size
        if reason == WINDOW_ALREADY_WRITTEN:
            detail = f"window {_iso(window.start)} of {window.sensor_id} was written without it"
        elif not math.isfinite(watermark):
            # A redelivered message judged by its own newer readings before this process
            # has seen any reading of the sensor: there is no process watermark to quote.
            detail = (
                f"reading at {reading.timestamp} came after its window closed: newer readings "
                f"of the same sensor in its own message are more than {self._grace_s:g} s "
                f"grace past the window end {_iso(end)}"
            )
        else:
            detail = (
                f"reading at {reading.timestamp} came after its window closed: the sensor's "
                f"watermark (latest reading minus {self._grace_s:g} s grace, {_iso(watermark)})"
                f" had passed the window end {_iso(end)}"
            )
        return self._build(reading.record, reason, detail, ids, reading.key, window)

    def unusable(
        self, record: dict[str, Any], reason: str, detail: str, ids: dict[str, Any]
    ) -> dict[str, Any]:
        return self._build(record, reason, detail, ids, None, None)

    def _build(
        self,
        record: dict[str, Any],
        reason: str,
        detail: str,
        ids: dict[str, Any],
        key: str | None,
        window: WindowId | None,
    ) -> dict[str, Any]:
        return {
            **ids,
            "reading_key": key,
            "reason": reason,
            "detail": detail,
            "window_start": _iso(window.start) if window is not None else None,
            "window_end": _iso(window.start + self._size) if window is not None else None,
            "record": record.get("sensor_data", record),
            "lineage": record.get("lineage"),
            "quality": record.get("quality"),
        }


def late_key(batch_id: str, earliest_event_time: float | None) -> str:
    partition = event_time_partition(
        None if earliest_event_time is None else datetime.fromtimestamp(earliest_event_time, UTC)
    )
    safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in batch_id) or "_"
    return f"late/{partition}/{safe}.jsonl.gz"


class LateStore:
    """Late side-output objects in the error bucket (one per message)."""

    def __init__(self, s3: S3Client, writer: ObjectWriter, bucket: str) -> None:
        self._s3 = s3
        self._writer = writer
        self.bucket = bucket

    def write(self, key: str, lines: list[dict[str, Any]], metadata: dict[str, str]) -> None:
        self._writer.put(
            self.bucket,
            key,
            jsonl(lines, compress=True),
            metadata={**metadata, "record-count": str(len(lines))},
            gzipped=True,
        )

    def read(self, key: str) -> list[dict[str, Any]]:
        body = _get(self._s3, self.bucket, key)
        return [] if body is None else read_jsonl(body)
