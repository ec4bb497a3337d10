"""Helpers for the notifier's LocalStack tests with real ``python -m services.notifier``
processes: a pipeline, the simulated sources (stream.py) as the router sends them, a
paced feed of the shard queues, and reading back what the notifiers produced."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Envelope
from sensorpipe.objects import read_jsonl
from sensorpipe.runtime import EnvelopeProducer
from sensorpipe.stateful import checkpoint_key, read_checkpoint
from tests.conftest import Pipeline, make_pipeline
from tests.services.notifier.reference import expected_bursts
from tests.services.notifier.stream import (
    START,
    Source,
    key_of,
    random_split,
    reading,
    routed,
    simulate,
    us,
)

RULE = {"min_anomalies": 3, "window_seconds": 60, "cooldown_seconds": 120}
GRACE_S = 10.0
IDLE_S = 3.0
Bursts = dict[str, list[tuple[str, ...]]]


def notifier_pipeline(tmp_path: Path, endpoint: str, *, shards: int = 1) -> Pipeline:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return make_pipeline(
        tmp_path,
        endpoint,
        {
            "queues": {"visibility_timeout_seconds": 5, "notify_shards": shards},
            "notification": RULE,
            "windowing": {
                "grace_seconds": GRACE_S,
                "idle_flush_seconds": IDLE_S,
                "gap_timeout_seconds": 120,
            },
            "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1},
        },
    )


@dataclass
class Live:
    """Three sources, 15 minutes of event time, the bursts the reference finds in them,
    and three anomalies stream 0 writes in its last batch about its first seconds:
    late by any measure (every source got minutes further meanwhile), and a burst of
    their own if they were taken in."""

    source: Source
    planted_late: list[dict[str, Any]]
    expected: Bursts

    @property
    def bursts(self) -> int:
        return sum(map(len, self.expected.values()))


def live_source(seed: int) -> Live:
    source = simulate(
        seed,
        streams=3,
        sensors=6,
        seconds=900,
        batch_rows=120,
        spread_s=1.0,
        duplicate_rate=0.04,
        grace_s=GRACE_S,
        run="live",
    )
    last = max((b for b in source.batches if b.stream == source.streams[0]), key=lambda b: b.seq)
    planted = [
        reading(
            "Berlin",
            f"LATE{i}",
            START + timedelta(seconds=5 * (i + 1)),
            90_000 + i,
            batch_id=last.batch_id,
        )
        for i in range(3)
    ]
    last.rows += [(us(START + timedelta(seconds=5 * (i + 1))), r) for i, r in enumerate(planted)]
    expected = expected_bursts(
        source.on_time,
        min_anomalies=RULE["min_anomalies"],
        window_s=RULE["window_seconds"],
        cooldown_s=RULE["cooldown_seconds"],
    )
    return Live(source, planted, {k: sorted(v) for k, v in expected.items()})


def plan(live: Live, shards: int, seed: int) -> list[list[tuple[int, Envelope]]]:
    """Rounds of (shard, envelope) to send: round r holds batch r of every source (some
    split in pieces), and now and then a copy of a part sent up to 10 rounds earlier
    (sometimes split differently), as SQS redelivers."""
    rng = random.Random(seed)
    by_seq: dict[int, list[Any]] = {}
    for batch in live.source.batches:
        by_seq.setdefault(batch.seq, []).append(batch)
    rounds: list[list[tuple[int, Envelope]]] = []
    for seq in sorted(by_seq):
        sends: list[tuple[int, Envelope]] = []
        for batch in by_seq[seq]:
            split = seq > 0 and rng.random() < 0.3
            pieces = random_split(rng, 2, len(batch.rows)) if split else [""]
            sends += routed(batch, shards, pieces=pieces)
            if seq > 1 and rng.random() < 0.15:
                earlier = by_seq[max(1, seq - rng.randint(1, 10))]
                again = rng.choice(earlier)
                resplit = random_split(rng, 2, len(again.rows)) if rng.random() < 0.5 else [""]
                sends += routed(again, shards, pieces=resplit)
        rounds.append(sends)
    return rounds


def start_notifier(pipeline: Pipeline, log_dir: Path, *, shard: int = 0) -> ServiceProcess:
    return ServiceProcess(
        "services.notifier", dict(pipeline.env), log_dir, args=["--shard", str(shard)]
    ).start()


def send(pipeline: Pipeline, sends: list[tuple[int, Envelope]]) -> None:
    sqs = sqs_client()
    queues = pipeline.config.queues.notify_shard_names()
    for shard, queue in enumerate(queues):
        envelopes = [e for s, e in sends if s == shard]
        if envelopes:
            EnvelopeProducer(sqs, pipeline.queue_url(queue), queue, service="test").send(envelopes)


@dataclass
class Feeder:
    """Sends the rounds at a steady pace in a thread, like a live router."""

    pipeline: Pipeline
    rounds: list[list[tuple[int, Envelope]]]
    pause_s: float = 0.15
    per_send: int = 1  # rounds sent together
    sent: int = 0
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Feeder:
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for start in range(0, len(self.rounds), self.per_send):
                chunk = self.rounds[start : start + self.per_send]
                send(self.pipeline, [s for sends in chunk for s in sends])
                self.sent += len(chunk)
                time.sleep(self.pause_s)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout_s: float = 60) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise self.error


def send_warm_up(pipeline: Pipeline, rounds: list[list[tuple[int, Envelope]]]) -> None:
    """Send round 0 (every source's batch 0) and wait until every shard checkpointed
    it: the tests start the rest only then (why: stream.warm_up_first)."""
    send(pipeline, rounds[0])
    streams = {e.position.stream for _, e in rounds[0] if e.position is not None}
    for shard in range(len(pipeline.config.queues.notify_shard_names())):

        def known(shard: int = shard) -> bool:
            data = checkpoint(pipeline, shard)
            return (
                data is not None
                and {name for name, s in data["streams"]["streams"].items() if s["next"] >= 1}
                == streams
            )

        wait_until(known, 30, f"shard {shard} checkpointing every source's batch 0")


def feed_warm_up_then_rest(
    pipeline: Pipeline,
    rounds: list[list[tuple[int, Envelope]]],
    *,
    pause_s: float = 0.15,
    per_send: int = 1,
) -> Feeder:
    """Round 0 (:func:`send_warm_up`), then the rest fed in a thread."""
    send_warm_up(pipeline, rounds)
    return Feeder(pipeline, rounds[1:], pause_s=pause_s, per_send=per_send).start()


def start_notifiers(
    wanted: list[tuple[Pipeline, Path, int]],
) -> list[ServiceProcess]:
    """Start (pipeline, log dir, shard) notifiers at once; every one or none."""
    with ThreadPoolExecutor(len(wanted)) as pool:
        futures = [pool.submit(start_notifier, p, logs, shard=s) for p, logs, s in wanted]
    failed = [error for f in futures if (error := f.exception()) is not None]
    started = [f.result() for f in futures if f.exception() is None]
    if failed:
        for process in started:
            process.kill()
        raise failed[0]
    return started


# -- reading back ------------------------------------------------------------------------------


def checkpoint(pipeline: Pipeline, shard: int) -> dict[str, Any] | None:
    s3 = s3_client()
    try:
        body = s3.get_object(
            Bucket=pipeline.bucket("archival"), Key=checkpoint_key("notifier", shard)
        )["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return read_checkpoint(body)


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


@dataclass
class Inbox:
    """The notifications FIFO queue, read and emptied as notifications arrive."""

    pipeline: Pipeline
    notes: list[dict[str, Any]] = field(default_factory=list)

    def read(self) -> int:
        sqs = sqs_client()
        url = self.pipeline.queue_url(self.pipeline.config.queues.notifications)
        got = 0
        while True:
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return got
            for message in messages:
                self.notes.append(orjson.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            got += len(messages)

    def wait_for(
        self, count: int, processes: list[ServiceProcess], *, timeout_s: float = 45
    ) -> list[dict[str, Any]]:
        """Read until ``count`` notifications arrived, the input queues are drained and
        nothing is pending in any notifier; then make sure no more come."""
        queues = self.pipeline.config.queues.notify_shard_names()
        pending = "sensorpipe_notifier_pending_anomalies"

        def done() -> bool:
            self.read()
            return (
                len(self.notes) >= count
                and all(queue_empty(self.pipeline, q) for q in queues)
                and all(metric(p, pending) == 0 for p in processes)
            )

        try:
            wait_until(done, timeout_s, f"{count} notifications")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {len(self.notes)} arrived") from None
        time.sleep(IDLE_S + 1)  # anything still to come would come now
        self.read()
        return self.notes


def late_keys(pipeline: Pipeline) -> set[str]:
    """Reading keys the notifiers wrote to the error bucket as late."""
    s3 = s3_client()
    bucket = pipeline.bucket("error")
    keys: set[str] = set()
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="late-anomalies/")
    for item in listing.get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        keys |= {entry["reading_key"] for entry in read_jsonl(body)}
    return keys


def ledger_keys(pipeline: Pipeline) -> list[str]:
    listing = s3_client().list_objects_v2(
        Bucket=pipeline.bucket("archival"), Prefix="notifications/"
    )
    return sorted(item["Key"] for item in listing.get("Contents", []))


def as_bursts(notes: list[dict[str, Any]]) -> Bursts:
    got: Bursts = {}
    for note in notes:
        got.setdefault(note["location"], []).append(tuple(note["reading_keys"]))
    return {k: sorted(v) for k, v in got.items()}


def check_late(pipeline: Pipeline, live: Live) -> None:
    """Late: the planted rows, and at most copies of readings already decided."""
    late = late_keys(pipeline)
    planted = {key_of(r) for r in live.planted_late}
    assert planted <= late, planted - late
    assert late - planted <= live.source.duplicated
