"""Event-to-notification latency of the real notifier through LocalStack (p50, p99).

    .venv/bin/python benchmarks/bench_notifier.py [--trials 100] [--rate 5]

A real notifier process (``python -m services.notifier``) consumes a fresh notify queue.
The benchmark sends bursts (three anomalous readings of one location, event time "now",
one envelope, as the router would forward them) at ``--rate`` bursts per second, each
reading stamped with its wall-clock ``sent_at``; a receiver thread long-polls the FIFO
notifications queue and takes arrival time - sent_at. Every burst has its own location,
so no cool-down interferes. Two notifier settings are measured:
  * grace 0 s: a burst is final as soon as its third reading is seen (in-order input);
  * grace 1 s, idle flush 1 s: waits until the location has been quiet for 1 s.
(With the defaults, grace 10 s and idle flush 30 s, a lone burst waits about 30 s more;
a busy location's next reading 10 s later in event time settles it sooner.)
Baseline measured in the same run: one SendMessage + long-poll ReceiveMessage on a plain
queue (the LocalStack round trip; the notifier's path is two such hops plus S3 calls).
Uses LocalStack at $AWS_ENDPOINT_URL, else starts/reuses one on 127.0.0.1:4566.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import PipelineConfig, load_pipeline_config
from sensorpipe.config.loading import PIPELINE_CONFIG_FILE, default_file
from sensorpipe.devstack.localstack import LocalStackHost, aws_environment
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Envelope
from sensorpipe.provisioning import provision
from sensorpipe.runtime import EnvelopeProducer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(label: str, latencies_s: list[float], expected: int) -> str:
    ms = [v * 1000 for v in latencies_s]
    if not ms:
        return f"{label:<44} no notifications arrived (expected {expected})"
    return (
        f"{label:<44} n={len(ms):>4}/{expected:<4} p50 {percentile(ms, 0.5):8.1f} ms  "
        f"p99 {percentile(ms, 0.99):8.1f} ms  mean {statistics.fmean(ms):8.1f} ms"
    )


def provisioned(workdir: Path) -> tuple[PipelineConfig, Path]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    base = yaml.safe_load(default_file(PIPELINE_CONFIG_FILE).read_text())
    base["buckets"]["prefix"] = prefix
    base["queues"].update(prefix=prefix, visibility_timeout_seconds=10)
    base["pipeline"]["controller_db"] = str(workdir / "controller.db")
    base["runtime"].update(wait_time_seconds=20)
    path = workdir / "pipeline-config-v2.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    config = load_pipeline_config(path)
    provision(config, s3=s3_client(), sqs=sqs_client())
    return config, path


def burst_envelope(location: str, number: int) -> Envelope:
    now = datetime.now(UTC)
    sent_at = time.time()
    records: list[dict[str, Any]] = []
    for i in range(3):
        stamp = now.isoformat(timespec="milliseconds")
        records.append(
            {
                "sensor_data": {
                    "id": number * 3 + i,
                    "timestamp": stamp,
                    "sensor_id": f"BENCH_{i}",
                    "temperature": 95.0,
                    "location": location,
                    "anomaly_flag": 1,
                    "status_code": 1,
                    "anomaly_type": "spike",
                },
                "lineage": {"job_id_hash": "bench", "batch_id": f"bench-{number}"},
                "quality": {"anomalous": True, "anomaly_reasons": ["temperature_high"]},
                "bench": {"sent_at": sent_at},
            }
        )
    return Envelope(f"bench-{number}", "notification", 1, records)


class Arrivals(threading.Thread):
    """Long-polls the FIFO queue; records (arrival - sent_at) per notification."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.to_fifo: list[float] = []  # sent_at -> SQS accepted the notification
        self.stop = threading.Event()

    def run(self) -> None:
        sqs = sqs_client()
        while not self.stop.is_set():
            got = sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                AttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            arrived = time.time()
            for message in got:
                body = orjson.loads(message["Body"])
                sent = max(r["bench"]["sent_at"] for r in body["readings"])
                self.latencies.append(arrived - sent)
                accepted = int(message["Attributes"]["SentTimestamp"]) / 1000
                self.to_fifo.append(accepted - sent)
                sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


def measure_notifier(
    config: PipelineConfig, path: Path, logs: Path, *, grace_s: float, trials: int, rate: float
) -> tuple[list[float], list[float]]:
    sqs = sqs_client()
    queue = config.queues.notify_shard_names()[0]
    producer = EnvelopeProducer(
        sqs, sqs.get_queue_url(QueueName=queue)["QueueUrl"], queue, service="bench"
    )
    env = {
        "SENSORPIPE_PIPELINE_CONFIG": str(path),
        "SENSORPIPE_NOTIFIER_GRACE_SECONDS": str(grace_s),
        "SENSORPIPE_NOTIFIER_IDLE_FLUSH_SECONDS": "1",
        "SENSORPIPE_NOTIFIER_RECOVERY_HOLD_SECONDS": "0",  # a fresh queue: no predecessor
    }
    notifier = ServiceProcess("services.notifier", env, logs, args=["--shard", "0"]).start()
    fifo = sqs.get_queue_url(QueueName=config.queues.notifications)["QueueUrl"]
    arrivals = Arrivals(fifo)
    arrivals.start()
    try:
        run = uuid.uuid4().hex[:6]
        for number in range(trials):
            started = time.monotonic()
            producer.send([burst_envelope(f"bench-{run}-{number}", number)])
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
        deadline = time.monotonic() + 15
        while len(arrivals.latencies) < trials and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        arrivals.stop.set()
        arrivals.join(timeout=5)
        notifier.terminate()
    return arrivals.latencies, arrivals.to_fifo


def measure_round_trip(config: PipelineConfig, trials: int) -> list[float]:
    """SendMessage then a long-poll ReceiveMessage on a plain queue (enriched: idle here)."""
    sqs = sqs_client()
    url = sqs.get_queue_url(QueueName=config.queues.enriched)["QueueUrl"]
    out = []
    for _ in range(trials):
        sent = time.time()
        sqs.send_message(QueueUrl=url, MessageBody="ping")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=5)
        out.append(time.time() - sent)
        for message in got.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="bursts sent per second")
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    host = LocalStackHost()
    started_here = False
    if "AWS_ENDPOINT_URL" not in os.environ:
        started_here = host.start()
        os.environ.update(aws_environment(host.endpoint))
    print(f"endpoint: {os.environ['AWS_ENDPOINT_URL']}, cpus: {os.cpu_count()}")
    print(f"{args.trials} bursts of 3 anomalies at {args.rate}/s, each at its own location\n")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-notifier-") as tmp:
            workdir = Path(tmp)
            config, path = provisioned(workdir)
            baseline = measure_round_trip(config, args.trials)
            print(summary("baseline: SQS send + receive (plain queue)", baseline, args.trials))
            for grace in (0.0, 1.0):
                latencies, to_fifo = measure_notifier(
                    config,
                    path,
                    workdir / "logs",
                    grace_s=grace,
                    trials=args.trials,
                    rate=args.rate,
                )
                label = f"event -> notification (grace {grace:g} s, idle 1 s)"
                print(summary(label, latencies, args.trials))
                print(summary("  of which: until SQS accepted it (FIFO)", to_fifo, args.trials))
    finally:
        if started_here:
            host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
