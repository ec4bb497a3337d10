"""The enricher's batch handler: lineage for scenarios that ask for it, pass-through else.

Outcomes per message:
- scenario with no route, a body that is not an envelope, a body whose scenario
  contradicts its attributes, or a record too large to send once enriched: Reject
  (to the DLQ with the reason, never dropped);
- the send to the enriched queue failed: Retry (the redo produces the same batch ids);
- otherwise Ack, after the whole received batch went out in one producer call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import (
    ATTR_BATCH_ID,
    ATTR_RECORD_COUNT,
    ATTR_SCENARIO,
    Encoded,
    EnvelopeError,
    encode_to_fit,
)
from sensorpipe.lineage import ProcessLineage, enrich_envelope, process_lineage
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
from sensorpipe.runtime.errors import SendError
from sensorpipe.runtime.metrics import RECORDS_PROCESSED
from services.enricher.config import EnricherSettings
from services.enricher.openlineage import OpenLineageLog

log = logging.getLogger(__name__)

SERVICE = "enricher"


def announced_records(message: Message) -> int:
    """The record count the sender put in the attributes (0 when absent or garbled)."""
    count = message.attributes.get(ATTR_RECORD_COUNT, "")
    return int(count) if count.isdigit() else 0


def pass_through(message: Message) -> Encoded:
    """The received message as it is: body and attributes untouched, never decoded."""
    attrs = message.attributes
    return Encoded(
        body=message.body,
        attributes=dict(attrs),
        batch_id=attrs.get(ATTR_BATCH_ID, ""),
        record_count=announced_records(message),
    )


@dataclass
class _Prepared:
    index: int
    encoded: list[Encoded]
    records: int
    enriched: bool


class EnricherHandler(BatchHandler):
    name = SERVICE

    def __init__(
        self,
        config: PipelineConfig,
        producer: EnvelopeProducer,
        lineage: ProcessLineage,
        openlineage: OpenLineageLog | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._producer = producer
        self._lineage = lineage
        self._openlineage = openlineage

    @classmethod
    def from_context(cls, context: ServiceContext) -> EnricherHandler:
        config = context.config
        queue = config.queues.enriched
        producer = EnvelopeProducer(
            context.sqs,
            context.sqs.get_queue_url(QueueName=queue)["QueueUrl"],
            queue,
            max_body_bytes=config.queues.max_body_bytes,
            compress=config.runtime.compress,
            service=SERVICE,
        )
        lineage = process_lineage(
            stage=SERVICE,
            pipeline_name=config.pipeline.name,
            pipeline_version=config.pipeline.version,
        )
        settings = EnricherSettings()
        openlineage = (
            OpenLineageLog(settings.openlineage_file, lineage, namespace=config.pipeline.name)
            if settings.openlineage_file
            else None
        )
        log.info(
            "lineage: node %s (from %s), execution %s (from %s)",
            lineage.node_id,
            lineage.node_id_source,
            lineage.execution_id,
            lineage.execution_id_source,
        )
        return cls(config, producer, lineage, openlineage)

    def handle(self, messages: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome] = [ACK] * len(messages)
        prepared: list[_Prepared] = []
        for index, message in enumerate(messages):
            result = self._prepare(index, message)
            if isinstance(result, Reject):
                outcomes[index] = result
                RECORDS_PROCESSED.labels(SERVICE, "rejected").inc(announced_records(message))
            else:
                prepared.append(result)
        if not prepared:
            return outcomes
        try:
            self._producer.send_encoded([e for p in prepared for e in p.encoded])
        except SendError as exc:
            for p in prepared:
                outcomes[p.index] = Retry(str(exc))
            return outcomes
        for p in prepared:
            outcome = "enriched" if p.enriched else "passed_through"
            RECORDS_PROCESSED.labels(SERVICE, outcome).inc(p.records)
        return outcomes

    def on_shutdown(self) -> None:
        if self._openlineage is not None:
            self._openlineage.complete()

    def _prepare(self, index: int, message: Message) -> _Prepared | Reject:
        scenario = message.attributes.get(ATTR_SCENARIO)
        if scenario is None:
            # No attribute (a hand-made message): the body is the only place to look.
            try:
                scenario = message.envelope().scenario
            except EnvelopeError as exc:
                return Reject(f"not a batch envelope: {exc}")
        route = self._config.route(scenario)
        if route is None:
            return Reject(
                f"batch {message.attributes.get(ATTR_BATCH_ID, '?')}: scenario {scenario!r} "
                f"has no route (routing table: {', '.join(self._config.scenario_names())})"
            )
        if not route.lineage:
            passed = pass_through(message)
            return _Prepared(index, [passed], passed.record_count, enriched=False)
        try:
            envelope = message.envelope()
        except EnvelopeError as exc:
            return Reject(f"not a batch envelope: {exc}")
        if envelope.scenario != scenario:
            return Reject(
                f"batch {envelope.batch_id}: body says scenario {envelope.scenario!r}, "
                f"attributes say {scenario!r}"
            )
        if self._openlineage is not None:
            self._openlineage.start()
        enriched = enrich_envelope(envelope, self._lineage)
        try:
            encoded = encode_to_fit(
                enriched,
                max_bytes=self._producer.max_body_bytes,
                compress=self._producer.compress,
            )
        except EnvelopeError as exc:
            return Reject(f"cannot forward enriched batch: {exc}")
        return _Prepared(index, encoded, len(envelope.records), enriched=True)
