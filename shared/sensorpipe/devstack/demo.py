"""``make demo``: the whole pipeline end to end on this host.

Starts LocalStack (unless one answers already), provisions a demo prefix, simulates a
fleet's database, sets the ``notification`` scenario (every stage acts), starts every
service as its own process, uploads the database once, waits until the pipeline is
drained, prints what landed where, and stops what it started.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import load_pipeline_config
from sensorpipe.config.pipeline import PipelineConfig, QueueSettings
from sensorpipe.devstack.localstack import LocalStackHost, aws_environment
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.objects import read_jsonl
from sensorpipe.provisioning import provision

HOME = Path(".demo")


def _run(args: list[str], env: dict[str, str]) -> None:
    print(f"$ {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", *args], env=env, check=True)


def _queue_depth(config: PipelineConfig) -> int:
    sqs = sqs_client()
    total = 0
    for name in config.queues.consumer_queues():
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        total += sum(int(v) for v in attrs.values())
    return total


def _wait_drained(config: PipelineConfig, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        depth = _queue_depth(config)
        if depth == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 3:
                return
        else:
            quiet_since = None
        print(f"  ... {depth} message(s) still in the pipeline", flush=True)
        time.sleep(2)
    print("  (timed out waiting for the queues to drain; summary follows)")


def _summary(config: PipelineConfig) -> None:
    s3 = s3_client()
    print("\nWhat landed where:")
    for kind, bucket in config.buckets.all_names().items():
        prefixes: dict[str, list[int]] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                counts = prefixes.setdefault(key.split("/", 1)[0], [0, 0])
                counts[0] += 1
                counts[1] += len(read_jsonl(body)) if key.endswith((".jsonl.gz", ".jsonl")) else 1
        for prefix, (objects, records) in sorted(prefixes.items()):
            print(f"  s3://{bucket}/{prefix}/  {objects} object(s), {records} record(s)")
        if not prefixes:
            print(
                f"  s3://{bucket}/  (empty: the {kind.value} destination is not in this scenario)"
            )
    sqs = sqs_client()
    for name in [
        config.queues.notifications,
        *map(QueueSettings.dlq_name, config.queues.consumer_queues()),
    ]:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        count = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
        print(f"  sqs {name}: {count} message(s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sensorpipe-demo", description=__doc__)
    parser.add_argument("--rows", type=int, default=3000, help="readings to simulate")
    parser.add_argument("--scenario", default="notification")
    parser.add_argument("--keep", action="store_true", help="leave LocalStack running")
    args = parser.parse_args(argv)

    HOME.mkdir(exist_ok=True)
    host = LocalStackHost(port=int(os.environ.get("LOCALSTACK_PORT", "4566")))
    print(f"Starting LocalStack on {host.endpoint} (log: {host.log_file}) ...", flush=True)
    started = host.start()
    run_id = time.strftime("%H%M%S")
    env = {
        **os.environ,
        **aws_environment(host.endpoint),
        "S3_BUCKET_PREFIX": f"demo-{run_id}",
        "SQS_QUEUE_PREFIX": f"demo-{run_id}",
        "PIPELINE_CONTROLLER_DB": str(HOME / "state" / "pipeline_config.db"),
        "UPLOADER_STATE_DIR": str(HOME / "state" / run_id),
        "SENSORPIPE__WINDOWING__GRACE_SECONDS": "5",
        "SENSORPIPE__WINDOWING__IDLE_FLUSH_SECONDS": "5",
    }
    os.environ.update(env)
    config = load_pipeline_config()
    print(f"Provisioning buckets and queues with prefix demo-{run_id} ...", flush=True)
    provision(config)
    db = HOME / f"sensor_data-{run_id}.db"
    _run(
        [
            "edge.simulator",
            "--db",
            str(db),
            "--sensors",
            "12",
            "--locations",
            "3",
            "--count",
            str(args.rows),
            "--seed",
            "42",
            "--invalid-fraction",
            "0.02",
            "--anomaly-probability",
            "0.03",
        ],
        env,
    )
    _run(
        [
            "sensorpipe.controller",
            "--db",
            env["PIPELINE_CONTROLLER_DB"],
            "set",
            args.scenario,
            "--by",
            "demo",
            "--reason",
            "make demo: every stage acts",
        ],
        env,
    )
    services = [
        ServiceProcess(module, env, HOME / "logs" / run_id, extra)
        for module, extra in (
            ("services.enricher", []),
            ("services.validator", []),
            ("services.router", []),
            ("services.aggregator", ["--shard", "0"]),
            ("services.notifier", ["--shard", "0"]),
        )
    ]
    try:
        for service in services:
            service.start()
            print(f"  {service.name} running, metrics at {service.metrics_url}", flush=True)
        _run(["edge.uploader", "--db", str(db), "--once"], env)
        print("Waiting for the pipeline to drain ...", flush=True)
        _wait_drained(config, timeout_s=180)
        _summary(config)
    finally:
        for service in services:
            if service.process is not None:
                service.terminate()
        if started and not args.keep:
            host.stop()
    print(f"\nLogs: {HOME / 'logs' / run_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
