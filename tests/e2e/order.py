"""What the order-independence suite needs: a fleet's database with its independent
expectation, the messages the stateless stages produced for the stateful ones (to
deliver again in any order), and the windows and bursts a run wrote.

The expectation is plain Python over the database (no service code): the valid rows
(the simulator's manifest), one reading per (sensor, instant), per (sensor, 1-minute
window) count, missing, mean, min, max and sample stddev of every metric and the
anomaly count; bursts from tests/services/notifier/reference.py over the anomalous
readings (the sensor's own flag, or a value beyond the spec's thresholds).
"""

from __future__ import annotations

import gzip
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import default_file
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.records import METRICS
from tests.conftest import Pipeline
from tests.e2e.stack import Dataset
from tests.services.notifier.reference import expected_bursts, reading_key, to_us

WINDOW_US = 60_000_000


@dataclass(frozen=True)
class Raw:
    """A message as it sat in a queue: body and attributes, to send again as is."""

    queue_role: str  # "aggregate-N" / "notify-N"
    body: str
    attributes: dict[str, str]
    stream: str
    seq: int
    part: str


@dataclass
class Expectation:
    windows: dict[tuple[str, int], dict[str, Any]]  # (sensor, window start µs)
    bursts: set[tuple[str, ...]]  # member reading keys of every burst
    last_event_us: int


