"""Chaos: the stateless stages run through a network that first loses connections at
random (mid-request, mid-response) and then goes down altogether, and must still lose
nothing. Every valid row lands in the schematized bucket exactly once, every invalid row
in the error bucket exactly once; whatever the faults pushed into a dead-letter queue
comes back with ``sensorpipe-replay dlq`` and is then accounted for too."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.devstack.localstack import aws_environment
from sensorpipe.objects import read_jsonl
from sensorpipe.replay.cli import main as replay
from tests.conftest import Pipeline, make_pipeline
from tests.e2e.stack import SERVICES, Stack, eventually
from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.e2e

ROWS, BATCH = 1200, 25  # 48 messages: work is still in flight when the faults hit


def _queue_depths(pipeline: Pipeline) -> dict[str, int]:
    sqs = sqs_client()
    config = pipeline.config.queues
    names = [config.ingest, config.enriched, config.validated]
    names += [QueueSettings.dlq_name(n) for n in names]
    out = {}
    for name in names:
        attrs = sqs.get_queue_attributes(
            QueueUrl=pipeline.queue_url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        out[name] = int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )
    return out


def _ids(pipeline: Pipeline, kind: str, prefix: str, path: tuple[str, ...]) -> Counter[int]:
    s3, bucket = s3_client(), pipeline.bucket(kind)
    ids: Counter[int] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            for line in read_jsonl(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()):
                value: Any = line
                for step in path:
                    value = value[step]
                ids[int(value)] += 1
    return ids


def test_a_lossy_network_and_an_outage_lose_nothing(localstack: str, tmp_path: Path) -> None:
    pipeline = make_pipeline(
        tmp_path,
        localstack,
        {
            "queues": {"visibility_timeout_seconds": 5},
            "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1, "retry_max_seconds": 4},
        },
    )
    proxy = FaultProxy(int(localstack.rsplit(":", 1)[1]), reset_probability=0.3)
    edge = Stack(pipeline, tmp_path)  # the edge talks to LocalStack directly
    through_proxy = Pipeline(
        pipeline.config,
        pipeline.config_path,
        {**pipeline.env, **aws_environment(proxy.endpoint)},
    )
    cloud = Stack(through_proxy, tmp_path)
    edge.set_scenario("schematized")
    data = edge.simulate("chaos", seed=11, rows=ROWS, replay_start="2026-11-21T08:00:00Z")
    try:
        for name in SERVICES:
            cloud.start(name)
        proxy.set_mode("flaky")
        edge.upload(data, "state", BATCH)
        time.sleep(6)
        resets_while_flaky = proxy.resets
        depths_at_outage = _queue_depths(pipeline)
        pending_at_outage = sum(depths_at_outage.values())
        proxy.set_mode("down")
        time.sleep(5)
        proxy.set_mode("healthy")

        eventually(
            lambda: sum(_queue_depths(pipeline).values()) == 0 or _dlq_only(pipeline),
            120,
            "the pipeline to settle after the faults",
        )
        dead = {q: n for q, n in _queue_depths(pipeline).items() if q.endswith("-dlq") and n}
        for dlq, _ in dead.items():
            source = dlq.removesuffix("-dlq")
            assert replay(["dlq", "--config", str(pipeline.config_path), "--queue", source]) == 0
        eventually(lambda: sum(_queue_depths(pipeline).values()) == 0, 120, "a drained pipeline")

        # The faults hit work in progress, and every service came through them alive.
        assert resets_while_flaky > 0
        assert pending_at_outage > 0, "the pipeline had finished before the outage"
        for name, process in cloud.services.items():
            assert process.health() is not None, f"{name} is down:\n{process.log_tail()}"
    finally:
        cloud.stop_all()
        proxy.close()

    schematized = _ids(pipeline, "schematized", "", ("sensor_data", "id"))
    rejected = _ids(pipeline, "error", "rejected/", ("record", "id"))
    assert set(schematized) == data.valid, (
        f"missing {sorted(data.valid - set(schematized))[:10]}, "
        f"unexpected {sorted(set(schematized) - data.valid)[:10]}"
    )
    assert set(rejected) == set(data.invalid)
    assert set(schematized.values()) == {1}, "a valid row landed twice"
    assert set(rejected.values()) == {1}, "an invalid row was rejected twice"


def _dlq_only(pipeline: Pipeline) -> bool:
    """Nothing left to process but what sits in dead-letter queues."""
    depths = _queue_depths(pipeline)
    return all(n == 0 for q, n in depths.items() if not q.endswith("-dlq"))
