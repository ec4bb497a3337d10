"""Replay readings stored in a bucket (archival, raw or schematized) into the ingest queue,
or the records the validator set aside (error bucket, ``rejected/`` or ``filtered/``) once
a spec or business rule was fixed.

Each object becomes one envelope (split to fit the queue's body limit by the producer)
carrying only the source rows (``{"sensor_data": row}``), so the whole pipeline runs
again under the chosen scenario. Its batch id is derived from the object key (and the
selection, when one narrows the rows), so replaying the same thing twice gives the
same batch ids and the router overwrites its earlier objects instead of duplicating
them. Objects that cannot be read are listed, never skipped silently.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.config import BucketKind, PipelineConfig
from sensorpipe.envelope import Envelope, EnvelopeError, utc_now_iso
from sensorpipe.objects import parse_event_time, read_jsonl, readable_event_time
from sensorpipe.replay.errors import (
    InvalidArgumentError,
    ReplayAwsError,
    UnknownScenarioError,
    aws_failure,
)
from sensorpipe.runtime import EnvelopeProducer
from sensorpipe.runtime.errors import SendError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

REPLAYABLE_KINDS = (
    BucketKind.ARCHIVAL,
    BucketKind.RAW,
    BucketKind.SCHEMATIZED,
    BucketKind.ERROR,
)
# What of the error bucket replays: the validator's set-aside records. Not ``late/``: the
# aggregator's late readings are in the archival bucket already, so a replay would put
# them there twice.
ERROR_PREFIXES = ("rejected/", "filtered/")
REPLAY_STAGE = "replay"
REPLAY_BATCH_PREFIX = "replay-"
SERVICE = "replay"


@dataclass(frozen=True, slots=True)
class ArchiveSelection:
    """Which readings replay. Event time: ``since`` inclusive, ``until`` exclusive."""

    sensor_id: str | None = None
    location: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since >= self.until:
            raise InvalidArgumentError(
                "--since/--until",
                f"{self.since.isoformat()} .. {self.until.isoformat()}",
                "--since must be earlier than --until",
            )

    def matches(self, row: dict[str, Any]) -> bool:
        if self.sensor_id is not None and row.get("sensor_id") != self.sensor_id:
            return False
        if self.location is not None and row.get("location") != self.location:
            return False
        if self.since is None and self.until is None:
            return True
        moment = readable_event_time(row.get("timestamp"))
        if moment is None:
            return False
        return (self.since is None or moment >= self.since) and (
            self.until is None or moment < self.until
        )

    def fingerprint(self) -> str:
        """Empty without criteria; otherwise a canonical text of them."""
        parts = {
            "sensor_id": self.sensor_id,
            "location": self.location,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
        chosen = {k: v for k, v in parts.items() if v is not None}
        return orjson.dumps(chosen, option=orjson.OPT_SORT_KEYS).decode() if chosen else ""


def parse_time_option(option: str, value: str) -> datetime:
    try:
        return parse_event_time(value)
    except (ValueError, OverflowError):
        raise InvalidArgumentError(
            option, value, "not an ISO-8601 time", hint="e.g. 2026-11-21T10:00:00Z"
        ) from None


def replay_batch_id(key: str, selection: ArchiveSelection) -> str:
    """Deterministic batch id of an object's replay.

    The selection joins the hash only when it narrows the rows: a narrower replay of
    the same object must not overwrite the outputs of a wider one with fewer records.
    """
    fingerprint = selection.fingerprint()
    text = key if not fingerprint else f"{key}\n{fingerprint}"
    return REPLAY_BATCH_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def full_prefix(kind: BucketKind, prefix: str) -> str:
    """The router writes under ``<kind>/<partition>/``; accept the prefix with or without it.

    The error bucket is laid out by what was set aside (``rejected/``, ``filtered/``), so
    its prefix must name one of those."""
    prefix = prefix.lstrip("/")
    if kind is BucketKind.ERROR:
        if not prefix.startswith(ERROR_PREFIXES):
            why = "the error bucket replays only records the validator set aside"
            if prefix.startswith("late/"):
                why += " (late readings are in the archival bucket already)"
            raise InvalidArgumentError(
                "--prefix",
                prefix or "(empty)",
                why,
                hint="start it with rejected/ or filtered/, e.g. rejected/year=2026/",
            )
        return prefix
    return prefix if prefix.startswith(f"{kind.value}/") else f"{kind.value}/{prefix}"


@dataclass
class ArchiveReplayResult:
    bucket: str
    prefix: str
    queue: str
    dry_run: bool
    objects: int = 0
    records_read: int = 0
    records_selected: int = 0
    malformed_records: int = 0
    batch_ids: list[str] = field(default_factory=list)
    by_scenario: Counter[str] = field(default_factory=Counter)
    skipped_objects: list[str] = field(default_factory=list)
    earlier_replays: int = 0  # error objects of a replayed batch: their originals replay

    def lines(self) -> list[str]:
        verb = "would send" if self.dry_run else "sent"
        out = [
            f"s3://{self.bucket}/{self.prefix}: {self.objects} object(s), {self.records_read} "
            f"record(s) read, {self.records_selected} selected; {verb} "
            f"{len(self.batch_ids)} batch(es) to {self.queue}"
            + ("  (dry run: nothing was sent)" if self.dry_run else "")
        ]
        if self.by_scenario:
            out.append("selected records by scenario:")
            out.extend(f"  {n:>8}  {name}" for name, n in sorted(self.by_scenario.items()))
        if self.malformed_records:
            out.append(
                f"warning: {self.malformed_records} line(s) held no reading object "
                "and were not replayed"
            )
        if self.earlier_replays:
            out.append(
                f"note: {self.earlier_replays} object(s) hold what an earlier replay set aside "
                "again; not re-sent (their original objects are, so nothing is sent twice)"
            )
        out.extend(f"skipped: {problem}" for problem in self.skipped_objects)
        return out


class ArchiveReplayer:
    def __init__(
        self,
        s3: S3Client,
        sqs: SQSClient,
        config: PipelineConfig,
        *,
        kind: BucketKind,
        prefix: str,
        selection: ArchiveSelection,
        scenario: str | None = None,
        dry_run: bool = False,
    ) -> None:
        if kind not in REPLAYABLE_KINDS:
            raise InvalidArgumentError(
                "--bucket-kind",
                kind.value,
                "holds no replayable readings",
                hint=f"choose one of {', '.join(k.value for k in REPLAYABLE_KINDS)}",
            )
        if scenario is not None and scenario not in config.scenarios:
            raise UnknownScenarioError(scenario, valid=config.scenarios)
        self._s3 = s3
        self._config = config
        self._kind = kind
        self._selection = selection
        self._scenario = scenario
        self._dry_run = dry_run
        self.bucket = config.buckets.name(kind)
        self.prefix = full_prefix(kind, prefix)
        queue = config.queues.ingest
        self._producer: EnvelopeProducer | None = None
        if not dry_run:
            try:
                url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            except (BotoCoreError, ClientError) as exc:
                raise aws_failure("GetQueueUrl", "queue", queue, exc) from exc
            self._producer = EnvelopeProducer(
                sqs,
                url,
                queue,
                max_body_bytes=config.queues.max_body_bytes,
                compress=config.runtime.compress,
                columnar=config.runtime.columnar,
                service=SERVICE,
            )
        self.queue = queue

    def run(self) -> ArchiveReplayResult:
        result = ArchiveReplayResult(self.bucket, self.prefix, self.queue, self._dry_run)
        for key in self._keys():
            result.objects += 1
            envelope = self._envelope(key, result)
            if envelope is None:
                continue
            if self._producer is not None and not self._send(envelope, key, result):
                continue
            result.batch_ids.append(envelope.batch_id)
            result.records_selected += len(envelope.records)
            result.by_scenario[envelope.scenario] += len(envelope.records)
        return result

    def _keys(self) -> list[str]:
        keys: list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                keys.extend(
                    o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")
                )
        except (BotoCoreError, ClientError) as exc:
            raise aws_failure("ListObjectsV2", "bucket", self.bucket, exc) from exc
        return sorted(keys)

    def _envelope(self, key: str, result: ArchiveReplayResult) -> Envelope | None:
        where = f"s3://{self.bucket}/{key}"
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=key)
            body = obj["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code == "NoSuchKey":  # deleted since the listing
                result.skipped_objects.append(f"{where}: deleted while replaying")
                return None
            raise aws_failure("GetObject", "object", where, exc) from exc
        metadata = obj.get("Metadata", {})
        if self._kind is BucketKind.ERROR and metadata.get("batch-id", "").startswith(
            REPLAY_BATCH_PREFIX
        ):
            result.earlier_replays += 1
            return None
        scenario = self._scenario or metadata.get("scenario")
        if not scenario or scenario not in self._config.scenarios:
            recorded = repr(scenario) if scenario else "no scenario"
            result.skipped_objects.append(
                f"{where}: metadata records {recorded}, which this pipeline does not know; "
                "pass --scenario NAME"
            )
            return None
        try:
            lines = read_jsonl(body)
        except (orjson.JSONDecodeError, OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            result.skipped_objects.append(f"{where}: not JSON Lines ({exc})")
            return None
        rows = self._rows(lines, result)
        selected = [row for row in rows if self._selection.matches(row)]
        if not selected:
            return None
        return Envelope(
            batch_id=replay_batch_id(key, self._selection),
            scenario=scenario,
            config_version=_int(metadata.get("config-version")),
            records=[{"sensor_data": row} for row in selected],
            source=REPLAY_STAGE,
            hops=[{"stage": REPLAY_STAGE, "at": utc_now_iso()}],
            meta={"replay_of": where, "replay_bucket_kind": self._kind.value},
        )

    def _rows(self, lines: list[Any], result: ArchiveReplayResult) -> list[dict[str, Any]]:
        """The source rows: raw lines are rows, error lines keep them under record, other
        buckets under sensor_data."""
        extract = _ROW_OF.get(self._kind, _sensor_data)
        rows: list[dict[str, Any]] = []
        for line in lines:
            result.records_read += 1
            row = extract(line)
            if isinstance(row, dict):
                rows.append(row)
            else:
                result.malformed_records += 1
        return rows

    def _send(self, envelope: Envelope, key: str, result: ArchiveReplayResult) -> bool:
        assert self._producer is not None
        try:
            self._producer.send([envelope])
        except EnvelopeError as exc:  # one record alone exceeds the body limit
            result.skipped_objects.append(f"s3://{self.bucket}/{key}: {exc}")
            return False
        except SendError as exc:
            raise ReplayAwsError("SendMessageBatch", f"queue {self.queue}", exc.message) from exc
        return True


def _sensor_data(line: Any) -> Any:
    return line.get("sensor_data") if isinstance(line, dict) else None


def _set_aside(line: Any) -> Any:
    """The reading of a rejected or filtered line; None when the validator had to keep
    the whole record because its sensor_data was no object (nothing to replay)."""
    record = line.get("record") if isinstance(line, dict) else None
    return record if isinstance(record, dict) and "sensor_data" not in record else None


_ROW_OF = {BucketKind.RAW: lambda line: line, BucketKind.ERROR: _set_aside}


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0
