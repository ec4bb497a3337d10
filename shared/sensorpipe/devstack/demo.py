"""``make demo``: the whole pipeline end to end on this host.

Starts LocalStack (unless one answers already), provisions a fresh demo prefix,
simulates a fleet's database (a quarter of an hour of readings replayed from the past,
with invalid rows and anomalies), sets the ``notification`` scenario (every stage acts),
starts every service as its own process, uploads the database once, waits until every
queue is drained and the last windows are written, prints what landed where, the
windows written and revised and the readings judged late, and checks that every row is
accounted for and that no on-time reading went to ``late/``, then stops what it
started. With ``--dashboard`` it first serves the web dashboard over the run until
Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.cli import bounded_int, command
from sensorpipe.config import load_pipeline_config
from sensorpipe.config.pipeline import BucketKind, PipelineConfig, QueueSettings
from sensorpipe.devstack.localstack import LocalStackHost, aws_environment
from sensorpipe.devstack.processes import ServiceProcess, free_port
from sensorpipe.objects import read_jsonl
from sensorpipe.pages import is_page_key, page_entries
from sensorpipe.provisioning import provision

HOME = Path(".demo")
SERVICES: tuple[tuple[str, list[str]], ...] = (
    ("services.enricher", []),
    ("services.validator", []),
    ("services.router", []),
    ("services.aggregator", ["--shard", "0"]),
    ("services.notifier", ["--shard", "0"]),
)


def _run(args: list[str], env: dict[str, str]) -> None:
    print(f"$ python -m {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", *args], env=env, check=True)


def _approximate_counts(config: PipelineConfig, names: list[str]) -> dict[str, int]:
    sqs = sqs_client()
    counts = {}
    for name in names:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        counts[name] = sum(int(v) for v in attrs.values())
    return counts


def _wait_drained(config: PipelineConfig, timeout_s: float) -> bool:
    """True once every consumer queue is empty (nothing visible, nothing in flight)."""
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        depth = sum(_approximate_counts(config, config.queues.consumer_queues()).values())
        if depth == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 3:
                return True
        else:
            quiet_since = None
            print(f"  ... {depth} message(s) still in the pipeline", flush=True)
        time.sleep(2)
    return False


def _wait_windows_written(aggregator: ServiceProcess, timeout_s: float) -> bool:
    """Messages are acknowledged once checkpointed; the last windows close when the
    source has gone quiet (idle flush). True once the aggregator has none open."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        open_windows = [
            line
            for line in aggregator.metrics_text().splitlines()
            if line.startswith("sensorpipe_aggregator_open_windows ")
        ]
        if open_windows and float(open_windows[0].split()[1]) == 0:
            return True
        time.sleep(1)
    print(f"  windows still open after {timeout_s:.0f} s", flush=True)
    return False


@dataclass(frozen=True)
class WindowSummary:
    written: int
    revised: int  # written again, holding a reading that came after the first write
    late: int  # readings beyond the allowed lateness (late/ in the error bucket)


def _window_summary(config: PipelineConfig) -> WindowSummary:
    s3 = s3_client()
    aggregated = config.buckets.name(BucketKind.AGGREGATED)
    prefix = config.windowing.output_prefix.strip("/") + "/"
    written = revised = late = 0
    for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=aggregated, Prefix=prefix):
        for obj in listing.get("Contents", []):
            if not is_page_key(obj["Key"]):
                continue
            body = s3.get_object(Bucket=aggregated, Key=obj["Key"])["Body"].read()
            for doc in page_entries(body):  # one page per window start and shard
                written += 1
                revised += doc.get("revision", 0) != 0
    error = config.buckets.name(BucketKind.ERROR)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=error, Prefix="late/"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=error, Key=obj["Key"])["Body"].read()
            late += sum(line["reason"] != "no_event_time" for line in read_jsonl(body))
    return WindowSummary(written, revised, late)