def anomalous(row: dict[str, Any], thresholds: dict[str, dict[str, float]]) -> bool:
    if row.get("anomaly_flag") == 1:
        return True
    for metric, limits in thresholds.items():
        value = row.get(metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if value < limits.get("low", -math.inf) or value > limits.get("high", math.inf):
            return True
    return False


def expectation(data: Dataset, notification: dict[str, float]) -> Expectation:
    spec = yaml.safe_load(default_file("sensor_validation_spec_v2.yaml").read_text())
    thresholds = spec["anomaly_detection"]["thresholds"]
    first: dict[tuple[str, int], dict[str, Any]] = {}
    for row_id in sorted(data.valid):
        row = data.rows[row_id]
        first.setdefault((row["sensor_id"], to_us(row["timestamp"])), row)
    groups: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for (sensor, at), row in first.items():
        groups[(sensor, at // WINDOW_US * WINDOW_US)].append((at, row))
    windows: dict[tuple[str, int], dict[str, Any]] = {}
    for ident, members in groups.items():
        rows = [row for _, row in sorted(members, key=lambda m: m[0])]
        metrics = {}
        for name in METRICS:
            values = [float(r[name]) for r in rows if isinstance(r.get(name), (int, float))]
            metrics[name] = {
                "count": len(values),
                "missing": len(rows) - len(values),
                "mean": statistics.fmean(values) if values else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "stddev": statistics.stdev(values) if len(values) > 1 else None,
            }
        windows[ident] = {
            "record_count": len(rows),
            "anomaly_count": sum(anomalous(r, thresholds) for r in rows),
            "metrics": metrics,
            "first_reading_at": _canonical(rows[0]["timestamp"]),
            "last_reading_at": _canonical(rows[-1]["timestamp"]),
        }
    flagged = [{"sensor_data": row} for row in first.values() if anomalous(row, thresholds)]
    per_location = expected_bursts(
        flagged,
        min_anomalies=int(notification["min_anomalies"]),
        window_s=notification["window_seconds"],
        cooldown_s=notification["cooldown_seconds"],
    )
    bursts = {burst for found in per_location.values() for burst in found}
    return Expectation(windows, bursts, max(at for _, at in first))


def _canonical(stamp: str) -> str:
    """An instant spelt in UTC with microseconds and ``Z`` (the oracle's own spelling)."""
    return reading_key({"sensor_data": {"sensor_id": "", "timestamp": stamp}})[1:]


def window_problems(
    docs: dict[tuple[str, int], dict[str, Any]], want: dict[tuple[str, int], dict[str, Any]]
) -> list[str]:
    problems = []
    if set(docs) != set(want):
        problems.append(
            f"windows: {len(set(want) - set(docs))} missing, {len(set(docs) - set(want))} extra"
        )
    for ident in sorted(set(docs) & set(want)):
        doc, expected = docs[ident], want[ident]
        for name in ("record_count", "anomaly_count", "first_reading_at", "last_reading_at"):
            if doc[name] != expected[name]:
                problems.append(f"{ident} {name}: {doc[name]!r} != {expected[name]!r}")
        for metric, figures in expected["metrics"].items():
            for name, value in figures.items():
                got = doc["metrics"][metric][name]
                same = (
                    got == value
                    if value is None or got is None or isinstance(value, int)
                    else math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12)
                )
                if not same:
                    problems.append(f"{ident} {metric}.{name}: {got!r} != {value!r}")
    return problems


# -- messages between the stages ----------------------------------------------------


def stateful_queues(pipeline: Pipeline) -> dict[str, str]:
    """role -> queue name of every aggregate and notify shard queue."""
    queues = pipeline.config.queues
    out = {f"aggregate-{i}": q for i, q in enumerate(queues.aggregate_shard_names())}
    out.update({f"notify-{i}": q for i, q in enumerate(queues.notify_shard_names())})
    return out


def depth(pipeline: Pipeline, names: Iterable[str]) -> int:
    sqs = sqs_client()
    total = 0
    for name in names:
        attrs = sqs.get_queue_attributes(
            QueueUrl=pipeline.queue_url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        total += sum(int(v) for v in attrs.values())
    return total


def wait_for(probe: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.3)


def capture(pipeline: Pipeline) -> list[Raw]:
    """Take every message off the stateful stages' queues, in arrival order."""
    from sensorpipe.envelope import decode

    sqs = sqs_client()
    out: list[Raw] = []
    for role, name in stateful_queues(pipeline).items():
        url = pipeline.queue_url(name)
        while True:
            got = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not got:
                break
            for m in got:
                attributes = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
                position = decode(m["Body"], attributes).position
                assert position is not None, "every message of an upload has a position"
                out.append(
                    Raw(role, m["Body"], attributes, position.stream, position.seq, position.part)
                )
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
    return out


def send(pipeline: Pipeline, messages: list[Raw], pause_s: float = 0.0) -> None:
    """Deliver captured messages to the same roles of another pipeline, in list order."""
    sqs = sqs_client()
    urls = {role: pipeline.queue_url(name) for role, name in stateful_queues(pipeline).items()}
    for message in messages:
        sqs.send_message(
            QueueUrl=urls[message.queue_role],
            MessageBody=message.body,
            MessageAttributes={
                k: {"DataType": "String", "StringValue": v} for k, v in message.attributes.items()
            },
        )
        if pause_s:
            time.sleep(pause_s)


# -- what a run wrote ------------------------------------------------------------------


@dataclass
class Outcome:
    documents: dict[tuple[str, int], bytes]  # window -> its line's bytes in its page
    bursts: set[tuple[str, ...]]  # member reading keys, from the ledger
    burst_ids: set[str]
    notifications: int  # messages on the FIFO queue
    late: int  # objects in late/ and late-anomalies/
    logs: list[str] = field(default_factory=list)

    def windows(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {k: orjson.loads(v) for k, v in self.documents.items()}


def _keys(bucket: str, prefix: str) -> list[str]:
    s3 = s3_client()
    keys: list[str] = []
    pending = [prefix]
    while pending:  # walk '/' levels: LocalStack lists at most 1,000 keys of a flat prefix
        current = pending.pop()
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=current, Delimiter="/"
        ):
            keys.extend(o["Key"] for o in page.get("Contents", []))
            pending.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return keys


def outcome(pipeline: Pipeline) -> Outcome:
    s3, sqs = s3_client(), sqs_client()
    documents: dict[tuple[str, int], bytes] = {}
    for key in _keys(pipeline.bucket("aggregated"), "1-minute/"):
        body = s3.get_object(Bucket=pipeline.bucket("aggregated"), Key=key)["Body"].read()
        # A page: one line per window, the bytes the aggregator wrote for it.
        for line in gzip.decompress(body).split(b"\n"):
            if line:
                doc = orjson.loads(line)
                documents[(doc["sensor_id"], to_us(doc["window_start"]))] = line
    bursts, ids = set(), set()
    for key in _keys(pipeline.bucket("archival"), "notifications/"):
        body = orjson.loads(
            s3.get_object(Bucket=pipeline.bucket("archival"), Key=key)["Body"].read()
        )
        bursts.add(tuple(body["reading_keys"]))
        ids.add(body["burst_id"])
    url = pipeline.queue_url(pipeline.config.queues.notifications)
    notifications = 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        notifications += len(got)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
    late = sum(len(_keys(pipeline.bucket("error"), p)) for p in ("late/", "late-anomalies/"))
    return Outcome(documents, bursts, ids, notifications, late)


def metric(process: ServiceProcess, name: str) -> float:
    total = 0.0
    for line in process.metrics_text().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def settled(
    pipeline: Pipeline, aggregators: list[ServiceProcess], notifiers: list[ServiceProcess]
) -> bool:
    """Everything delivered was applied, checkpointed and acknowledged, every window
    written, every burst decided."""
    if depth(pipeline, stateful_queues(pipeline).values()):
        return False
    if any(metric(p, "sensorpipe_aggregator_open_windows") for p in aggregators):
        return False
    return not any(metric(p, "sensorpipe_notifier_pending_anomalies") for p in notifiers)


def utc(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1e6, UTC).isoformat()


def keys_of(records: Iterable[dict[str, Any]]) -> set[str]:
    return {reading_key(r) for r in records}


def log_problems(log_dir: Path) -> list[str]:
    found = []
    for log in log_dir.rglob("*.log"):
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            found.append(f"{log.name}: {text[text.index('Traceback') :][:1500]}")
    return found
