"""What a stage learns from a received message before, and instead of, decoding it."""

from __future__ import annotations

import pytest

from sensorpipe.config import PipelineConfig, load_pipeline_config
from sensorpipe.envelope import ATTR_RECORD_COUNT, ATTR_SCENARIO, Envelope, encode
from sensorpipe.runtime import Message, Reject


@pytest.fixture(scope="module")
def config() -> PipelineConfig:
    return load_pipeline_config()


def message_of(scenario: str, records: int = 2) -> Message:
    envelope = Envelope(
        batch_id="edge-1-000001",
        scenario=scenario,
        config_version=1,
        records=[{"sensor_data": {"id": i}} for i in range(records)],
        source="edge-1",
    )
    encoded = encode(envelope, compress=True)
    return Message("m-1", "r-1", encoded.body, dict(encoded.attributes))


def test_passed_through_keeps_body_and_attributes_without_decoding() -> None:
    message = message_of("raw", records=3)
    message.body = "not an envelope at all"
    passed = message.passed_through()
    assert passed.body == "not an envelope at all"
    assert passed.attributes == message.attributes
    assert passed.attributes is not message.attributes
    assert (passed.batch_id, passed.record_count) == ("edge-1-000001", 3)


@pytest.mark.parametrize(("announced", "count"), [("5", 5), ("", 0), ("-1", 0), ("x", 0)])
def test_announced_records_is_zero_when_absent_or_garbled(announced: str, count: int) -> None:
    message = message_of("raw")
    message.attributes[ATTR_RECORD_COUNT] = announced
    assert message.announced_records() == count


def test_route_reads_the_attribute_or_else_the_body(config: PipelineConfig) -> None:
    name = config.scenario_names()[0]
    message = message_of(name)
    message.body = "never decoded when the attribute names the scenario"
    assert message.route(config) == config.route(name)
    bare = message_of(name)
    del bare.attributes[ATTR_SCENARIO]
    assert bare.route(config) == config.route(name)
    poison_bare = message_of(name)
    del poison_bare.attributes[ATTR_SCENARIO]
    poison_bare.body = "garbage"
    poison = poison_bare.route(config)
    assert isinstance(poison, Reject) and "not a batch envelope" in poison.reason
    unrouted = message_of("teleport").route(config)
    assert isinstance(unrouted, Reject) and "'teleport' has no route" in unrouted.reason


def test_stamped_envelope_rejects_poison_and_contradictions(config: PipelineConfig) -> None:
    name = config.scenario_names()[0]
    good = message_of(name).stamped_envelope()
    assert isinstance(good, Envelope) and good.scenario == name
    poison = message_of(name)
    poison.body = "garbage"
    rejected = poison.stamped_envelope()
    assert isinstance(rejected, Reject) and "not a batch envelope" in rejected.reason
    liar = message_of(name)
    liar.attributes[ATTR_SCENARIO] = "teleport"
    contradiction = liar.stamped_envelope()
    assert isinstance(contradiction, Reject)
    assert "attributes say 'teleport'" in contradiction.reason
