"""One writer per destination kind: the raw, schematized and archival buckets, and the
sharded aggregator and notifier queues.

Bucket writers put ONE object per (batch, destination, event-time hour):
``<dest>/year=YYYY/month=MM/day=DD/hour=HH/<batch>_<content>.jsonl.gz``, ``batch`` the
batch id as ``objects.key_segment`` (safe and distinct whatever the id) and ``content``
the digest of the batch's source rows (``objects.content_digest``, about 1.3 µs a
record). The key depends only on the batch's identity and source rows, never on
processing times, and the bytes only on its content (sorted keys, gzip without a
timestamp), so a redelivered or replayed batch overwrites its objects with identical
bytes instead of adding duplicates, while two different batches that share an id keep
both. Every source row is kept: rows with their own ids that spell one instant three
ways are three lines (the windows count the reading once, by ``records.reading_key``).

Forwarders split a batch by a stable hash of the stage's key (sensor_id for the
aggregator, location for the notifier), so one key always lands on one shard queue and
a stateful consumer never sees a key split across replicas. A batch part from a
sequenced source goes to *every* shard, with no records where none are the shard's,
and in every scenario (with no records when the scenario does not feed that stage):
each shard counts every part of a source's batches to know how far the source got
(docs/WINDOWS.md). Every such envelope carries the part's greatest valid event time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

import pyarrow as pa
from prometheus_client import Counter

from sensorpipe.columns import rows_of
from sensorpipe.config import Destination
from sensorpipe.envelope import Envelope, Record
from sensorpipe.errors import SensorPipeError
from sensorpipe.objects import (
    ObjectWriter,
    batch_object_metadata,
    content_digest,
    event_time_partition,
    jsonl,
    key_segment,
    readable_event_time,
)
from sensorpipe.records import stable_shard
from sensorpipe.runtime import EnvelopeProducer
from sensorpipe.runtime.metrics import PREFIX

RECORDS_ROUTED = Counter(
    f"{PREFIX}_router_records_routed_total",
    "Records the router delivered, by destination",
    ["destination"],
)
OBJECTS_WRITTEN = Counter(
    f"{PREFIX}_router_objects_written_total",
    "Objects the router wrote, by destination",
    ["destination"],
)
RECORDS_WITHOUT_EVENT_TIME = Counter(
    f"{PREFIX}_router_records_without_event_time_total",
    "Records written to Hive's default partition (no readable timestamp)",
    ["destination"],
)

# The router's hop carries no wall-clock time: a redelivered batch must produce the
# same bytes, and the object's own LastModified says when the router wrote it.
ROUTER_HOP: dict[str, str] = {"stage": "router"}


class MalformedBatchError(SensorPipeError):
    """A batch breaks the record contract between stages; retrying cannot fix it."""


@dataclass(frozen=True, slots=True)
class RoutedBatch:
    """A decoded batch whose records were checked and whose event times were read once."""

    envelope: Envelope
    event_times: list[datetime | None]
    # The greatest readable event time of the part's records (µs): once validated, of
    # its valid readings (a future-dated row was rejected and moves nothing).
    max_event_us: int | None = None
    # The digest of the batch's source rows: part of every object key.
    content: str = ""
    # The records as dicts, decoded once for every writer; a columnar envelope stays
    # columnar (its forwarded parts are cut from the table, not rebuilt from these).
    rows: list[Record] = field(default_factory=list)

    @classmethod
    def of(cls, envelope: Envelope) -> RoutedBatch:
        # Any batch id names a safe key (objects.key_segment): none is refused for it.
        times: list[datetime | None] = []
        rows = rows_of(envelope.table) if envelope.columnar else envelope.records
        for index, record in enumerate(rows):
            sensor_data = record.get("sensor_data")
            if not isinstance(sensor_data, dict):
                raise MalformedBatchError(
                    f"batch {envelope.batch_id}: record {index} has no 'sensor_data' object",
                    hint="every stage keeps the source row under 'sensor_data'",
                )
            # None (possible in the raw scenario, which skips validation) files the
            # record under Hive's default partition instead of dropping it.
            times.append(readable_event_time(sensor_data.get("timestamp")))
        known = [t for t in times if t is not None]
        latest = _epoch_us(max(known)) if known else None
        content = content_digest(r["sensor_data"] for r in rows)
        return cls(envelope, times, latest, content, rows)

    @property
    def batch_id(self) -> str:
        return self.envelope.batch_id


@dataclass(frozen=True, slots=True)
class RenderedObject:
    """One object ready to put: the transform's output, before any S3 call."""

    key: str
    body: bytes
    metadata: dict[str, str]
    record_count: int
    timeless_count: int


