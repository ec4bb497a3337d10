"""The router's batch handler: obey the stamped scenario, deliver every destination once.

Outcomes per message:
- a scenario with no route, a body that is not an envelope, or records that break the
  stage contract: Reject (the message goes to the DLQ with the reason, never dropped);
- an S3 or SQS failure on any destination: Retry. Destinations already written are
  simply written again on the redo; their keys and bytes are the same;
- otherwise Ack, and only after every destination succeeded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.config import Destination, PipelineConfig
from sensorpipe.config.pipeline import BucketKind
from sensorpipe.envelope import RecordTooLargeError
from sensorpipe.errors import SensorPipeError
from sensorpipe.objects import ObjectWriter
from sensorpipe.runtime import (
    ACK,
    BatchHandler,
    EnvelopeProducer,
    Message,
    Outcome,
    Reject,
    Retry,
    ServiceContext,
)
from sensorpipe.runtime.forwarding import queue_producer
from sensorpipe.runtime.metrics import RECORDS_PROCESSED, SCENARIO_INFO
from services.router.config import RouterSettings
from services.router.destinations import (
    AggregatorForwarder,
    ArchivalWriter,
    DestinationWriter,
    MalformedBatchError,
    NotifierForwarder,
    RawWriter,
    RoutedBatch,
    SchematizedWriter,
    ShardForwarder,
)

log = logging.getLogger(__name__)

SERVICE = "router"


class RouterHandler(BatchHandler):
    name = SERVICE

    def __init__(
        self,
        config: PipelineConfig,
        writers: Mapping[Destination, DestinationWriter],
        *,
        threads: int = 1,
    ) -> None:
        super().__init__()
        self._config = config
        self._writers = dict(writers)
        self._forwarders = [w for w in self._writers.values() if isinstance(w, ShardForwarder)]
        self._last_scenario: str | None = None
        self._scenario_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, "route") if threads > 1 else None

    @classmethod
    def from_context(cls, context: ServiceContext) -> RouterHandler:
        settings = context.settings_of(RouterSettings)
        return cls(context.config, build_writers(context, settings), threads=settings.route_threads)

    def handle(self, messages: list[Message]) -> list[Outcome]:
        # Messages are independent (own keys, own outcome), so they may be routed in
        # parallel; map() keeps the outcomes in message order, as the consumer expects.
        if self._pool is None or len(messages) == 1:
            return [self._route(message) for message in messages]
        return list(self._pool.map(self._route, messages))

    def on_shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _route(self, message: Message) -> Outcome:
        envelope = message.stamped_envelope()
        if isinstance(envelope, Reject):
            return envelope
        route = self._config.route(envelope.scenario)
        if route is None:
            RECORDS_PROCESSED.labels(SERVICE, "no_route").inc(envelope.record_count)
            return Reject(
                f"batch {envelope.batch_id}: scenario {envelope.scenario!r} has no route "
                f"(routing table: {', '.join(self._config.scenario_names())})"
            )
        try:
            batch = RoutedBatch.of(envelope)
        except MalformedBatchError as exc:
            RECORDS_PROCESSED.labels(SERVICE, "malformed").inc(envelope.record_count)
            return Reject(str(exc))
        self._note_scenario(envelope.scenario)
        for destination in route.destinations:
            writer = self._writers.get(destination)
            if writer is None:
                return Reject(f"batch {batch.batch_id}: no writer for {destination.value}")
            try:
                writer.deliver(batch)
            except RecordTooLargeError as exc:
                return Reject(f"batch {batch.batch_id} to {destination.value}: {exc}")
            except (SensorPipeError, BotoCoreError, ClientError) as exc:
                return Retry(f"batch {batch.batch_id} to {destination.value} failed: {exc}")
        if envelope.position is not None:
            # The stateful stages count every part of a source's batches, including
            # those this scenario does not send them (docs/WINDOWS.md).
            for forwarder in self._forwarders:
                if forwarder.destination in route.destinations:
                    continue
                try:
                    forwarder.deliver(batch, with_records=False)
                except (SensorPipeError, BotoCoreError, ClientError) as exc:
                    return Retry(
                        f"batch {batch.batch_id}: progress to {forwarder.destination.value}"
                        f" failed: {exc}"
                    )
        RECORDS_PROCESSED.labels(SERVICE, "routed").inc(envelope.record_count)
        return ACK

    def _note_scenario(self, scenario: str) -> None:
        with self._scenario_lock:
            self._switch_scenario(scenario)

    def _switch_scenario(self, scenario: str) -> None:
        if scenario != self._last_scenario:
            if self._last_scenario is not None:
                SCENARIO_INFO.labels(SERVICE, self._last_scenario).set(0)
            SCENARIO_INFO.labels(SERVICE, scenario).set(1)
            self._last_scenario = scenario


def build_writers(
    context: ServiceContext, settings: RouterSettings
) -> dict[Destination, DestinationWriter]:
    """A writer for every destination kind; queue URLs are looked up once at start-up."""
    config = context.config
    objects = ObjectWriter(context.s3, service=SERVICE)

    def bucket(kind: BucketKind) -> str:
        return config.buckets.name(kind)

    def producers(names: list[str]) -> list[EnvelopeProducer]:
        return [queue_producer(context, name, service=SERVICE) for name in names]

    gz = settings.gzip_objects
    return {
        Destination.RAW: RawWriter(objects, bucket(BucketKind.RAW), gzip_objects=gz),
        Destination.SCHEMATIZED: SchematizedWriter(
            objects, bucket(BucketKind.SCHEMATIZED), gzip_objects=gz
        ),
        Destination.ARCHIVAL: ArchivalWriter(objects, bucket(BucketKind.ARCHIVAL), gzip_objects=gz),
        Destination.AGGREGATOR: AggregatorForwarder(
            producers(config.queues.aggregate_shard_names())
        ),
        Destination.NOTIFIER: NotifierForwarder(producers(config.queues.notify_shard_names())),
    }
