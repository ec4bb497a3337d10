"""Router unit tests against an in-memory AWS (moto)."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sensorpipe.envelope import Position, decode
from sensorpipe.objects import read_jsonl
from sensorpipe.records import stable_shard
from sensorpipe.runtime import ACK, Reject, Retry
from tests.keys import by_batch
from tests.services.router.conftest import (
    MotoPipeline,
    envelope,
    make_moto_pipeline,
    message,
    reading,
    record,
)

PARTITION_AUG31_23 = "year=2025/month=08/day=31/hour=23"
PARTITION_SEP01_00 = "year=2025/month=09/day=01/hour=00"


def across_midnight() -> list[dict[str, Any]]:
    """Five readings on both sides of an hour (and day and month) boundary."""
    stamps = [
        "2025-08-31T23:59:58.000+00:00",
        "2025-09-01T00:00:00.000+00:00",
        "2025-08-31T23:59:59.999+00:00",
        "2025-09-01T02:00:01.500+02:00",  # 00:00:01.5 UTC: partitioned by UTC hour
        "2025-09-01T00:59:59.999Z",
    ]
    return [record(reading(i + 1, ts), anomalous=i % 2 == 0) for i, ts in enumerate(stamps)]


def routed(name: str) -> float:
    value = REGISTRY.get_sample_value(
        "sensorpipe_router_records_routed_total", {"destination": name}
    )
    return value or 0.0


def test_raw_gets_sensor_data_only_one_object_per_hour(moto_pipeline: MotoPipeline) -> None:
    records = across_midnight()
    outcome = moto_pipeline.handler().handle([message(envelope("raw", records))])
    assert outcome == [ACK]
    lines = {by_batch(k): v for k, v in moto_pipeline.lines("raw").items()}
    assert sorted(lines) == [
        f"raw/{PARTITION_AUG31_23}/edge-b1.jsonl.gz",
        f"raw/{PARTITION_SEP01_00}/edge-b1.jsonl.gz",
    ]
    assert [r["id"] for r in lines[f"raw/{PARTITION_AUG31_23}/edge-b1.jsonl.gz"]] == [1, 3]
    assert [r["id"] for r in lines[f"raw/{PARTITION_SEP01_00}/edge-b1.jsonl.gz"]] == [2, 4, 5]
    # Lines are the source rows exactly as received: no quality, no lineage, no wrapper.
    by_id = {r["id"]: r for part in lines.values() for r in part}
    assert by_id == {r["sensor_data"]["id"]: r["sensor_data"] for r in records}
    assert moto_pipeline.objects("schematized") == {}
    assert moto_pipeline.objects("archival") == {}


def test_object_metadata_and_encoding(moto_pipeline: MotoPipeline) -> None:
    moto_pipeline.handler().handle([message(envelope("schematized", across_midnight()))])
    (key,) = [
        k
        for k in moto_pipeline.objects("schematized")
        if by_batch(k) == f"schematized/{PARTITION_SEP01_00}/edge-b1.jsonl.gz"
    ]
    head = moto_pipeline.head("schematized", key)
    assert head["Metadata"] == {
        "scenario": "schematized",
        "config-version": "7",
        "batch-id": "edge-b1",
        "record-count": "3",
        "first-event-time": "2025-09-01T00:00:00.000+00:00",
        "last-event-time": "2025-09-01T00:59:59.999+00:00",
    }
    assert head["ContentEncoding"] == "gzip"
    body = moto_pipeline.objects("schematized")[key]
    text = gzip.decompress(body).decode()
    assert text.count("\n") == 3 and text.endswith("\n")
    first = read_jsonl(body)[0]
    assert set(first) == {"sensor_data", "quality"}  # the full record


def test_archival_lineage_carries_every_hop_including_router(moto_pipeline: MotoPipeline) -> None:
    records = [record(reading(i, "2025-08-18T10:00:00.000+00:00"), lineage=True) for i in (1, 2)]
    moto_pipeline.handler().handle([message(envelope("lineage", records))])
    (lines,) = moto_pipeline.lines("archival").values()
    for line in lines:
        assert line["lineage"]["node_id"] == "node-1"  # the enricher's fields are kept
        assert [h["stage"] for h in line["lineage"]["hops"]] == [
            "uploader",
            "enricher",
            "validator",
            "router",
        ]
    assert [line["lineage"]["source_row_id"] for line in lines] == [1, 2]


def test_redelivery_overwrites_with_identical_bytes(moto_pipeline: MotoPipeline) -> None:
    records = [record(reading(i, "2025-08-18T10:00:00.000+00:00"), lineage=True) for i in (1, 2)]
    env = envelope("lineage", records)
    moto_pipeline.handler().handle([message(env)])
    before = moto_pipeline.objects("archival")
    # A fresh handler (a restarted replica) gets the same batch again.
    moto_pipeline.handler().handle([message(env), message(env)])
    assert moto_pipeline.objects("archival") == before


def test_sharding_is_complete_and_stable(moto_pipeline: MotoPipeline) -> None:
    records = [
        record(reading(i, f"2025-08-18T10:00:{i:02d}.000+00:00"), anomalous=i % 4 == 0)
        for i in range(60)
    ]
    env = envelope("notification", records, batch_id="edge-b9")
    queues = moto_pipeline.config.queues
    rounds = []
    for _ in range(2):
        assert moto_pipeline.handler().handle([message(env)]) == [ACK]
        aggregate = {
            q: [decode(m.body, m.attributes) for m in moto_pipeline.drain(q)]
            for q in queues.aggregate_shard_names()
        }
        notify = {
            q: [decode(m.body, m.attributes) for m in moto_pipeline.drain(q)]
            for q in queues.notify_shard_names()
        }
        rounds.append((aggregate, notify))
    first_agg, first_notify = rounds[0]
    ids_per_shard = {
        shard: [r["sensor_data"]["id"] for e in envs for r in e.records]
        for shard, envs in enumerate(first_agg.values())
    }
    # Complete: every record exactly once over all shards.
    assert sorted(i for ids in ids_per_shard.values() for i in ids) == list(range(60))
    # Keyed: each record sits on the shard of its sensor_id, so no sensor spans shards.
    for shard, envs in enumerate(first_agg.values()):
        for e in envs:
            assert e.batch_id == f"edge-b9.s{shard}"
            assert e.hops[-1]["stage"] == "router"
            for r in e.records:
                assert stable_shard(r["sensor_data"]["sensor_id"], 3) == shard
    assert sum(1 for ids in ids_per_shard.values() if ids) > 1  # really spread out
    # Notifier: anomalous records only, keyed by location.
    notified = []
    for shard, envs in enumerate(first_notify.values()):
        for e in envs:
            assert e.batch_id == f"edge-b9.s{shard}"
            for r in e.records:
                assert stable_shard(r["sensor_data"]["location"], 2) == shard
                notified.append(r["sensor_data"]["id"])
    assert sorted(notified) == [i for i in range(60) if i % 4 == 0]
    # Stable: the same batch routed again gives the same shards, ids and records.
    second_agg, second_notify = rounds[1]
    assert {q: [(e.batch_id, e.records) for e in envs] for q, envs in second_agg.items()} == {
        q: [(e.batch_id, e.records) for e in envs] for q, envs in first_agg.items()
    }
    assert {q: [e.records for e in envs] for q, envs in second_notify.items()} == {
        q: [e.records for e in envs] for q, envs in first_notify.items()
    }


def test_single_shard_keeps_the_batch_id(moto_aws: None) -> None:
    pipeline = make_moto_pipeline()
    records = [record(reading(i, "2025-08-18T10:00:00.000+00:00"), anomalous=True) for i in (1, 2)]
    pipeline.handler().handle([message(envelope("notification", records))])
    (agg,) = pipeline.drain(pipeline.config.queues.aggregate_shard_names()[0])
    (notify,) = pipeline.drain(pipeline.config.queues.notify_shard_names()[0])
    assert agg.attributes["batch-id"] == notify.attributes["batch-id"] == "edge-b1"
    assert len(decode(agg.body, agg.attributes).records) == 2


def test_no_anomalies_sends_nothing_to_the_notifier(moto_pipeline: MotoPipeline) -> None:
    records = [record(reading(i, "2025-08-18T10:00:00.000+00:00")) for i in range(5)]
    assert moto_pipeline.handler().handle([message(envelope("notification", records))]) == [ACK]
    for q in moto_pipeline.config.queues.notify_shard_names():
        assert moto_pipeline.drain(q) == []


def test_scenario_without_route_is_rejected_not_dropped(moto_pipeline: MotoPipeline) -> None:
    records = [record(reading(1, "2025-08-18T10:00:00.000+00:00"))]
    (outcome,) = moto_pipeline.handler().handle([message(envelope("mystery", records))])
    assert isinstance(outcome, Reject)
    assert "'mystery' has no route" in outcome.reason and "edge-b1" in outcome.reason
    for kind in ("raw", "schematized", "archival"):
        assert moto_pipeline.objects(kind) == {}


@pytest.mark.parametrize(
    ("records", "batch_id", "reason"),
    [
        ([{"reading": {"id": 1}}], "edge-b1", "record 0 has no 'sensor_data' object"),
        ([{"sensor_data": "not a row"}], "edge-b1", "record 0 has no 'sensor_data' object"),
        ([], "../escape", "'batch_id' is a string of 9 character(s)"),
    ],
)
def test_contract_breaking_batches_are_rejected(
    moto_pipeline: MotoPipeline, records: list[dict[str, Any]], batch_id: str, reason: str
) -> None:
    (outcome,) = moto_pipeline.handler().handle([message(envelope("raw", records, batch_id))])
    assert isinstance(outcome, Reject) and reason in outcome.reason


def test_poison_body_is_rejected(moto_pipeline: MotoPipeline) -> None:
    poison = message(envelope("raw", []))
    poison.body = "{not json"
    poison.attributes["content-encoding"] = "identity"
    (outcome,) = moto_pipeline.handler().handle([poison])
    assert isinstance(outcome, Reject) and "not a batch envelope" in outcome.reason


def test_records_without_event_time_are_kept_in_the_unknown_partition(
    moto_pipeline: MotoPipeline,
) -> None:
    rows = [reading(1, "2025-08-18T10:00:00.000+00:00"), reading(2, "yesterday"), reading(3, 5)]
    moto_pipeline.handler().handle([message(envelope("raw", [{"sensor_data": r} for r in rows]))])
    lines = {by_batch(k): v for k, v in moto_pipeline.lines("raw").items()}
    unknown = (
        "raw/year=__HIVE_DEFAULT_PARTITION__/month=__HIVE_DEFAULT_PARTITION__/"
        "day=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__/edge-b1.jsonl.gz"
    )
    assert [r["id"] for r in lines[unknown]] == [2, 3]
    (stored,) = [k for k in moto_pipeline.objects("raw") if by_batch(k) == unknown]
    assert moto_pipeline.head("raw", stored)["Metadata"]["first-event-time"] == "unknown"


def test_s3_failure_retries_and_nothing_is_acked(moto_pipeline: MotoPipeline) -> None:
    s3 = moto_pipeline.context.s3
    s3.delete_bucket(Bucket=moto_pipeline.bucket("raw"))
    records = [record(reading(1, "2025-08-18T10:00:00.000+00:00"))]
    (outcome,) = moto_pipeline.handler().handle([message(envelope("raw", records))])
    assert isinstance(outcome, Retry) and "to raw failed" in outcome.reason


def test_sqs_failure_after_archive_retries_and_redo_is_harmless(
    moto_pipeline: MotoPipeline,
) -> None:
    handler = moto_pipeline.handler()  # queue URLs resolved while the queue exists
    sqs = moto_pipeline.context.sqs
    shard0 = moto_pipeline.config.queues.aggregate_shard_names()[0]
    url = sqs.get_queue_url(QueueName=shard0)["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    records = [record(reading(i, "2025-08-18T10:00:00.000+00:00"), lineage=True) for i in range(30)]
    env = envelope("multi-destination", records)
    (outcome,) = handler.handle([message(env)])
    assert isinstance(outcome, Retry) and "aggregator" in outcome.reason
    archived = moto_pipeline.objects("archival")
    assert len(archived) == 1  # written before the failure; the redo rewrites it
    sqs.create_queue(QueueName=shard0)
    assert moto_pipeline.handler().handle([message(env)]) == [ACK]
    assert moto_pipeline.objects("archival") == archived


def test_metrics_count_records_per_destination(moto_pipeline: MotoPipeline) -> None:
    before = {d: routed(d) for d in ("archival", "aggregator", "notifier")}
    objects_before = (
        REGISTRY.get_sample_value(
            "sensorpipe_router_objects_written_total", {"destination": "archival"}
        )
        or 0.0
    )
    records = across_midnight()  # 5 records, 3 anomalous, 2 hour partitions
    moto_pipeline.handler().handle([message(envelope("notification", records))])
    assert routed("archival") - before["archival"] == 5
    assert routed("aggregator") - before["aggregator"] == 5
    assert routed("notifier") - before["notifier"] == 3
    objects_after = REGISTRY.get_sample_value(
        "sensorpipe_router_objects_written_total", {"destination": "archival"}
    )
    assert objects_after is not None and objects_after - objects_before == 2


def test_plain_jsonl_when_gzip_is_off(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORPIPE_ROUTER_GZIP_OBJECTS", "false")
    pipeline = make_moto_pipeline()
    records = [record(reading(1, "2025-08-18T10:00:00.000+00:00"))]
    pipeline.handler().handle([message(envelope("raw", records), compress=False)])
    ((key, body),) = pipeline.objects("raw").items()
    assert by_batch(key) == "raw/year=2025/month=08/day=18/hour=10/edge-b1.jsonl"
    assert body.startswith(b'{"anomaly_flag":0,')
    assert "ContentEncoding" not in pipeline.head("raw", key)


def test_parallel_routing_keeps_one_outcome_per_message_in_order(
    moto_pipeline: MotoPipeline,
) -> None:
    handler = moto_pipeline.handler()  # routes the messages of a receive in parallel
    good = [
        message(
            envelope("raw", [record(reading(i, "2025-08-18T10:00:00.000+00:00"))], batch_id=f"b{i}")
        )
        for i in range(6)
    ]
    lost = message(envelope("mystery", [], batch_id="b-lost"))
    outcomes = handler.handle([*good[:3], lost, *good[3:]])
    assert [type(o).__name__ for o in outcomes] == ["Ack"] * 3 + ["Reject"] + ["Ack"] * 3
    assert sorted(by_batch(k) for k in moto_pipeline.objects("raw")) == [
        f"raw/year=2025/month=08/day=18/hour=10/b{i}.jsonl.gz" for i in range(6)
    ]
    handler.on_shutdown()


@pytest.mark.parametrize("scenario", ["notification", "schematized", "raw"])
def test_a_sequenced_batch_reaches_every_stateful_shard_in_every_scenario(
    moto_pipeline: MotoPipeline, scenario: str
) -> None:
    """Every aggregator and notifier shard hears of every part of a source's batch (with
    no records where none are its own, or the scenario does not feed it), stamped with
    the part's position and its greatest event time: that is how the stateful stages
    know how far the source got."""
    stamps = ["2025-08-18T10:00:01.000+00:00", "2025-08-18T12:00:09.250+02:00"]
    records = [record(reading(i, stamps[i % 2]), anomalous=i == 0) for i in range(4)]
    env = envelope(scenario, records, batch_id="edge-g0-000001-000004")
    env.position = Position("edge-g0", 7, "1")
    assert moto_pipeline.handler().handle([message(env)]) == [ACK]
    queues = moto_pipeline.config.queues
    feeds = {"aggregator": scenario == "notification", "notifier": scenario == "notification"}
    for stage, names in (
        ("aggregator", queues.aggregate_shard_names()),
        ("notifier", queues.notify_shard_names()),
    ):
        got = [decode(m.body, m.attributes) for q in names for m in moto_pipeline.drain(q)]
        assert len(got) == len(names), f"{stage}: one envelope per shard"
        for shard_envelope in got:
            assert shard_envelope.position == Position("edge-g0", 7, "1")
            # 12:00:09.25+02:00 is 10:00:09.25 UTC, the latest of the part.
            assert shard_envelope.max_event_us == 1755511209250000
        carried = sum(len(e.records) for e in got)
        if not feeds[stage]:
            assert carried == 0
        elif stage == "aggregator":
            assert carried == 4
        else:
            assert carried == 1  # the one anomalous record


def test_an_unsequenced_batch_goes_only_to_shards_with_records(
    moto_pipeline: MotoPipeline,
) -> None:
    """A replay has no position: there is no progress to report, nothing empty is sent."""
    records = [record(reading(i, "2025-08-18T10:00:00.000+00:00")) for i in range(1)]
    assert moto_pipeline.handler().handle([message(envelope("schematized", records))]) == [ACK]
    queues = moto_pipeline.config.queues
    for q in [*queues.aggregate_shard_names(), *queues.notify_shard_names()]:
        assert moto_pipeline.drain(q) == []
