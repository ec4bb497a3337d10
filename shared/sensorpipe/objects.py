"""Writing batches of records to S3 as deterministic objects.

Keys come from content identity (batch id, window identity), and the bytes are
reproducible (gzip with mtime 0, stable JSON), so a redelivery or a replay overwrites
an object with identical bytes instead of adding a duplicate.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from sensorpipe.errors import SensorPipeError
from sensorpipe.runtime.metrics import S3_OBJECTS_WRITTEN, S3_WRITE_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ObjectWriteError(SensorPipeError):
    """An S3 write failed (after botocore's own retries)."""


def jsonl(records: Iterable[Mapping[str, Any]], *, compress: bool) -> bytes:
    """JSON Lines with sorted keys; gzip without a timestamp so bytes are reproducible."""
    data = b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records)
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data


def read_jsonl(body: bytes) -> list[dict[str, Any]]:
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def parse_event_time(value: str) -> datetime:
    """ISO-8601 reading time as an aware UTC datetime ('Z' and offsets accepted)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def hive_partition(moment: datetime) -> str:
    """Hive-style event-time partition: year=/month=/day=/hour=."""
    t = moment.astimezone(UTC)
    return f"year={t.year:04d}/month={t.month:02d}/day={t.day:02d}/hour={t.hour:02d}"


class ObjectWriter:
    def __init__(self, s3: S3Client, *, service: str) -> None:
        self._s3 = s3
        self._service = service

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        gzipped: bool = False,
        only_if_absent: bool = False,
    ) -> bool:
        """Write one object. With ``only_if_absent`` a second writer of the same key
        loses (returns False) instead of overwriting: a durable "first writer wins"."""
        args: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/x-ndjson",
            "Metadata": {k: str(v) for k, v in (metadata or {}).items()},
        }
        if gzipped:
            args["ContentEncoding"] = "gzip"
        if only_if_absent:
            args["IfNoneMatch"] = "*"
        started = time.perf_counter()
        try:
            self._s3.put_object(**args)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if only_if_absent and code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise ObjectWriteError(f"writing s3://{bucket}/{key} failed: {code or exc}") from exc
        S3_WRITE_SECONDS.labels(self._service).observe(time.perf_counter() - started)
        S3_OBJECTS_WRITTEN.labels(self._service, bucket).inc()
        return True