def _bucket_summary(config: PipelineConfig) -> dict[str, int]:
    """Print objects and records per bucket prefix; return records per prefix."""
    s3 = s3_client()
    records_by_prefix: dict[str, int] = {}
    print("\nWhat landed where:")
    for bucket in config.buckets.all_names().values():
        objects: dict[str, int] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                prefix = key.split("/", 1)[0]
                objects[prefix] = objects.get(prefix, 0) + 1
                if key.endswith((".jsonl.gz", ".jsonl")):
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    count = len(read_jsonl(body))
                else:
                    count = 1
                records_by_prefix[prefix] = records_by_prefix.get(prefix, 0) + count
        for prefix in sorted(objects):
            print(
                f"  s3://{bucket}/{prefix}/  {objects[prefix]} object(s), "
                f"{records_by_prefix[prefix]} record(s)"
            )
        if not objects:
            print(f"  s3://{bucket}/  (empty: not a destination of this scenario)")
    return records_by_prefix


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sensorpipe.devstack.demo")
    parser.add_argument("--rows", type=bounded_int(1), default=6000, help="readings to simulate")
    parser.add_argument("--scenario", default="notification")
    parser.add_argument("--keep", action="store_true", help="leave LocalStack running")
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="afterwards, serve the dashboard over this run until Ctrl-C",
    )
    parser.add_argument(
        "--dashboard-port",
        type=bounded_int(0, 65535),
        default=8090,
        help="0: any free port (default 8090)",
    )
    args = parser.parse_args(argv)

    host = LocalStackHost(port=int(os.environ.get("LOCALSTACK_PORT", "4566")))
    print(f"Starting LocalStack on {host.endpoint} (log: {host.log_file}) ...", flush=True)
    started = host.start()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    run_dir = HOME / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"demo-{run_id[-6:]}"
    env = {
        **os.environ,
        **aws_environment(host.endpoint),
        "S3_BUCKET_PREFIX": prefix,
        "SQS_QUEUE_PREFIX": prefix,
        "PIPELINE_CONTROLLER_DB": str(run_dir / "pipeline_config.db"),
        "UPLOADER_STATE_DIR": str(run_dir / "state"),
        # Short waits so the demo's last windows and bursts close within seconds.
        "SENSORPIPE__WINDOWING__GRACE_SECONDS": "2",
        "SENSORPIPE__WINDOWING__IDLE_FLUSH_SECONDS": "3",
        "SENSORPIPE__QUEUES__VISIBILITY_TIMEOUT_SECONDS": "20",
    }
    os.environ.update(env)
    config = load_pipeline_config()
    print(f"Provisioning buckets and queues with prefix {prefix} ...", flush=True)
    provision(config)

    db = run_dir / "sensor_data.db"
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
    _run(
        ["edge.simulator", "--db", str(db), "--sensors", "12", "--locations", "3",
         "--rate", "6", "--count", str(args.rows), "--seed", "42",
         "--replay-start", start.isoformat(), "--invalid-fraction", "0.02",
         "--anomaly-probability", "0.02"],
        env,
    )  # fmt: skip
    _run(
        ["sensorpipe.controller", "--db", env["PIPELINE_CONTROLLER_DB"], "set", args.scenario,
         "--by", "make-demo", "--reason", "demo: every stage acts"],
        env,
    )  # fmt: skip
    services = [ServiceProcess(m, env, run_dir / "logs", extra) for m, extra in SERVICES]
    ok = False
    try:
        for service in services:
            service.start()
            print(f"  {service.name:<14} running; metrics at {service.metrics_url}", flush=True)
        _run(["edge.uploader", "--db", str(db), "--once"], env)
        print("Waiting for the pipeline to drain ...", flush=True)
        drained = _wait_drained(config, timeout_s=240)
        aggregator = next(s for s in services if s.module == "services.aggregator")
        drained = drained and _wait_windows_written(aggregator, timeout_s=120)
        windows = _window_summary(config)
        records = _bucket_summary(config)
        dlqs = [QueueSettings.dlq_name(q) for q in config.queues.consumer_queues()]
        queues = _approximate_counts(config, [config.queues.notifications, *dlqs])
        for name, count in queues.items():
            print(f"  sqs {name}: {count} message(s)")
        with sqlite3.connect(db) as conn:
            rows = int(conn.execute("SELECT COUNT(*) FROM sensor_readings").fetchone()[0])
        landed = records.get("archival", 0) + records.get("rejected", 0)
        landed += records.get("filtered", 0)
        print(
            f"\nin = out: {rows} rows in the sensor database; {landed} accounted for "
            f"(archival {records.get('archival', 0)} + rejected {records.get('rejected', 0)}"
            f" + filtered {records.get('filtered', 0)}); "
            f"{records.get('1-minute', 0)} one-minute windows; "
            f"{queues[config.queues.notifications]} notification(s); "
            f"{sum(queues[d] for d in dlqs)} message(s) in DLQs"
        )
        print(
            f"windows: {windows.written} written, {windows.revised} revised after a later "
            f"reading; {windows.late} reading(s) beyond the allowed lateness in late/"
        )
        ok = drained and (args.scenario != "notification" or landed == rows)
        if windows.late:
            # The demo's rows are all written in order: none may be judged late.
            print(f"FAIL: {windows.late} on-time reading(s) went to late/")
            ok = False
    finally:
        for service in services:
            if service.process is not None:
                service.terminate()
        if args.dashboard and ok:
            _serve_dashboard(env, run_dir, args.dashboard_port)
        if started and not args.keep:
            host.stop()
    print(f"Logs: {run_dir / 'logs'}   {'DEMO OK' if ok else 'DEMO INCOMPLETE'}")
    return 0 if ok else 1


def _serve_dashboard(env: dict[str, str], run_dir: Path, port: int) -> None:
    """The dashboard over this run's pipeline, until SIGINT or SIGTERM."""
    port = port or free_port()
    dashboard = ServiceProcess(
        "services.dashboard",
        {**env, "SENSORPIPE_DASHBOARD_PORT": str(port)},
        run_dir / "logs",
        port=port,
    ).start()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"Dashboard: http://127.0.0.1:{port}/  (Ctrl-C to stop)", flush=True)
    stop.wait()
    dashboard.terminate()


if __name__ == "__main__":
    raise SystemExit(main())
