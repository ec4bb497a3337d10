"""End to end, per scenario: simulator -> uploader -> enricher -> validator -> router.

One provisioned pipeline and one set of service processes serve the whole module. Each
scenario gets its own simulated dataset (known valid, invalid and anomalous rows from
the simulator's manifest); the test then checks, by row id, that every bucket holds
exactly what the scenario promises, the error bucket exactly the invalid rows with the
rule they break, and that ``in = out`` holds.

Redelivery (the same validated message again) must leave every object byte-identical.
A replay (the uploader again from a reset checkpoint) is a new processing run: it must
rewrite the same keys with the same metadata, byte for byte where records carry no
processing time (raw and error buckets), and otherwise identical but for the processing
timestamps (``quality.validated_at``, ``lineage.processed_at``, hop times).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from sensorpipe.aws import sqs_client
from sensorpipe.envelope import Envelope, decode
from sensorpipe.objects import hive_partition, parse_event_time, read_jsonl
from tests.conftest import make_pipeline
from tests.e2e.stack import SERVICES, Dataset, Snapshot, Stack, eventually, new_lines
from tests.keys import by_batch

pytestmark = pytest.mark.e2e

ROWS = 240
BATCH = 80  # three batches per dataset
BATCHES = math.ceil(ROWS / BATCH)
FILTER_RULE = "drop_anomalous_status"  # the packaged default business rule
TIMEOUT_S = 60.0
# Replayed after their first pass: raw (all bytes), filtered (error bucket bytes),
# lineage (archival records).
REPLAYED = ("raw", "filtered", "lineage")


@pytest.fixture(scope="module")
def stack(localstack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    pipeline = make_pipeline(
        tmp,
        localstack,
        {
            "queues": {"visibility_timeout_seconds": 10},
            "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1},
        },
    )
    running = Stack(pipeline, tmp)
    try:
        for name in SERVICES:
            running.start(name)
        yield running
    finally:
        running.stop_all()


@dataclass
class Expected:
    """Where each row id of a dataset must end for one scenario."""

    buckets: dict[str, set[int]] = field(default_factory=dict)
    rejected: set[int] = field(default_factory=set)
    filtered: set[int] = field(default_factory=set)
    aggregated: set[int] | None = None
    notified: bool = False
    lineage: bool = False
    validated: bool = False


def expected_for(scenario: str, data: Dataset) -> Expected:
    valid, invalid = data.valid, set(data.invalid)
    if scenario == "raw":
        return Expected(buckets={"raw": data.ids})
    if scenario == "lineage":
        return Expected(buckets={"archival": data.ids}, lineage=True)
    base = Expected(rejected=invalid, validated=True)
    if scenario == "schematized":
        base.buckets = {"schematized": valid}
    elif scenario == "filtered":
        base.buckets = {"schematized": valid - data.flagged}
        base.filtered = data.flagged
    elif scenario == "aggregated":
        base.aggregated, base.lineage = valid, True
    elif scenario in ("multi-destination", "notification"):
        base.buckets = {"archival": valid}
        base.aggregated, base.lineage = valid, True
        base.notified = scenario == "notification"
    else:
        raise AssertionError(f"no expectation for {scenario}")
    return base


def run_scenario(
    stack: Stack, scenario: str, seed: int, *, state: str | None = None
) -> tuple[Dataset, Snapshot, Snapshot]:
    """Set the scenario, simulate and upload a dataset, wait until the router acked every
    batch; returns the dataset and the bucket snapshots before and after."""
    stack.drain_shard_queues()  # leftovers of an earlier failed test must not count
    stack.set_scenario(scenario)
    data = stack.simulate(f"{scenario}-{seed}", seed, ROWS, "2025-08-18T10:59:57+00:00")
    before = stack.snapshot()
    acked = stack.router_acked()
    stack.upload(data, state or f"state-{scenario}-{seed}", BATCH)
    eventually(
        lambda: stack.router_acked() >= acked + BATCHES, TIMEOUT_S, f"{scenario}: router acks"
    )
    return data, before, stack.snapshot()


def ids_of(lines: dict[str, list[dict[str, Any]]], project: str | None) -> list[int]:
    return [(line[project] if project else line)["id"] for part in lines.values() for line in part]


def check_objects(
    scenario: str, kind: str, before: Snapshot, after: Snapshot
) -> dict[str, list[dict[str, Any]]]:
    """New objects of a bucket: Hive key layout and metadata that matches the lines."""
    lines = new_lines(before, after, kind)
    for key, part in lines.items():
        _etag, meta, _body = after[(kind, key)]
        prefix, *columns, name = key.split("/")
        assert prefix == kind and by_batch(name) == f"{meta['batch-id']}.jsonl.gz", key
        assert meta["scenario"] == scenario and meta["record-count"] == str(len(part))
        first, last = meta["first-event-time"], meta["last-event-time"]
        if first == "unknown":  # unreadable timestamps, kept when nothing validates them
            assert scenario in ("raw", "lineage")
            assert all(c.endswith("=__HIVE_DEFAULT_PARTITION__") for c in columns)
            continue
        partition = "/".join(columns)
        assert hive_partition(parse_event_time(first)) == partition, key
        assert hive_partition(parse_event_time(last)) == partition, key
        assert first <= last
    return lines


@pytest.mark.parametrize(
    ("scenario", "seed"),
    [
        ("raw", 11),
        ("schematized", 12),
        ("filtered", 13),
        ("lineage", 14),
        ("aggregated", 15),
        ("multi-destination", 16),
        ("notification", 17),
    ],
)
def test_scenario_lands_every_row_in_its_place(stack: Stack, scenario: str, seed: int) -> None:
    data, before, after = run_scenario(stack, scenario, seed)
    expect = expected_for(scenario, data)
    queues = stack.pipeline.config.queues
    placed: list[int] = []
    # Destination buckets: exactly the expected rows, each once.
    for kind in ("raw", "schematized", "archival"):
        lines = check_objects(scenario, kind, before, after)
        ids = ids_of(lines, None if kind == "raw" else "sensor_data")
        assert sorted(ids) == sorted(expect.buckets.get(kind, set())), kind
        placed += ids
        if kind == "raw":
            assert {line["id"]: line for p in lines.values() for line in p} == {
                i: data.rows[i] for i in ids
            }  # as received: the source row, nothing added
        for part in lines.values() if kind != "raw" else ():
            for line in part:
                assert line["sensor_data"] == data.rows[line["sensor_data"]["id"]]
                assert ("quality" in line) == expect.validated
                if expect.validated and line["sensor_data"]["id"] in data.anomalous:
                    assert line["quality"]["anomalous"] is True
                if expect.lineage:
                    check_lineage(line, scenario, validated=expect.validated)
    # The error bucket: invalid rows with the rule the simulator broke, filtered rows
    # with the business rule's name, nothing else.
    errors = new_lines(before, after, "error")
    rejected = {k: v for k, v in errors.items() if k.startswith("rejected/")}
    filtered = {k: v for k, v in errors.items() if k.startswith("filtered/")}
    assert set(errors) == set(rejected) | set(filtered)
    rejected_ids = ids_of(rejected, "record")
    assert sorted(rejected_ids) == sorted(expect.rejected)
    for line in (line for part in rejected.values() for line in part):
        broken = data.invalid[line["record"]["id"]]
        assert (broken["field"], broken["rule"]) in {
            (e["field"], e["rule"]) for e in line["errors"]
        }
    filtered_ids = ids_of(filtered, "record")
    assert sorted(filtered_ids) == sorted(expect.filtered)
    assert all(line["rule"] == FILTER_RULE for part in filtered.values() for line in part)
    # Sharded stages: every valid row to the aggregator, anomalous ones to the notifier.
    aggregated = [
        r for q in queues.aggregate_shard_names() for e in stack.drain(q) for r in e.records
    ]
    notified = [r for q in queues.notify_shard_names() for e in stack.drain(q) for r in e.records]
    if expect.aggregated is not None:
        assert sorted(r["sensor_data"]["id"] for r in aggregated) == sorted(expect.aggregated)
        if not expect.buckets:  # the aggregator is the valid rows' only destination
            placed += [r["sensor_data"]["id"] for r in aggregated]
    else:
        assert aggregated == []
    if expect.notified:
        # The aggregator gets each reading with the validator's anomaly mark only.
        assert all(set(r) == {"sensor_data", "anomalous"} for r in aggregated)
        anomalous = {r["sensor_data"]["id"] for r in aggregated if r["anomalous"]}
        assert data.anomalous and data.anomalous <= anomalous  # the simulator's, at least
        assert sorted(r["sensor_data"]["id"] for r in notified) == sorted(anomalous)
    else:
        assert notified == []
    # in = out: every row in exactly one named place.
    assert sorted(placed + rejected_ids + filtered_ids) == sorted(data.ids)
    assert len(data.valid) + len(data.invalid) == data.manifest["rows"] == ROWS
    if scenario in REPLAYED:
        assert_replay_overwrites_in_place(stack, data, after)


def check_lineage(line: dict[str, Any], scenario: str, *, validated: bool) -> None:
    lineage = line["lineage"]
    assert lineage["source_row_id"] == line["sensor_data"]["id"]
    assert lineage["scenario"] == scenario
    stages = [hop["stage"] for hop in lineage["hops"]]
    assert stages == ["uploader", "enricher", *(["validator"] if validated else []), "router"]


def test_redelivered_batches_leave_the_buckets_byte_identical(stack: Stack) -> None:
    """The router is paused so the validated batches can be copied, then routed, then
    sent again: every object keeps its key, ETag and bytes."""
    queues = stack.pipeline.config.queues
    stack.stop("router")
    stack.drain_shard_queues()
    stack.set_scenario("notification")
    data = stack.simulate("redelivery", 21, ROWS, "2025-08-19T23:59:58+00:00")
    stack.upload(data, "state-redelivery", BATCH)
    captured = capture_validated(stack, BATCHES)
    before = stack.snapshot()
    stack.start("router")
    resend(stack, captured)
    eventually(lambda: stack.router_acked() >= BATCHES, TIMEOUT_S, "first routing")
    routed = stack.snapshot()
    archived = new_lines(before, routed, "archival")
    assert sorted(ids_of(archived, "sensor_data")) == sorted(data.valid)
    assert any("day=19/hour=23" in k for k in archived) and any(
        "day=20/hour=00" in k for k in archived
    )
    resend(stack, captured)
    eventually(lambda: stack.router_acked() >= 2 * BATCHES, TIMEOUT_S, "redelivery")
    assert stack.snapshot() == routed
    # The shard queues got each batch twice, under the same batch ids (the consumers'
    # de-duplication key).
    forwarded = [e.batch_id for q in queues.aggregate_shard_names() for e in stack.drain(q)]
    assert sorted(forwarded) == sorted(2 * [e.batch_id for e in captured_envelopes(captured)])


def capture_validated(stack: Stack, count: int) -> list[tuple[str, dict[str, str]]]:
    sqs = sqs_client()
    url = stack.pipeline.queue_url(stack.pipeline.config.queues.validated)
    captured: list[tuple[str, dict[str, str]]] = []

    def probe() -> bool:
        for m in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", []):
            attributes = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
            captured.append((m["Body"], attributes))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(captured) >= count

    eventually(probe, TIMEOUT_S, "validated batches")
    return captured


def captured_envelopes(captured: list[tuple[str, dict[str, str]]]) -> list[Envelope]:
    return [decode(body, attributes) for body, attributes in captured]


def resend(stack: Stack, captured: list[tuple[str, dict[str, str]]]) -> None:
    sqs = sqs_client()
    url = stack.pipeline.queue_url(stack.pipeline.config.queues.validated)
    for body, attributes in captured:
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            },
        )


# Processing-time stamps: a replay is a new processing run, so these (and only these)
# may differ; everything else must come back byte for byte.
def without_processing_times(line: dict[str, Any]) -> dict[str, Any]:
    out = dict(line)
    if isinstance(out.get("quality"), dict):
        out["quality"] = {k: v for k, v in out["quality"].items() if k != "validated_at"}
    if isinstance(out.get("lineage"), dict):
        lineage = {k: v for k, v in out["lineage"].items() if k != "processed_at"}
        lineage["hops"] = [{k: v for k, v in h.items() if k != "at"} for h in lineage["hops"]]
        out["lineage"] = lineage
    return out


def assert_replay_overwrites_in_place(stack: Stack, data: Dataset, first: Snapshot) -> None:
    """Re-run the uploader from a reset checkpoint (same controller version): every key
    comes back once; objects without processing-time stamps come back byte for byte."""
    acked = stack.router_acked()
    stack.upload(data, f"replay-{data.db.stem}", BATCH)
    eventually(lambda: stack.router_acked() >= acked + BATCHES, TIMEOUT_S, "replay acks")
    second = stack.snapshot()
    assert set(second) == set(first)  # same keys: nothing duplicated
    for (kind, key), (etag, meta, body) in first.items():
        again = second[(kind, key)]
        if kind in ("raw", "error"):
            assert again == (etag, meta, body), key
        assert again[1] == meta, key
        assert [without_processing_times(x) for x in read_jsonl(again[2])] == [
            without_processing_times(x) for x in read_jsonl(body)
        ], key