class DestinationWriter(Protocol):
    destination: ClassVar[Destination]

    def deliver(self, batch: RoutedBatch) -> int:
        """Deliver the batch; return how many records this destination received."""
        ...


def object_key(prefix: str, partition: str, batch: RoutedBatch, suffix: str) -> str:
    """``<prefix>/<partition>/<batch id segment>_<content digest><suffix>``."""
    return f"{prefix}/{partition}/{key_segment(batch.batch_id)}_{batch.content}{suffix}"


class BucketWriter:
    """Writes one object per event-time hour of a batch; subclasses choose the lines."""

    destination: ClassVar[Destination]

    def __init__(self, writer: ObjectWriter, bucket: str, *, gzip_objects: bool = True) -> None:
        self._writer = writer
        self.bucket = bucket
        self._gzip = gzip_objects
        self._suffix = ".jsonl.gz" if gzip_objects else ".jsonl"

    def projector(self, batch: RoutedBatch) -> Callable[[Record], Record]:
        """The function that turns a record into the line this bucket stores."""
        raise NotImplementedError

    def render(self, batch: RoutedBatch) -> list[RenderedObject]:
        project = self.projector(batch)
        groups: dict[str, tuple[list[Record], list[datetime]]] = {}
        for record, moment in zip(batch.rows, batch.event_times, strict=True):
            partition = event_time_partition(moment)
            lines, times = groups.setdefault(partition, ([], []))
            lines.append(project(record))
            if moment is not None:
                times.append(moment)
        return [
            self._object(batch, partition, lines, times)
            for partition, (lines, times) in groups.items()
        ]

    def _object(
        self, batch: RoutedBatch, partition: str, lines: list[Record], times: list[datetime]
    ) -> RenderedObject:
        envelope = batch.envelope
        metadata = batch_object_metadata(
            scenario=envelope.scenario,
            config_version=envelope.config_version,
            batch_id=envelope.batch_id,
            record_count=len(lines),
            event_times=times,
        )
        return RenderedObject(
            key=object_key(self.destination.value, partition, batch, self._suffix),
            body=jsonl(lines, compress=self._gzip),
            metadata=metadata,
            record_count=len(lines),
            timeless_count=len(lines) - len(times),
        )

    def put(self, rendered: list[RenderedObject]) -> int:
        label = self.destination.value
        for item in rendered:
            self._writer.put(
                self.bucket, item.key, item.body, metadata=item.metadata, gzipped=self._gzip
            )
            OBJECTS_WRITTEN.labels(label).inc()
            if item.timeless_count:
                RECORDS_WITHOUT_EVENT_TIME.labels(label).inc(item.timeless_count)
        count = sum(item.record_count for item in rendered)
        RECORDS_ROUTED.labels(label).inc(count)
        return count

    def deliver(self, batch: RoutedBatch) -> int:
        return self.put(self.render(batch))


class RawWriter(BucketWriter):
    """The raw bucket: the source rows exactly as received, nothing added."""

    destination = Destination.RAW

    def projector(self, batch: RoutedBatch) -> Callable[[Record], Record]:
        return _sensor_data


def _sensor_data(record: Record) -> Record:
    data: Record = record["sensor_data"]
    return data


class SchematizedWriter(BucketWriter):
    """The schematized bucket: full records (reading, quality, lineage when present)."""

    destination = Destination.SCHEMATIZED

    def projector(self, batch: RoutedBatch) -> Callable[[Record], Record]:
        return _whole


def _whole(record: Record) -> Record:
    return record


class ArchivalWriter(BucketWriter):
    """The archival bucket: full records whose lineage lists every hop, the router's too."""

    destination = Destination.ARCHIVAL

    def projector(self, batch: RoutedBatch) -> Callable[[Record], Record]:
        hops = [*batch.envelope.hops, ROUTER_HOP]

        def with_hops(record: Record) -> Record:
            lineage = record.get("lineage")
            base = lineage if isinstance(lineage, dict) else {}
            return {**record, "lineage": {**base, "hops": hops}}

        return with_hops


