"""Helpers for the notifier's LocalStack tests with real service processes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Envelope
from sensorpipe.objects import read_jsonl
from sensorpipe.runtime import EnvelopeProducer
from tests.conftest import Pipeline, make_pipeline
from tests.services.notifier.reference import expected_bursts
from tests.services.notifier.stream import Stream, simulate

RULE = {"min_anomalies": 3, "window_seconds": 60, "cooldown_seconds": 120}
Bursts = dict[str, list[tuple[str, ...]]]


def notifier_pipeline(tmp_path: Path, endpoint: str, *, shards: int = 1) -> Pipeline:
    return make_pipeline(
        tmp_path,
        endpoint,
        {
            "queues": {"visibility_timeout_seconds": 5, "notify_shards": shards},
            "notification": RULE,
            "windowing": {"grace_seconds": 10, "idle_flush_seconds": 2},
            "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1},
        },
    )


def live_run(
    tmp_path: Path, endpoint: str, *, seed: int, shards: int = 1
) -> tuple[Pipeline, Stream, Bursts]:
    """A notifier pipeline with ``shards`` notify shards, the simulated stream for them,
    and the bursts the reference finds in it (what the live notifiers must publish)."""
    pipeline = notifier_pipeline(tmp_path, endpoint, shards=shards)
    stream = simulate(seed=seed, shards=shards)
    return pipeline, stream, sorted_bursts(expected(stream))


def start_notifier(
    pipeline: Pipeline, log_dir: Path, *, shard: int = 0, hold_s: float | None = None
) -> ServiceProcess:
    env = dict(pipeline.env)
    if hold_s is not None:
        env["SENSORPIPE_NOTIFIER_RECOVERY_HOLD_SECONDS"] = str(hold_s)
    return ServiceProcess("services.notifier", env, log_dir, args=["--shard", str(shard)]).start()


def send(pipeline: Pipeline, queue: str, envelopes: list[Envelope]) -> None:
    sqs = sqs_client()
    producer = EnvelopeProducer(sqs, pipeline.queue_url(queue), queue, service="test")
    producer.send(envelopes)


def expected(stream: Stream) -> Bursts:
    return expected_bursts(
        stream.on_time,
        min_anomalies=RULE["min_anomalies"],
        window_s=RULE["window_seconds"],
        cooldown_s=RULE["cooldown_seconds"],
    )


def metric(process: ServiceProcess, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (0 if none yet)."""
    total = 0.0
    for line in process.metrics_text().splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def queue_empty(pipeline: Pipeline, queue: str) -> bool:
    attrs = sqs_client().get_queue_attributes(
        QueueUrl=pipeline.queue_url(queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"])
        + int(attrs["ApproximateNumberOfMessagesNotVisible"])
        == 0
    )


def in_flight(pipeline: Pipeline, queue: str) -> int:
    attrs = sqs_client().get_queue_attributes(
        QueueUrl=pipeline.queue_url(queue), AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def settle(pipeline: Pipeline, processes: list[ServiceProcess], *, timeout_s: float = 40) -> None:
    """Wait until the input queues are drained and every location went quiet (idle flush),
    i.e. the 'sent' counters stop moving for longer than the idle period."""
    queues = pipeline.config.queues.notify_shard_names()
    wait_until(lambda: all(queue_empty(pipeline, q) for q in queues), timeout_s, "drained")
    hold = "sensorpipe_notifier_recovery_hold"
    wait_until(lambda: all(metric(p, hold) == 0 for p in processes), timeout_s, "holds over")
    last = -1.0
    stable_since = time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = sum(metric(p, "sensorpipe_notifier_notifications_total") for p in processes) + sum(
            metric(p, "sensorpipe_notifier_anomalies_total") for p in processes
        )
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 3.5:  # the idle flush (2 s) had its chance
            return
        time.sleep(0.5)
    raise AssertionError("the notifier never settled")


def read_notifications(pipeline: Pipeline, timeout_s: float = 20) -> list[dict[str, Any]]:
    """Receive and delete everything on the FIFO queue, until SQS counts none left."""
    sqs = sqs_client()
    name = pipeline.config.queues.notifications
    url = pipeline.queue_url(name)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
        ).get("Messages", [])
        for message in got:
            out.append(orjson.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if not got:
            if queue_empty(pipeline, name):
                return out
            time.sleep(0.2)
    raise AssertionError(f"{name} still holds messages after {timeout_s} s ({len(out)} read)")


def late_keys(pipeline: Pipeline) -> set[str]:
    """Reading keys the notifier wrote to the error bucket as late."""
    s3 = s3_client()
    bucket = pipeline.bucket("error")
    keys: set[str] = set()
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="late-anomalies/")
    for item in listing.get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        keys |= {entry["reading_key"] for entry in read_jsonl(body)}
    return keys


def as_bursts(notifications: list[dict[str, Any]]) -> Bursts:
    got: Bursts = {}
    for note in notifications:
        got.setdefault(note["location"], []).append(tuple(note["reading_keys"]))
    return {k: sorted(v) for k, v in got.items()}


def sorted_bursts(bursts: Bursts) -> Bursts:
    return {k: sorted(v) for k, v in bursts.items()}
