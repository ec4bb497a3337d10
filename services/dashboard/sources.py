"""What the dashboard shows, read from where the pipeline keeps it.

- scenario and its history: the controller's SQLite log;
- queues: SQS's approximate depths of every queue and dead-letter queue;
- throughput and lag: the Prometheus that scrapes the services (optional);
- rejected records: the newest ``rejected/`` objects of the error bucket;
- notifications: the notifier's ledger (``notifications/`` in the archival bucket);
- windows: the newest window documents of the aggregated bucket (its pages, one per
  window start and shard, newest first).

Each section is read on its own: one that fails says why in its place (``error``) and
the others still show.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.config import BucketKind, PipelineConfig
from sensorpipe.controller.store import PipelineController
from sensorpipe.errors import SensorPipeError
from sensorpipe.objects import read_jsonl
from sensorpipe.pages import is_page_key, latest_documents, page_entries
from sensorpipe.replay.status import queue_roles, queue_status
from services.dashboard.config import DashboardSettings
from services.dashboard.partitions import hours_newest_first, keys_under
from services.notifier.config import NotifierSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

_FAILURES = (SensorPipeError, BotoCoreError, ClientError, OSError, ValueError)
_PARALLEL_READS = 8
# How far back the newest-first walks go (hour partitions): a quiet error bucket or an
# unknown sensor must not turn a page refresh into a walk over months of partitions.
MAX_HOURS_BACK = 48
# Window pages read for one request at most (one per window start and shard).
MAX_PAGES_READ = 240
# PromQL of the throughput and lag sections (metric names: sensorpipe.runtime.metrics).
RECORDS_PER_SECOND = "sum by (service, outcome) (rate(sensorpipe_records_processed_total[1m]))"
LAG_P95_SECONDS = (
    "histogram_quantile(0.95, sum by (service, le) "
    "(rate(sensorpipe_message_lag_seconds_bucket[5m])))"
)


@dataclass
class PipelineView:
    config: PipelineConfig
    settings: DashboardSettings
    s3: S3Client
    sqs: SQSClient

    @property
    def controller_db(self) -> Path:
        return self.settings.controller_db or Path(self.config.pipeline.controller_db)

    def overview(self) -> dict[str, Any]:
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "pipeline": self.config.pipeline.name,
            "refresh_seconds": self.settings.refresh_seconds,
            "scenario": _section(self.scenario),
            "queues": _section(self.queues),
            "throughput": _section(self.throughput),
            "rejected": _section(self.rejected),
            "notifications": _section(self.notifications),
        }

    # -- sections ----------------------------------------------------------------------

    def scenario(self) -> dict[str, Any]:
        db = self.controller_db
        if not db.is_file():
            # Opening it would create it: the dashboard only reads.
            return {
                "error": f"no controller database at {db}",
                "hint": f"pipeline-controller --db {db} set SCENARIO --by WHO --reason WHY",
            }
        controller = PipelineController(db, valid_scenarios=self.config.scenarios)
        return {
            "active": controller.active().to_dict(),
            "history": [row.to_dict() for row in controller.history(self.settings.rows)],
        }

    def queues(self) -> dict[str, Any]:
        rows = []
        for name, role, source in queue_roles(self.config):
            status = queue_status(self.sqs, name, role, source)
            rows.append({**asdict(status), "total": status.total})
        return {"queues": rows, "dlq_messages": sum(r["total"] for r in rows if r["role"] == "dlq")}

    def throughput(self) -> dict[str, Any]:
        url = self.settings.prometheus_url
        if url is None:
            return {
                "configured": False,
                "hint": "set SENSORPIPE_DASHBOARD_PROMETHEUS_URL to the Prometheus that "
                "scrapes the services",
            }
        base = str(url).rstrip("/")
        rates = _prometheus(base, RECORDS_PER_SECOND)
        lags = _prometheus(base, LAG_P95_SECONDS)
        return {
            "configured": True,
            "records_per_second": [
                {
                    "service": r["metric"].get("service", ""),
                    "outcome": r["metric"].get("outcome", ""),
                    "value": _number(r["value"][1]),
                }
                for r in rates
            ],
            "lag_p95_seconds": [
                {"service": r["metric"].get("service", ""), "value": _number(r["value"][1])}
                for r in lags
            ],
        }

    def rejected(self) -> dict[str, Any]:
        bucket = self.config.buckets.name(BucketKind.ERROR)
        rows: list[dict[str, Any]] = []
        for hour in islice(hours_newest_first(self.s3, bucket, "rejected/"), MAX_HOURS_BACK):
            keys = sorted(keys_under(self.s3, bucket, hour), reverse=True)
            for lines in self._read_all(bucket, keys, read_jsonl):
                rows.extend(_rejected_row(line) for line in lines if isinstance(line, dict))
            if len(rows) >= self.settings.rows:
                break
        return {"bucket": bucket, "records": rows[: self.settings.rows]}

    def notifications(self) -> dict[str, Any]:
        bucket = self.config.buckets.name(BucketKind.ARCHIVAL)
        prefix = NotifierSettings().record_prefix.strip("/") + "/"
        listed: list[tuple[datetime, str]] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            listed.extend((o["LastModified"], o["Key"]) for o in page.get("Contents", []))
        newest = [key for _, key in sorted(listed, reverse=True)[: self.settings.rows]]
        docs = self._read_all(bucket, newest, orjson.loads)
        return {"bucket": bucket, "notifications": [_notification_row(d) for d in docs]}

    def windows(self, sensor_id: str | None = None) -> dict[str, Any]:
        """The newest window documents (latest revisions), optionally one sensor's.

        Pages are read newest window start first, every shard's page of one start
        together, until there are enough rows or :data:`MAX_PAGES_READ` pages were
        read (a sensor id is inside pages, not in keys: a filter reads pages too)."""
        bucket = self.config.buckets.name(BucketKind.AGGREGATED)
        prefix = self.config.windowing.output_prefix.strip("/") + "/"
        found: list[dict[str, Any]] = []
        read = 0
        for hour in islice(hours_newest_first(self.s3, bucket, prefix), MAX_HOURS_BACK):
            by_start: dict[str, list[str]] = {}
            for key in keys_under(self.s3, bucket, hour):
                if is_page_key(key):
                    by_start.setdefault(key.rsplit("/", 1)[0], []).append(key)
            for start in sorted(by_start, reverse=True):
                for docs in self._read_all(bucket, sorted(by_start[start]), page_entries):
                    found += [d for d in docs if sensor_id is None or d["sensor_id"] == sensor_id]
                read += len(by_start[start])
                if len(found) >= self.settings.rows or read >= MAX_PAGES_READ:
                    break
            if len(found) >= self.settings.rows or read >= MAX_PAGES_READ:
                break
        latest = sorted(
            latest_documents(found).values(),
            key=lambda d: (str(d["window_start"]), str(d["sensor_id"])),
            reverse=True,
        )
        rows = [_window_row(d) for d in latest[: self.settings.rows]]
        return {"bucket": bucket, "sensor_id": sensor_id, "windows": rows}

    # -- reading -----------------------------------------------------------------------

    def _read_all(self, bucket: str, keys: list[str], parse: Callable[[bytes], Any]) -> list[Any]:
        def read(key: str) -> Any:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return parse(body)

        with ThreadPoolExecutor(max_workers=_PARALLEL_READS) as pool:
            return list(pool.map(read, keys))


def _section(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return read()
    except _FAILURES as exc:
        log.warning("dashboard section %s failed: %s", read.__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _prometheus(base: str, query: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (configured URL)
        answer = json.loads(response.read())
    if answer.get("status") != "success":
        raise ValueError(f"Prometheus refused {query!r}: {answer.get('error', answer)}")
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _number(text: str) -> float | None:
    value = float(text)
    return None if value != value else value  # NaN (no samples yet) shows as empty


def _rejected_row(line: dict[str, Any]) -> dict[str, Any]:
    record, errors = line.get("record"), line.get("errors")
    if not isinstance(record, dict):
        record = {}  # the validator kept a whole record whose sensor_data was no object
    if not isinstance(errors, list):
        errors = []
    return {
        "sensor_id": record.get("sensor_id"),
        "timestamp": record.get("timestamp"),
        "location": record.get("location"),
        "errors": [
            str(e.get("message") or e.get("rule")) if isinstance(e, dict) else str(e)
            for e in errors
        ],
        "batch_id": line.get("batch_id"),
        "scenario": line.get("scenario"),
    }


def _notification_row(doc: dict[str, Any]) -> dict[str, Any]:
    window = doc.get("window") or {}
    return {
        "burst_id": doc.get("burst_id"),
        "location": doc.get("location"),
        "window_start": window.get("start"),
        "window_end": window.get("end"),
        "anomaly_count": doc.get("anomaly_count"),
        "sensor_ids": doc.get("sensor_ids", []),
    }


def _window_row(doc: dict[str, Any]) -> dict[str, Any]:
    metrics = doc.get("metrics") or {}
    return {
        "sensor_id": doc.get("sensor_id"),
        "location": doc.get("location"),
        "window_start": doc.get("window_start"),
        "window_end": doc.get("window_end"),
        "record_count": doc.get("record_count"),
        "anomaly_count": doc.get("anomaly_count"),
        "metrics": {
            name: {k: stats.get(k) for k in ("count", "mean", "min", "max", "stddev")}
            for name, stats in metrics.items()
            if isinstance(stats, dict)
        },
    }
