"""Per-location notifier state kept in S3, so a restart resumes exactly where it stopped.

One small JSON object per location (``<state_prefix>/<location>.json`` in the archival
bucket): watermark, cool-down bound, the anomalies not yet decided, and recent delivery
fingerprints. It is written before the input messages are deleted. Writes are
conditional on the ETag last read or written, so a second consumer of the same shard is
refused instead of silently overwriting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.runtime.metrics import S3_OBJECTS_WRITTEN, S3_WRITE_SECONDS
from services.notifier.bursts import LocationState
from services.notifier.errors import StateConflictError, StateReadError
from services.notifier.message import location_slug

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_CONFLICT_CODES = ("PreconditionFailed", "ConditionalRequestConflict")


@dataclass(slots=True)
class StoredState:
    state: LocationState
    etag: str | None  # None: not in S3 yet


class StateStore:
    def __init__(self, s3: S3Client, bucket: str, prefix: str, *, service: str) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self._service = service

    def key(self, location: str) -> str:
        return f"{self.prefix}/{location_slug(location)}.json"

    def load(self, location: str) -> StoredState:
        key = self.key(location)
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                return StoredState(LocationState(location), None)
            if code == "InvalidObjectState":
                # Moved to an archive class by the lifecycle: the location was silent for
                # months, so nothing in it can still be pending. Start afresh.
                log.warning("state %s is archived; starting location %r afresh", key, location)
                return StoredState(LocationState(location), None)
            raise StateReadError(f"reading s3://{self.bucket}/{key} failed: {code}") from exc
        except BotoCoreError as exc:
            raise StateReadError(f"reading s3://{self.bucket}/{key} failed: {exc}") from exc
        try:
            state = LocationState.from_dict(orjson.loads(body))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StateReadError(
                f"s3://{self.bucket}/{key} is not a notifier state: {exc}",
                hint="restore an earlier version (the bucket is versioned) or delete it",
            ) from exc
        return StoredState(state, response["ETag"])

    def save(self, stored: StoredState) -> None:
        """Write the state if nobody else did since we read it; updates ``stored.etag``."""
        key = self.key(stored.state.location)
        body = orjson.dumps(stored.state.to_dict(), option=orjson.OPT_SORT_KEYS)
        condition = {"IfMatch": stored.etag} if stored.etag else {"IfNoneMatch": "*"}
        started = time.perf_counter()
        try:
            response = self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                **condition,  # type: ignore[arg-type]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in _CONFLICT_CODES:
                raise StateConflictError(stored.state.location, key) from exc
            raise
        S3_WRITE_SECONDS.labels(self._service).observe(time.perf_counter() - started)
        S3_OBJECTS_WRITTEN.labels(self._service, self.bucket).inc()
        stored.etag = response["ETag"]

    def stored_locations(self) -> list[str]:
        """Locations that have a persisted state (read at start-up)."""
        locations = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/"):
            for item in page.get("Contents", []):
                stored = self._location_of(item["Key"])
                if stored is not None:
                    locations.append(stored)
        return locations

    def _location_of(self, key: str) -> str | None:
        name = key[len(self.prefix) + 1 :]
        if not name.endswith(".json") or "/" in name:
            return None
        return unquote(name[: -len(".json")])
