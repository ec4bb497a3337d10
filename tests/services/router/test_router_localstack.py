"""The router as a real process against LocalStack: objects land, shards fill, the
input is deleted, and a batch with no route ends in the DLQ with its reason."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Envelope, decode
from sensorpipe.objects import read_jsonl
from sensorpipe.records import stable_shard
from sensorpipe.runtime import EnvelopeProducer, Message
from tests.conftest import Pipeline, make_pipeline
from tests.keys import by_batch
from tests.services.router.conftest import envelope, reading, record

pytestmark = pytest.mark.integration

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout_s: float = 20.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.fixture(scope="module")
def routed(
    localstack: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, ServiceProcess]]:
    tmp = tmp_path_factory.mktemp("router")
    pipeline = make_pipeline(
        tmp,
        localstack,
        {
            "queues": {"visibility_timeout_seconds": 5, "aggregate_shards": 2},
            "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1},
        },
    )
    router = ServiceProcess("services.router", pipeline.env, Path(tmp) / "logs").start()
    yield pipeline, router
    router.terminate()


def send(pipeline: Pipeline, env: Envelope) -> None:
    name = pipeline.config.queues.validated
    EnvelopeProducer(sqs_client(), pipeline.queue_url(name), name, service="test").send([env])


def receive_all(pipeline: Pipeline, queue: str, expected: int) -> list[Message]:
    sqs, url = sqs_client(), pipeline.queue_url(queue)
    got: list[Message] = []

    def probe() -> list[Message] | None:
        for raw in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", []):
            got.append(Message.from_sqs(dict(raw), queue))
        return got if len(got) >= expected else None

    return eventually(probe)


def bucket_lines(pipeline: Pipeline, kind: str) -> dict[str, list[dict[str, Any]]]:
    s3, bucket = s3_client(), pipeline.bucket(kind)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: read_jsonl(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys}


def test_batch_is_archived_and_sharded(routed: tuple[Pipeline, ServiceProcess]) -> None:
    pipeline, router = routed
    start = datetime(2025, 8, 18, 10, 59, 50, tzinfo=UTC)
    records = [
        record(reading(i, (start + timedelta(seconds=i)).isoformat()), lineage=True)
        for i in range(20)
    ]
    send(pipeline, envelope("multi-destination", records, batch_id="edge-it1"))
    archived = eventually(
        lambda: lines if len(lines := bucket_lines(pipeline, "archival")) == 2 else None
    )
    assert sorted(by_batch(k) for k in archived) == [
        "archival/year=2025/month=08/day=18/hour=10/edge-it1.jsonl.gz",
        "archival/year=2025/month=08/day=18/hour=11/edge-it1.jsonl.gz",
    ]
    assert sorted(r["sensor_data"]["id"] for rs in archived.values() for r in rs) == list(range(20))
    shards = pipeline.config.queues.aggregate_shard_names()
    seen = []
    for shard, queue in enumerate(shards):
        (msg,) = receive_all(pipeline, queue, 1)
        forwarded = decode(msg.body, msg.attributes)
        assert forwarded.batch_id == f"edge-it1.s{shard}"
        for r in forwarded.records:
            assert stable_shard(r["sensor_data"]["sensor_id"], 2) == shard
            seen.append(r["sensor_data"]["id"])
    assert sorted(seen) == list(range(20))
    # Acknowledged only now: the validated queue is empty, nothing in flight.
    attrs = sqs_client().get_queue_attributes(
        QueueUrl=pipeline.queue_url(pipeline.config.queues.validated),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attrs == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
    metrics = router.metrics_text()
    assert 'sensorpipe_router_records_routed_total{destination="archival"} 20.0' in metrics
    assert 'sensorpipe_router_objects_written_total{destination="archival"} 2.0' in metrics


def test_scenario_without_route_lands_in_the_dlq_with_its_reason(
    routed: tuple[Pipeline, ServiceProcess],
) -> None:
    pipeline, _router = routed
    records = [record(reading(1, "2025-08-18T10:00:00.000+00:00"))]
    send(pipeline, envelope("retired-scenario", records, batch_id="edge-it2"))
    dlq = pipeline.config.queues.dlq_name(pipeline.config.queues.validated)
    (dead,) = receive_all(pipeline, dlq, 1)
    assert dead.attributes["batch-id"] == "edge-it2"
    assert dead.attributes["failed-service"] == "router"
    assert "'retired-scenario' has no route" in dead.attributes["failure-reason"]
    assert decode(dead.body, dead.attributes).records == records  # kept whole
    assert not any("edge-it2" in key for key in bucket_lines(pipeline, "raw"))
