"""A running pipeline for end-to-end tests: LocalStack, the stateless services as real
processes, and the edge tools (simulator, uploader, controller) as real commands."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Envelope, decode
from sensorpipe.objects import read_jsonl
from tests.conftest import Pipeline

T = TypeVar("T")

BUCKET_KINDS = ("raw", "schematized", "error", "archival")
SERVICES = ("enricher", "validator", "router")
BIN = Path(sys.executable).parent

# Snapshot of every object: (bucket kind, key) -> (ETag, metadata, bytes).
Snapshot = dict[tuple[str, str], tuple[str, dict[str, str], bytes]]


def eventually(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.3)


def run(args: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stderr


@dataclass
class Dataset:
    """A simulated edge database, its manifest and its rows by id."""

    db: Path
    manifest: dict[str, Any]
    rows: dict[int, dict[str, Any]]

    @property
    def ids(self) -> set[int]:
        return set(self.rows)

    @property
    def invalid(self) -> dict[int, dict[str, Any]]:
        return {entry["id"]: entry for entry in self.manifest["invalid"]}

    @property
    def valid(self) -> set[int]:
        return self.ids - set(self.invalid)

    @property
    def anomalous(self) -> set[int]:
        """Valid rows the simulator made anomalous (the sensor flags them itself)."""
        return {entry["id"] for entry in self.manifest["anomalous"]} & self.valid

    @property
    def flagged(self) -> set[int]:
        """Valid rows the sensor itself reports as faulty (the default business filter)."""
        return {i for i in self.valid if self.rows[i].get("status_code") == 1}


@dataclass
class Stack:
    pipeline: Pipeline
    tmp: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return self.pipeline.env

    # -- services ------------------------------------------------------------------

    def start(self, name: str, *args: str, key: str | None = None) -> ServiceProcess:
        """Start ``services.<name>`` (``args``: its flags); ``key`` names a replica."""
        logs = self.tmp / "logs" / key if key else self.tmp / "logs"
        process = ServiceProcess(f"services.{name}", self.env, logs, list(args))
        self.services[key or name] = process.start()
        return process

    def stop(self, name: str) -> None:
        self.services.pop(name).terminate()

    def stop_all(self) -> None:
        for name in list(self.services):
            self.stop(name)

    def router_acked(self) -> float:
        """Messages the current router process acknowledged (all their destinations done)."""
        text = self.services["router"].metrics_text()
        pattern = re.compile(r"^sensorpipe_messages_processed_total\{([^}]*)\} (\S+)$", re.M)
        return sum(
            float(value) for labels, value in pattern.findall(text) if 'outcome="ok"' in labels
        )

    # -- edge tools ----------------------------------------------------------------

    def set_scenario(self, scenario: str) -> None:
        db = self.pipeline.config.pipeline.controller_db
        run(
            [
                str(BIN / "pipeline-controller"),
                "--db",
                db,
                "set",
                scenario,
                "--by",
                "test",
                "--reason",
                "e2e",
            ],
            self.env,
            f"pipeline-controller set {scenario}",
        )

    def simulate(
        self,
        name: str,
        seed: int,
        rows: int,
        replay_start: str,
        *,
        sensors: int = 10,
        locations: int = 3,
        rate: float = 50,
        invalid: float = 0.1,
        anomalies: float = 0.05,
        extra: tuple[str, ...] = (),
    ) -> Dataset:
        db, manifest = self.tmp / f"{name}.db", self.tmp / f"{name}.manifest.json"
        run(
            [
                sys.executable,
                "-m",
                "edge.simulator",
                "--db",
                str(db),
                "--count",
                str(rows),
                "--seed",
                str(seed),
                "--replay-start",
                replay_start,
                "--rate",
                str(rate),
                "--sensors",
                str(sensors),
                "--locations",
                str(locations),
                "--invalid-fraction",
                str(invalid),
                "--anomaly-probability",
                str(anomalies),
                "--manifest",
                str(manifest),
                *extra,
            ],
            self.env,
            "simulator",
        )
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            by_id = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM sensor_readings")}
        return Dataset(db, json.loads(manifest.read_text()), by_id)

    def upload(self, dataset: Dataset, state: str, batch_size: int) -> None:
        run(
            [
                sys.executable,
                "-m",
                "edge.uploader",
                "--once",
                "--db",
                str(dataset.db),
                "--state-dir",
                str(self.tmp / state),
                "--batch-size",
                str(batch_size),
            ],
            self.env,
            "uploader",
        )

    # -- outputs -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        s3 = s3_client()
        out: Snapshot = {}
        for kind in BUCKET_KINDS:
            bucket = self.pipeline.bucket(kind)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    got = s3.get_object(Bucket=bucket, Key=obj["Key"])
                    out[(kind, obj["Key"])] = (got["ETag"], got["Metadata"], got["Body"].read())
        return out

    def drain(self, queue: str) -> list[Envelope]:
        sqs = sqs_client()
        url = self.pipeline.queue_url(queue)
        out: list[Envelope] = []
        while True:
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,  # LocalStack answers a short poll with all it has
            ).get("Messages", [])
            if not got:
                return out
            for m in got:
                attributes = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
                out.append(decode(m["Body"], attributes))
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )

    def drain_shard_queues(self) -> None:
        queues = self.pipeline.config.queues
        for queue in [*queues.aggregate_shard_names(), *queues.notify_shard_names()]:
            self.drain(queue)


def new_lines(before: Snapshot, after: Snapshot, kind: str) -> dict[str, list[dict[str, Any]]]:
    """Lines of the objects of one bucket that appeared since ``before``."""
    return {
        key: read_jsonl(body)
        for (k, key), (_etag, _meta, body) in after.items()
        if k == kind and (k, key) not in before
    }