def is_anomalous(record: Record) -> bool:
    """The validator's mark (``quality.anomalous``), or without one the sensor's own
    flag (``anomaly_flag``)."""
    quality = record.get("quality")
    if isinstance(quality, dict) and "anomalous" in quality:
        return quality["anomalous"] is True
    return record["sensor_data"].get("anomaly_flag") in (1, True)


def _epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class ShardForwarder:
    """Forwards records to N shard queues by a stable hash of the stage's key."""

    destination: ClassVar[Destination]

    def __init__(self, producers: list[EnvelopeProducer]) -> None:
        if not producers:
            raise ValueError("a forwarder needs at least one shard queue")
        self._producers = producers

    def shard_key(self, record: Record) -> str:
        raise NotImplementedError

    def selects(self, record: Record) -> bool:
        return True

    def project(self, record: Record) -> Record:
        """What of a record the stage needs (the whole record by default)."""
        return record

    def envelopes(
        self, batch: RoutedBatch, *, with_records: bool = True
    ) -> list[tuple[int, Envelope]]:
        """(shard, envelope) in shard order: every shard for a sequenced batch (those
        without records of theirs get an empty one), else every shard with records.
        ``with_records=False``: the empty ones alone (a scenario that does not feed the
        stage still tells it how far the source got)."""
        shards = len(self._producers)
        parts: dict[int, list[int]] = {}
        if with_records:
            for index, record in enumerate(batch.rows):
                if self.selects(record):
                    shard = stable_shard(self.shard_key(record), shards)
                    parts.setdefault(shard, []).append(index)
        sequenced = batch.envelope.position is not None
        out = []
        for shard in range(shards) if sequenced else sorted(parts):
            batch_id = batch.batch_id if shards == 1 else f"{batch.batch_id}.s{shard}"
            envelope = self._part(batch, parts.get(shard, []), batch_id)
            envelope.max_event_us = batch.max_event_us
            envelope.add_hop("router")
            out.append((shard, envelope))
        return out

    def _part(self, batch: RoutedBatch, indices: list[int], batch_id: str) -> Envelope:
        """The shard's envelope: cut from the table when the batch came columnar (it
        stays columnar), else projected record by record."""
        if batch.envelope.columnar:
            table = self.project_table(batch, indices)
            return batch.envelope.with_table(table, batch_id=batch_id)
        records = [self.project(batch.rows[index]) for index in indices]
        return batch.envelope.with_records(records, batch_id=batch_id)

    def project_table(self, batch: RoutedBatch, indices: list[int]) -> pa.Table:
        """:meth:`project` as column work on the rows at ``indices`` (whole rows by default)."""
        table: pa.Table = batch.envelope.table.take(pa.array(indices, pa.int64()))
        return table

    def deliver(self, batch: RoutedBatch, *, with_records: bool = True) -> int:
        count = 0
        for shard, envelope in self.envelopes(batch, with_records=with_records):
            self._producers[shard].send([envelope])
            count += envelope.record_count
        if with_records:
            RECORDS_ROUTED.labels(self.destination.value).inc(count)
        return count


class AggregatorForwarder(ShardForwarder):
    """Every record, to the aggregator shard owning its sensor: the reading and whether
    it is anomalous, nothing more (a window needs no per-record lineage or validation
    report; the batch's lineage ids travel once, in ``meta``)."""

    destination = Destination.AGGREGATOR

    def shard_key(self, record: Record) -> str:
        return str(record["sensor_data"].get("sensor_id"))

    def project(self, record: Record) -> Record:
        return {"sensor_data": record["sensor_data"], "anomalous": is_anomalous(record)}

    def project_table(self, batch: RoutedBatch, indices: list[int]) -> pa.Table:
        taken = batch.envelope.table.select(["sensor_data"]).take(pa.array(indices, pa.int64()))
        flags = pa.array([is_anomalous(batch.rows[index]) for index in indices], pa.bool_())
        table: pa.Table = taken.append_column(pa.field("anomalous", pa.bool_()), flags)
        return table


class NotifierForwarder(ShardForwarder):
    """Only anomalous records, to the notifier shard owning their location."""

    destination = Destination.NOTIFIER

    def shard_key(self, record: Record) -> str:
        return str(record["sensor_data"].get("location"))

    def selects(self, record: Record) -> bool:
        quality = record.get("quality")
        return isinstance(quality, dict) and quality.get("anomalous") is True
