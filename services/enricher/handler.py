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
    Encoded,
    EnvelopeError,
    encode_to_fit,
)
from sensorpipe.lineage import ProcessLineage, enrich_envelope, process_lineage
from sensorpipe.runtime import (
    BatchHandler,
    EnvelopeProducer,
    Message,
    Outcome,
    Reject,
    ServiceContext,
)
from sensorpipe.runtime.forwarding import forward_together, queue_producer
from sensorpipe.runtime.metrics import RECORDS_PROCESSED
from services.enricher.config import EnricherSettings
from services.enricher.openlineage import OpenLineageLog

log = logging.getLogger(__name__)

SERVICE = "enricher"


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
        producer = queue_producer(context, queue, service=SERVICE)
        lineage = process_lineage(
            stage=SERVICE,
            pipeline_name=config.pipeline.name,
            pipeline_version=config.pipeline.version,
        )
        settings = context.settings_of(EnricherSettings)
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
        outcomes, sent = forward_together(self._producer, messages, self._prepare, service=SERVICE)
        for p in sent:
            outcome = "enriched" if p.enriched else "passed_through"
            RECORDS_PROCESSED.labels(SERVICE, outcome).inc(p.records)
        return outcomes

    def on_shutdown(self) -> None:
        if self._openlineage is not None:
            self._openlineage.complete()

    def _prepare(self, index: int, message: Message) -> _Prepared | Reject:
        route = message.route(self._config)
        if isinstance(route, Reject):
            return route
        if not route.lineage:
            passed = message.passed_through()
            return _Prepared(index, [passed], passed.record_count, enriched=False)
        envelope = message.stamped_envelope()
        if isinstance(envelope, Reject):
            return envelope
        if self._openlineage is not None:
            self._openlineage.start()
        enriched = enrich_envelope(envelope, self._lineage)
        try:
            encoded = encode_to_fit(
                enriched,
                max_bytes=self._producer.max_body_bytes,
                compress=self._producer.compress,
                columnar=self._producer.columnar,
            )
        except EnvelopeError as exc:
            return Reject(f"cannot forward enriched batch: {exc}")
        return _Prepared(index, encoded, envelope.record_count, enriched=True)
