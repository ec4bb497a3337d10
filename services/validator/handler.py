"""The validator's batch handler: validate, set aside, forward.

Outcomes per message:
- scenario with no route, a body that is not an envelope, or a body whose scenario
  contradicts its attributes: Reject (to the DLQ with the reason);
- writing an error-bucket object or sending to the validated queue failed: Retry. The
  error objects are written before anything is forwarded or acknowledged, under keys
  and with bytes fixed by the batch, so the redo overwrites them identically;
- otherwise Ack, after the whole received batch went out in one producer call.
A record whose timestamp is what is wrong is filed under the hour its message arrived
(SentTimestamp), not under a partition made up from the bad time.
Scenarios without ``validate`` pass through untouched, without decoding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from sensorpipe.config import BucketKind, PipelineConfig, load_validation_spec
from sensorpipe.envelope import (
    Encoded,
    EnvelopeError,
    encode_to_fit,
)
from sensorpipe.objects import ObjectWriteError, ObjectWriter
from sensorpipe.runtime import (
    BatchHandler,
    EnvelopeProducer,
    Message,
    Outcome,
    Reject,
    Retry,
    ServiceContext,
)
from sensorpipe.runtime.forwarding import forward_together, queue_producer
from sensorpipe.runtime.metrics import PREFIX, RECORDS_PROCESSED
from services.validator.batch import BatchResult, BatchValidator, error_objects
from services.validator.config import ValidatorSettings

log = logging.getLogger(__name__)

SERVICE = "validator"

VALIDATION_ERRORS = Counter(
    f"{PREFIX}_validation_errors_total",
    "Validation errors found, by rule and field (a record may have several)",
    ["rule", "field"],
)
FILTERED_RECORDS = Counter(
    f"{PREFIX}_filtered_records_total", "Records set aside by a business filter", ["rule"]
)
ANOMALOUS_RECORDS = Counter(
    f"{PREFIX}_anomalous_records_total", "Valid records marked anomalous", ["service"]
)


@dataclass
class _Prepared:
    index: int
    encoded: list[Encoded]
    result: BatchResult | None  # None: passed through
    records: int


def arrival_time(message: Message) -> datetime | None:
    """When the message reached the validator's queue (its SentTimestamp: the same on
    every redelivery), or None when SQS did not say."""
    if message.sent_timestamp_ms <= 0:
        return None
    return datetime.fromtimestamp(message.sent_timestamp_ms / 1000, UTC)


class ValidatorHandler(BatchHandler):
    name = SERVICE

    def __init__(
        self,
        config: PipelineConfig,
        validator: BatchValidator,
        producer: EnvelopeProducer,
        writer: ObjectWriter,
        *,
        gzip_objects: bool = True,
    ) -> None:
        super().__init__()
        self._config = config
        self._validator = validator
        self._producer = producer
        self._writer = writer
        self._error_bucket = config.buckets.name(BucketKind.ERROR)
        self._gzip = gzip_objects

    @classmethod
    def from_context(cls, context: ServiceContext) -> ValidatorHandler:
        config = context.config
        spec = load_validation_spec(config=config)
        validator = BatchValidator(
            spec,
            config.filters,
            max_future_skew_seconds=config.validation.max_future_skew_seconds,
        )
        queue = config.queues.validated
        producer = queue_producer(context, queue, service=SERVICE)
        settings = context.settings_of(ValidatorSettings)
        log.info("validating with spec %s %s", spec.name, spec.spec_version)
        return cls(
            config,
            validator,
            producer,
            ObjectWriter(context.s3, service=SERVICE),
            gzip_objects=settings.gzip_objects,
        )

    def handle(self, messages: list[Message]) -> list[Outcome]:
        outcomes, sent = forward_together(self._producer, messages, self._prepare, service=SERVICE)
        for p in sent:
            self._count(p)
        return outcomes

    def _prepare(self, index: int, message: Message) -> _Prepared | Reject | Retry:
        route = message.route(self._config)
        if isinstance(route, Reject):
            return route
        if not route.validate_records:
            passed = message.passed_through()
            return _Prepared(index, [passed], None, passed.record_count)
        envelope = message.stamped_envelope()
        if isinstance(envelope, Reject):
            return envelope
        result = self._validator.validate_envelope(
            envelope, apply_filters=route.filter, arrived_at=arrival_time(message)
        )
        # Set-aside records are stored before anything goes on or is acknowledged.
        try:
            for obj in error_objects(result, compress=self._gzip):
                self._writer.put(
                    self._error_bucket,
                    obj.key,
                    obj.body,
                    metadata=obj.metadata,
                    gzipped=self._gzip,
                )
        except ObjectWriteError as exc:
            return Retry(str(exc))
        encoded: list[Encoded] = []
        # A positioned batch goes on even when nothing in it is valid: the stateful
        # stages count every part of a source's batch to know how far the source got.
        if result.forward.record_count or result.forward.position is not None:
            try:
                encoded = encode_to_fit(
                    result.forward,
                    max_bytes=self._producer.max_body_bytes,
                    compress=self._producer.compress,
                    columnar=self._producer.columnar,
                )
            except EnvelopeError as exc:
                return Reject(f"cannot forward validated batch: {exc}")
        return _Prepared(index, encoded, result, envelope.record_count)

    def _count(self, prepared: _Prepared) -> None:
        result = prepared.result
        if result is None:
            RECORDS_PROCESSED.labels(SERVICE, "passed_through").inc(prepared.records)
            return
        summary = result.summary
        for outcome in ("valid", "invalid", "filtered"):
            if summary[outcome]:
                RECORDS_PROCESSED.labels(SERVICE, outcome).inc(summary[outcome])
        for (rule, field), n in result.error_counts.items():
            VALIDATION_ERRORS.labels(rule, field).inc(n)
        for rule, n in summary["filtered_by_rule"].items():
            FILTERED_RECORDS.labels(rule).inc(n)
        if summary["anomalous"]:
            ANOMALOUS_RECORDS.labels(SERVICE).inc(summary["anomalous"])
