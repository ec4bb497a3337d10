"""The enricher's handler against an in-memory AWS (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensorpipe.envelope import ATTR_SCENARIO, Encoded, decode
from sensorpipe.lineage import process_lineage
from sensorpipe.runtime import ACK, EnvelopeProducer, Reject, Retry
from sensorpipe.runtime.errors import SendError
from services.enricher.handler import EnricherHandler
from services.enricher.openlineage import OpenLineageLog
from tests.moto_stack import MotoStack, message_of
from tests.services.validator.rows import reading
from tests.services.validator.stack import envelope_of

BACALHAU = {"BACALHAU_NODE_ID": "n-1", "BACALHAU_JOB_ID": "j-1", "BACALHAU_EXECUTION_ID": "e-1"}


class CountingProducer(EnvelopeProducer):
    calls = 0

    def send_encoded(
        self, encoded: list[Encoded], fifo_ids: list[dict[str, str]] | None = None
    ) -> None:
        self.calls += 1
        super().send_encoded(encoded, fifo_ids)


def make_handler(
    stack: MotoStack,
    openlineage: OpenLineageLog | None = None,
    max_body_bytes: int = 256 * 1024,
) -> EnricherHandler:
    queue = stack.config.queues.enriched
    producer = CountingProducer(
        stack.context.sqs,
        stack.context.sqs.get_queue_url(QueueName=queue)["QueueUrl"],
        queue,
        max_body_bytes=max_body_bytes,
        service="enricher",
    )
    lineage = process_lineage(
        stage="enricher", pipeline_name="sensorpipe", pipeline_version="2.0.0", env=BACALHAU
    )
    return EnricherHandler(stack.config, producer, lineage, openlineage)


def test_lineage_scenario_records_get_lineage(moto_stack: MotoStack) -> None:
    rows = [reading(i) for i in range(1, 4)]
    handler = make_handler(moto_stack)
    assert handler.handle([message_of(envelope_of("lineage", rows))]) == [ACK]
    (out,) = moto_stack.drain(moto_stack.config.queues.enriched)
    envelope = out.envelope()
    assert [r["sensor_data"] for r in envelope.records] == rows
    lineage = envelope.records[2]["lineage"]
    assert lineage["node_id"] == "n-1"
    assert lineage["execution_id"] == "e-1"
    assert lineage["source_row_id"] == 3
    assert lineage["batch_id"] == "edge-1-000001"
    assert lineage["scenario"] == "lineage"
    assert lineage["config_version"] == 3
    assert [h["stage"] for h in envelope.hops] == ["uploader", "enricher"]
    assert out.attributes[ATTR_SCENARIO] == "lineage"


def test_scenario_without_lineage_is_forwarded_untouched(moto_stack: MotoStack) -> None:
    message = message_of(envelope_of("schematized", [reading(1)]))
    handler = make_handler(moto_stack)
    assert handler.handle([message]) == [ACK]
    (out,) = moto_stack.drain(moto_stack.config.queues.enriched)
    assert out.body == message.body
    assert out.attributes == message.attributes


def test_pass_through_never_decodes_the_body(moto_stack: MotoStack) -> None:
    message = message_of(envelope_of("raw", [reading(1)]))
    message.body = "not an envelope at all"  # a raw batch is not this stage's business
    assert make_handler(moto_stack).handle([message]) == [ACK]
    (out,) = moto_stack.drain(moto_stack.config.queues.enriched)
    assert out.body == "not an envelope at all"


def test_unknown_scenario_is_rejected_with_reason(moto_stack: MotoStack) -> None:
    message = message_of(envelope_of("teleport", [reading(1)]))
    (outcome,) = make_handler(moto_stack).handle([message])
    assert isinstance(outcome, Reject)
    assert "'teleport' has no route" in outcome.reason
    assert moto_stack.drain(moto_stack.config.queues.enriched) == []


def test_poison_body_is_rejected(moto_stack: MotoStack) -> None:
    message = message_of(envelope_of("lineage", [reading(1)]))
    message.body = "H4sI-not-base64-gzip"
    (outcome,) = make_handler(moto_stack).handle([message])
    assert isinstance(outcome, Reject)
    assert "not a batch envelope" in outcome.reason


def test_body_scenario_must_agree_with_attributes(moto_stack: MotoStack) -> None:
    message = message_of(envelope_of("lineage", [reading(1)]))
    message.attributes[ATTR_SCENARIO] = "aggregated"
    (outcome,) = make_handler(moto_stack).handle([message])
    assert isinstance(outcome, Reject)
    assert "attributes say 'aggregated'" in outcome.reason


def test_a_message_without_scenario_attribute_is_read_from_the_body(moto_stack: MotoStack) -> None:
    message = message_of(envelope_of("lineage", [reading(1)]))
    del message.attributes[ATTR_SCENARIO]
    assert make_handler(moto_stack).handle([message]) == [ACK]
    (out,) = moto_stack.drain(moto_stack.config.queues.enriched)
    assert "lineage" in out.envelope().records[0]


def test_several_messages_go_out_in_one_producer_call(moto_stack: MotoStack) -> None:
    handler = make_handler(moto_stack)
    messages = [
        message_of(envelope_of("lineage", [reading(1)], batch_id="b-1")),
        message_of(envelope_of("raw", [reading(2)], batch_id="b-2")),
        message_of(envelope_of("teleport", [reading(3)], batch_id="b-3")),
        message_of(envelope_of("aggregated", [reading(4)], batch_id="b-4")),
    ]
    outcomes = handler.handle(messages)
    assert outcomes[:2] == [ACK, ACK] and outcomes[3] == ACK
    assert isinstance(outcomes[2], Reject)
    assert isinstance(handler._producer, CountingProducer)
    assert handler._producer.calls == 1
    sent = moto_stack.drain(moto_stack.config.queues.enriched)
    assert sorted(m.attributes["batch-id"] for m in sent) == ["b-1", "b-2", "b-4"]


def test_send_failure_retries_every_prepared_message(
    moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = make_handler(moto_stack)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise SendError("enriched", ["m0: throttled"])

    monkeypatch.setattr(handler._producer, "send_encoded", refuse)
    messages = [
        message_of(envelope_of("lineage", [reading(1)])),
        message_of(envelope_of("teleport", [reading(1)])),
    ]
    outcomes = handler.handle(messages)
    assert isinstance(outcomes[0], Retry) and "throttled" in outcomes[0].reason
    assert isinstance(outcomes[1], Reject)


def test_a_large_batch_is_split_to_fit(moto_stack: MotoStack) -> None:
    rows = [reading(i) for i in range(1, 801)]
    handler = make_handler(moto_stack, max_body_bytes=6 * 1024)
    assert handler.handle([message_of(envelope_of("lineage", rows))]) == [ACK]
    sent = moto_stack.drain(moto_stack.config.queues.enriched)
    ids = sorted(r["sensor_data"]["id"] for m in sent for r in m.envelope().records)
    assert ids == list(range(1, 801))
    assert len(sent) > 1  # lineage made the batch too large for one message
    assert all(decode(m.body, m.attributes).records for m in sent)


def test_openlineage_events_start_once_and_complete_at_shutdown(
    moto_stack: MotoStack, tmp_path: Path
) -> None:
    path = tmp_path / "ol" / "events.jsonl"
    lineage = process_lineage(
        stage="enricher", pipeline_name="sensorpipe", pipeline_version="2.0.0", env=BACALHAU
    )
    handler = make_handler(moto_stack, OpenLineageLog(path, lineage, namespace="sensorpipe"))
    handler.handle([message_of(envelope_of("lineage", [reading(1)]))])
    handler.handle([message_of(envelope_of("lineage", [reading(2)]))])
    handler.on_shutdown()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"]
    assert events[0]["job"]["facets"]["jobType"]["processingType"] == "STREAMING"
    assert events[0]["job"]["name"] == "sensorpipe.enricher"
    assert events[0]["run"]["facets"]["sensorpipe"]["execution_id"] == "e-1"
