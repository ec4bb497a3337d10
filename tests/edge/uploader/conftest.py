"""Helpers for the uploader tests: a simulated database, a queue reader, an uploader
against moto's SQS (``env``), and for the LocalStack tests an edge directory with a
provisioned pipeline and uploader processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from moto import mock_aws

from edge.simulator import Manifest, Simulation, SimulationOptions
from edge.uploader import CheckpointStore, SensorSource, Uploader, UploadOptions
from sensorpipe.aws import sqs_client
from sensorpipe.controller import PipelineController
from sensorpipe.envelope import Envelope, decode
from sensorpipe.runtime.producer import EnvelopeProducer
from sensorpipe.scenarios import BUILTIN_SCENARIOS
from tests.conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REPLAY_START = datetime(2025, 8, 18, tzinfo=UTC)


def simulate(db: Path, count: int, **overrides: Any) -> Manifest:
    options: dict[str, Any] = {
        "db": db,
        "count": count,
        "seed": 42,
        "replay_start": REPLAY_START,
        "sensors": 10,
        "locations": 3,
        "rate": 20.0,
    }
    options.update(overrides)
    return Simulation(SimulationOptions(**options)).run()


@dataclass
class Received:
    """Envelopes drained from a queue, with the checks every test makes."""

    envelopes: list[Envelope] = field(default_factory=list)

    def row_ids(self) -> list[int]:
        return [r["sensor_data"]["id"] for e in self.envelopes for r in e.records]

    def by_batch(self) -> dict[str, list[Envelope]]:
        out: dict[str, list[Envelope]] = {}
        for envelope in self.envelopes:
            out.setdefault(envelope.batch_id, []).append(envelope)
        return out

    def deduplicated(self) -> list[Envelope]:
        """One envelope per batch id, after checking resent copies are identical."""
        unique = []
        for batch, copies in self.by_batch().items():
            first = copies[0]
            for copy in copies[1:]:
                assert copy.records == first.records, f"batch {batch} resent with other records"
                assert (copy.scenario, copy.config_version) == (
                    first.scenario,
                    first.config_version,
                ), f"batch {batch} resent with another stamp"
            unique.append(first)
        return unique


def drain(sqs: SQSClient, queue_url: str, *, idle_polls: int = 2, wait_s: int = 1) -> Received:
    received = Received()
    idle = 0
    while idle < idle_polls:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            idle += 1
            continue
        idle = 0
        for message in messages:
            attributes = {
                k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()
            }
            received.envelopes.append(decode(message["Body"], attributes))
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    return received


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto needs a region and fake credentials, and no endpoint pointing elsewhere."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    yield


@dataclass
class Edge:
    tmp: Path
    pipeline: Pipeline

    @property
    def db(self) -> Path:
        return self.tmp / "sensors.db"

    @property
    def checkpoint(self) -> Path:
        return self.tmp / "state" / "checkpoint.json"

    def uploader(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / "uploader.log").open("ab")
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge.uploader",
                "--db",
                str(self.db),
                "--checkpoint",
                str(self.checkpoint),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.pipeline.env},
        )

    def run_once(self, *args: str) -> str:
        process = self.uploader("--once", *args)
        assert process.wait(timeout=60) == 0, self.log()
        return self.log()

    def log(self) -> str:
        return (self.tmp / "uploader.log").read_text(errors="replace")

    def last_id(self) -> int:
        try:
            return int(json.loads(self.checkpoint.read_text())["last_id"])
        except FileNotFoundError:
            return 0

    def wait_for_checkpoint(self, row_id: int, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 45
        while self.last_id() < row_id:
            assert process.poll() is None, f"uploader exited early:\n{self.log()}"
            assert time.monotonic() < deadline, f"checkpoint stuck at {self.last_id()}"
            time.sleep(0.05)

    def received(self) -> Received:
        sqs = sqs_client()
        # Everything checkpointed was accepted by SQS first, so one empty poll means done.
        url = self.pipeline.queue_url(self.pipeline.config.queues.ingest)
        return drain(sqs, url, idle_polls=1)


@pytest.fixture
def edge(localstack: str, tmp_path: Path) -> Iterator[Edge]:
    pipeline = make_pipeline(
        tmp_path,
        localstack,
        {"uploader": {"poll_interval_seconds": 0.2, "state_dir": str(tmp_path / "state")}},
    )
    # The operator's part: the uploader only ever reads the controller, never creates it.
    PipelineController(pipeline.config.pipeline.controller_db)
    yield Edge(tmp_path, pipeline)


def rows_exactly_once(received: Received, expected: range) -> None:
    """After dropping whole resent batches (same id, identical records), every row once."""
    unique = received.deduplicated()
    counts = Counter(r["sensor_data"]["id"] for e in unique for r in e.records)
    assert sorted(counts) == list(expected)
    assert set(counts.values()) == {1}, "a row travelled in two different batches"


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


@dataclass
class Env:
    tmp: Path
    sqs: SQSClient
    url: str
    controller: PipelineController

    @property
    def db(self) -> Path:
        return self.tmp / "sensors.db"

    def producer(self, max_bytes: int = 240 * 1024) -> EnvelopeProducer:
        return EnvelopeProducer(
            sqs=self.sqs,
            queue_url=self.url,
            queue_name="ingest",
            max_body_bytes=max_bytes,
            compress=True,
            service="uploader",
        )

    def uploader(self, **kwargs: Any) -> Uploader:
        options = UploadOptions(
            source_name="node-a",
            batch_size=kwargs.pop("batch_size", 100),
            max_batch_bytes=kwargs.pop("max_bytes", 240 * 1024),
            dry_run=kwargs.pop("dry_run", False),
        )
        sender = kwargs.pop("sender", None)
        return Uploader(
            source=SensorSource(kwargs.pop("db", self.db), kwargs.pop("table", "sensor_readings")),
            store=CheckpointStore(kwargs.pop("checkpoint", self.tmp / "state" / "ckpt.json")),
            controller=kwargs.pop("controller", self.controller),
            sender=None if options.dry_run else (sender or self.producer(options.max_batch_bytes)),
            options=options,
            known_scenarios=kwargs.pop("known", BUILTIN_SCENARIOS),
            dry_run_out=kwargs.pop("out", None),
        )


@pytest.fixture
def env(tmp_path: Path, aws_credentials: None) -> Iterator[Env]:
    with mock_aws():
        sqs = sqs_client()
        url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
        controller = PipelineController(tmp_path / "controller.db", valid_scenarios=["custom"])
        yield Env(tmp_path, sqs, url, controller)


def db_rows(db: Path) -> dict[int, dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in conn.execute("SELECT * FROM sensor_readings")}
    finally:
        conn.close()


def received(env: Env) -> Received:
    return drain(env.sqs, env.url, idle_polls=1, wait_s=0)  # moto: all messages visible now


def saved(env: Env) -> dict[str, Any]:
    return dict(json.loads((env.tmp / "state" / "ckpt.json").read_text()))
