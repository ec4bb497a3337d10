"""Window latency on a live feed: how long after a 1-minute window ends is its page written?

    .venv/bin/python benchmarks/bench_window_latency.py [--duration 150] [--rate 10]
        [--sensors 20] [--locations 5] [--batch-size 50] [--poll-interval 0.5]
        [--scenario aggregated|notification] [--markers 20] [--keep] [--smoke]

Everything runs as in production, each piece its own process: the simulator writes the
edge database in real time (no ``--replay-start``: event time *is* wall time, one reading
every 1/``--rate`` s fleet-wide, each committed as it is written), the uploader follows it
continuously (``--batch-size`` rows at most per batch, a new batch every
``uploader.poll_interval_seconds``, set from ``--poll-interval`` in the written config),
and enricher, validator, router, aggregator (shard 0) and notifier (shard 0) run as
``python -m services.<name>`` on a pipeline provisioned with its own prefix in LocalStack
($AWS_ENDPOINT_URL, else one started or reused on 127.0.0.1:$LOCALSTACK_PORT or 4566).
Windowing is the configured one (60 s windows, grace 10 s, idle flush 30 s by default;
``SENSORPIPE__WINDOWING__*`` overrides are honoured and the effective values printed).

What is measured, for every page written (the window documents of one minute and shard,
which close together and go out in one object, ``sensorpipe.pages``):

* **first seen**: a thread lists the aggregated bucket every 0.5 s (the hour partitions
  the feed covers) and notes when each key first appears; that is an upper bound of the
  write, late by at most one poll interval plus one listing. ``written - window end`` over
  the windows the *watermark* closed (window end + grace <= the feed's last reading) is
  the figure; the same minus the grace is what the pipeline adds to the wait the design
  asks for: the uploader's poll, SQS hops through three stages, the aggregator's commit
  interval and the S3 put.
* **last listing without it**: the start of the listing before the one that first
  showed the key, a lower bound of the write (listings are read-after-write consistent:
  an object written before a listing starts is in it). The write lies between the two.
* **LastModified**: S3's own time of the write, which LocalStack gives to the second
  (truncated): another lower bound, within 1 s.
* **tail**: the last windows of the feed cannot close by the watermark (nothing comes
  after them); they close once the source has been idle ``idle_flush_seconds``. Their
  figure is ``written - the feed's last reading``, printed separately, never mixed in.

The windows of one minute close together (the watermark is per source, and there is one
source), so 150 s give about two window ends of ``--sensors`` windows each: the
percentiles are over windows, not over independent closings. To make sure a short run
(``--smoke``) crosses a window end, the feed starts once a window boundary falls at least
2 s after its start and at least grace + 3 s before its end (the default run never waits).
The simulator's own lag (wall clock minus the newest row's event time, sampled every
poll) is printed, so "event time = wall time" is checked, not assumed.

Baseline, measured in the same run: the transport floor. Before the aggregator and the
notifier start, ``--markers`` batches of 5 readings (about what one 0.5 s poll of the feed
carries), built by the uploader's own ``build_envelope`` with a position on a stream of
their own, are sent into ``[ingest]`` one at a time; each is timed from just before its
SendMessage to the ``SentTimestamp`` LocalStack gave the router's copy on
``[aggregate-0]`` (ms resolution): ingest -> enricher -> validator -> router -> aggregate
queue on an idle pipeline, the least any window can add. The markers are taken off the
shard queues before the aggregator and notifier start, so they never reach either. Beside
it, the live run's own transport from ``/metrics``: the mean per-hop lag
(``sensorpipe_message_lag_seconds``, SentTimestamp to receipt) of every queue on the way
to the aggregator and every stage's mean handler time per receive (histogram sum/count,
so means, not percentiles; the markers' share subtracted).

Checks (exit 1 if one fails): at least one window closed by the watermark was measured,
no window was revised (watcher ETags, S3 versions, the ``revision`` field, the
aggregator's counter), no reading went to ``late/``, every row of the database is in a
window or was rejected, and the dead-letter queues are empty. Every process started here
is stopped by its pid at the end, also on errors, Ctrl-C or SIGTERM. Nothing here
asserts on time.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from edge.simulator.simulation import Simulation, SimulationOptions
from edge.uploader.batches import build_envelope
from edge.uploader.blocks import Sendable
from edge.uploader.rows import decode_row
from edge.uploader.source import SensorSource
from sensorpipe.aws import queue_url, s3_client, sqs_client
from sensorpipe.config import PipelineConfig, load_pipeline_config
from sensorpipe.config.loading import PIPELINE_CONFIG_FILE, default_file
from sensorpipe.config.pipeline import BucketKind, QueueSettings
from sensorpipe.controller import PipelineController
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Position, decode
from sensorpipe.objects import hive_partition, read_jsonl
from sensorpipe.pages import page_entries
from sensorpipe.provisioning import provision
from sensorpipe.runtime import EnvelopeProducer
from services.aggregator.config import AggregatorSettings

if not __package__:  # run as a script (python benchmarks/<name>.py): import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.live_pipeline import (
    Started,
    begin_run,
    depth,
    metric_samples,
    metric_total,
    spawn,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

TABLE = "sensor_readings"
WATCH_INTERVAL_S = 0.5
MARKER_ROWS = 5  # about what one 0.5 s poll of a 10 readings/s feed carries
LEAD_S = 2.0  # a window boundary at least this long after the feed starts ...
TRAIL_S = 3.0  # ... and at least grace + this before it ends
LISTING_LIMIT = 1000  # LocalStack 4.9.2 stops paginating keys with '=' after 1,000

# Row labels (the smoke test looks for them).
FLOOR = "baseline: transport floor [ingest] -> [aggregate-0]"
SEEN = "window end -> written: first seen (upper bound)"
ABSENT = "window end -> written: last listing without it"
MODIFIED = "window end -> written: LastModified (1 s floor)"
ADDED = "  first seen minus grace: what the pipeline adds"
TAIL = "tail, idle flush: last reading -> written"
BEHIND = "simulator: wall clock - newest event time"


# -- figures -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest rank on the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def row(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<52} {0:>5} {'-':>8} {'-':>8} {'-':>8}"
    p50, p95, top = percentile(values, 0.5), percentile(values, 0.95), max(values)
    return f"  {label:<52} {len(values):>5} {p50:>8.2f} {p95:>8.2f} {top:>8.2f}"


def to_epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


# -- the pipeline --------------------------------------------------------------------------


def write_config(workdir: Path, args: argparse.Namespace) -> Path:
    base = yaml.safe_load(default_file(PIPELINE_CONFIG_FILE).read_text())
    prefix = f"bwl{uuid.uuid4().hex[:8]}"
    base["buckets"]["prefix"] = prefix
    base["queues"]["prefix"] = prefix
    base["pipeline"]["controller_db"] = str(workdir / "pipeline_config.db")
    base["uploader"].update(
        poll_interval_seconds=args.poll_interval,
        batch_size=args.batch_size,
        state_dir=str(workdir / "state"),
        source_name="bench-edge",
    )
    if args.smoke:
        # After a start no source counts as idle for one visibility timeout (+5 s): a
        # short run must not wait 65 s for its tail windows.
        base["queues"]["visibility_timeout_seconds"] = 20
    path = workdir / "pipeline-config-v2.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def drain(sqs: SQSClient, url: str) -> int:
    """Delete everything on a queue (short polls until two come back empty)."""
    deleted = empty = 0
    while empty < 2:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not got:
            empty += 1
            time.sleep(0.2)
            continue
        empty = 0
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
        deleted += len(got)
    return deleted


def plain_row(raw: dict[str, object]) -> dict[str, Any]:
    """A simulated row as the uploader sends it (the simulator writes valid UTF-8)."""
    row, problem = decode_row(raw)
    if row is None:
        raise SystemExit(f"the simulated marker row {raw.get('id')} cannot be sent: {problem}")
    return row


def measure_floor(
    config: PipelineConfig, workdir: Path, scenario: str, config_version: int, count: int
) -> list[float]:
    """``count`` marker batches through ingest -> enricher -> validator -> router, one at a
    time: seconds from before the send to the router's SentTimestamp on [aggregate-0]."""
    db = workdir / "markers.db"
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    Simulation(
        SimulationOptions(
            db=db,
            sensors=5,
            locations=5,
            count=count * MARKER_ROWS,
            seed=7,
            replay_start=start,
            anomaly_probability=0.0,
        )
    ).run()
    source = SensorSource(db, TABLE)
    rows = [plain_row(raw) for raw in source.rows_after(0, count * MARKER_ROWS)]
    source.close()
    sqs = sqs_client()
    ingest = config.queues.ingest
    producer = EnvelopeProducer(
        sqs,
        queue_url(sqs, ingest),
        ingest,
        max_body_bytes=config.queues.max_body_bytes,
        compress=config.runtime.compress,
        service="bench",
    )
    shard_urls = [
        queue_url(sqs, name)
        for name in (*config.queues.aggregate_shard_names(), *config.queues.notify_shard_names())
    ]
    aggregate = shard_urls[0]
    stream = f"bench-marker-{uuid.uuid4().hex[:8]}-g0"
    floors = []
    for seq in range(count):
        part = rows[seq * MARKER_ROWS : (seq + 1) * MARKER_ROWS]
        envelope = build_envelope(
            batch=f"{stream}-{seq:06d}",
            scenario=scenario,
            config_version=config_version,
            rows=Sendable([row["id"] for row in part], rows=part),
            source_name="bench-marker",
            table=TABLE,
            generation=0,
            position=Position(stream, seq),
        )
        sent = time.time()
        producer.send([envelope])
        floors.append(_arrival(sqs, aggregate, stream, seq) - sent)
        time.sleep(0.1)
    time.sleep(1.0)  # the router's copies to the notify shards, sent beside the last one
    for url in shard_urls:
        drain(sqs, url)
        if depth(sqs, url):
            raise RuntimeError(f"markers are still on {url}: the aggregator would see them")
    return floors


def _arrival(sqs: SQSClient, url: str, stream: str, seq: int, timeout_s: float = 60.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=5,
            AttributeNames=["SentTimestamp"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        found = None
        for m in got:
            attributes = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
            position = decode(m["Body"], attributes).position
            if position is not None and (position.stream, position.seq) == (stream, seq):
                found = int(m["Attributes"]["SentTimestamp"]) / 1000
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if found is not None:
            return found
    raise RuntimeError(f"marker {seq} never reached {url} within {timeout_s:.0f} s")


# -- watching the bucket -------------------------------------------------------------------


@dataclass
class Window:
    key: str
    first_seen: float  # end of the first listing that showed it
    absent_at: float  # start of the last listing that did not (nan: none before it)
    last_modified: float  # S3's LastModified of the first version seen (whole seconds)
    etag: str
    end: float = math.nan  # window end, epoch seconds (from the document)
    revision: int = 0  # the page's highest
    record_count: int = 0  # the page's sum
    documents: int = 0  # window documents in the page (one per sensor of the shard)
    etag_changes: int = 0  # the object changed after it was first seen: a revision


class Watcher(threading.Thread):
    """Lists the aggregated bucket every 0.5 s; samples the simulator's lag while feeding."""

    def __init__(self, config: PipelineConfig, db: Path, since: float) -> None:
        super().__init__(daemon=True, name="bucket-watcher")
        self.bucket = config.buckets.name(BucketKind.AGGREGATED)
        self.prefix = config.windowing.output_prefix.strip("/") + "/"
        self.db = db
        self.since = since  # no window ends before this (the hour partitions to list)
        self.windows: dict[str, Window] = {}
        self.behind: list[float] = []
        self.listing_s: list[float] = []
        self.errors: list[str] = []
        self.feeding = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self._previous_start = math.nan

    def run(self) -> None:
        s3 = s3_client()
        conn: sqlite3.Connection | None = None
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                self._poll(s3)
                if self.feeding.is_set():
                    if conn is None and self.db.exists():
                        conn = sqlite3.connect(self.db, timeout=1)
                    if conn is not None:
                        self._sample_lag(conn)
            except Exception as exc:  # reported at the end, never fatal here
                self.errors.append(f"{type(exc).__name__}: {exc}")
            next_at += WATCH_INTERVAL_S
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        if conn is not None:
            conn.close()

    def snapshot(self) -> list[Window]:
        with self.lock:
            return list(self.windows.values())

    def _poll(self, s3: S3Client) -> None:
        started = time.time()
        found: dict[str, tuple[str, float]] = {}
        for hour in self._hours(started):
            found.update(list_windows(s3, self.bucket, f"{self.prefix}{hour}/"))
        seen = time.time()
        self.listing_s.append(seen - started)
        for key, (etag, modified) in found.items():
            window = self.windows.get(key)
            if window is None:
                window = Window(key, seen, self._previous_start, modified, etag)
            elif window.etag != etag:
                window.etag = etag
                window.etag_changes += 1
            else:
                continue
            self._read(s3, window)
            with self.lock:
                self.windows[key] = window
        self._previous_start = started

    def _hours(self, now: float) -> Iterator[str]:
        at = datetime.fromtimestamp(self.since, UTC).replace(minute=0, second=0, microsecond=0)
        while at.timestamp() <= now:
            yield hive_partition(at)
            at += timedelta(hours=1)

    def _read(self, s3: S3Client, window: Window) -> None:
        body = s3.get_object(Bucket=self.bucket, Key=window.key)["Body"].read()
        docs = page_entries(body)  # a page: every window of one start (and shard)
        window.end = to_epoch(docs[0]["window_end"])
        window.revision = max(int(doc["revision"]) for doc in docs)
        window.record_count = sum(int(doc["record_count"]) for doc in docs)
        window.documents = len(docs)

    def _sample_lag(self, conn: sqlite3.Connection) -> None:
        with suppress(sqlite3.OperationalError):  # no table yet
            newest = conn.execute(f"SELECT timestamp FROM {TABLE} ORDER BY id DESC LIMIT 1")
            got = newest.fetchone()
            if got:
                self.behind.append(time.time() - to_epoch(got[0]))


def list_windows(s3: S3Client, bucket: str, prefix: str) -> dict[str, tuple[str, float]]:
    """key -> (ETag, LastModified) under ``prefix``; one listing per sensor partition if
    the prefix holds more keys than LocalStack paginates correctly."""
    page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=LISTING_LIMIT)
    if not page.get("IsTruncated"):
        return {
            o["Key"]: (o["ETag"], o["LastModified"].timestamp()) for o in page.get("Contents", [])
        }
    found: dict[str, tuple[str, float]] = {}
    for level in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    ):
        for sub in level.get("CommonPrefixes", []):
            found.update(list_windows(s3, bucket, sub["Prefix"]))
    return found


# -- the run -------------------------------------------------------------------------------


def feed_delay(now: float, window_s: int, duration_s: float, grace_s: float) -> float:
    """Seconds to wait before the feed starts so that a window boundary falls at least
    LEAD_S after its start and grace + TRAIL_S before its end (0 if it cannot)."""
    latest = duration_s - grace_s - TRAIL_S
    if latest < LEAD_S:
        return 0.0
    offset = (-now) % window_s  # the next boundary, seconds from now
    if offset < LEAD_S:
        offset += window_s
    return max(0.0, offset - latest)


@dataclass
class Transport:
    """Means over the live run from the services' histograms (markers subtracted)."""

    lag: dict[str, float]  # queue role -> mean seconds from SentTimestamp to receipt
    handler: dict[str, float]  # service -> mean handler seconds per receive


def histogram_means(
    texts: dict[str, str], before: dict[str, str], name: str
) -> dict[str, tuple[str, float]]:
    """service -> (queue label, mean of ``name`` since ``before``)."""
    out = {}
    for service, text in texts.items():
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, float] = defaultdict(float)
        for version, sign in ((text, 1), (before.get(service, ""), -1)):
            for sample, labels, value in metric_samples(version):
                if labels.get("service") != service:
                    continue
                queue = labels.get("queue", "")
                if sample == f"{name}_sum":
                    sums[queue] += sign * value
                elif sample == f"{name}_count":
                    counts[queue] += sign * value
        for queue, count in counts.items():
            if count > 0:
                out[service] = (queue, sums[queue] / count)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of live feed")
    parser.add_argument("--rate", type=float, default=10.0, help="readings/s, whole fleet")
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--locations", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=50, help="uploader rows per batch")
    parser.add_argument(
        "--poll-interval", type=float, default=0.5, help="uploader.poll_interval_seconds"
    )
    parser.add_argument("--scenario", choices=("aggregated", "notification"), default="aggregated")
    parser.add_argument("--markers", type=int, default=20, help="batches timed for the floor")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a short run: 30 s of feed, grace 2 s, idle flush 3 s, 5 markers",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.markers = 30.0, 5
        os.environ["SENSORPIPE__WINDOWING__GRACE_SECONDS"] = "2"
        os.environ["SENSORPIPE__WINDOWING__IDLE_FLUSH_SECONDS"] = "3"

    host = begin_run()  # the LocalStack started here (stopped at the end), or None
    workdir = Path(tempfile.mkdtemp(prefix="bench-window-latency-"))
    started = Started()
    ok = False
    try:
        ok = run(args, workdir, started)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut this short
        problems = started.stop_all()
        for problem in problems:
            print(f"stopping: {problem}", flush=True)
        if host is not None:
            host.stop()
        if ok and not args.keep and not problems:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory (logs): {workdir}", flush=True)
    return 0 if ok else 1


def run(args: argparse.Namespace, workdir: Path, started: Started) -> bool:
    t0 = time.monotonic()
    path = write_config(workdir, args)
    env = {**os.environ, "SENSORPIPE_PIPELINE_CONFIG": str(path)}
    config = load_pipeline_config(path, env=env)
    provision(config)
    windowing = config.windowing
    grace_s, idle_s, window_s = (
        windowing.grace_seconds,
        windowing.idle_flush_seconds,
        windowing.window_seconds,
    )
    commit_s = AggregatorSettings().commit_interval_seconds
    controller = PipelineController(
        config.pipeline.controller_db, valid_scenarios=config.scenario_names()
    )
    active = controller.set(args.scenario, "bench", "window latency benchmark").current
    print(
        f"window latency, live feed: {args.sensors} sensors at {args.locations} locations, "
        f"{args.rate:g} readings/s fleet-wide for {args.duration:g} s (event time = wall "
        f"time); scenario {active.scenario}; uploader batches of <= {args.batch_size} every "
        f"{config.uploader.poll_interval_seconds:g} s; {window_s} s windows, grace "
        f"{grace_s:g} s, idle flush {idle_s:g} s, aggregator commit interval {commit_s:g} s; "
        f"endpoint {os.environ['AWS_ENDPOINT_URL']}, {os.cpu_count()} cpus, load "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    logs = workdir / "logs"
    services = {
        name: ServiceProcess(f"services.{name}", env, logs, extra)
        for name, extra in (
            ("enricher", []),
            ("validator", []),
            ("router", []),
            ("aggregator", ["--shard", "0"]),
            ("notifier", ["--shard", "0"]),
        )
    }
    stateless = ("enricher", "validator", "router")
    started.start_services([services[n] for n in stateless])
    up_s = time.monotonic() - t0
    floors = measure_floor(config, workdir, active.scenario, active.config_version, args.markers)
    before = {n: services[n].metrics_text() for n in stateless}
    started.start_services([services["aggregator"], services["notifier"]])
    floor_s = time.monotonic() - t0

    db = workdir / "sensor_data.db"
    delay = feed_delay(time.time(), window_s, args.duration, grace_s)
    if delay:
        print(f"waiting {delay:.0f} s so that the feed crosses a window end", flush=True)
        time.sleep(delay)
    feed_start, feed_from_s = time.time(), time.monotonic() - t0
    watcher = Watcher(config, db, since=feed_start - window_s)
    started.watcher = watcher
    watcher.start()
    watcher.feeding.set()
    simulator = spawn(
        "simulator",
        ["edge.simulator", "--db", str(db), "--sensors", str(args.sensors),
         "--locations", str(args.locations), "--rate", str(args.rate),
         "--duration", str(args.duration), "--seed", "42"],
        env,
        logs,
    )  # fmt: skip
    started.commands["simulator"] = simulator
    deadline = time.monotonic() + 30
    while not _has_rows(db):
        if simulator.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the simulator wrote no row:\n{simulator.tail()}")
        time.sleep(0.05)
    uploader = spawn(
        "uploader",
        ["edge.uploader", "--db", str(db), "--batch-size", str(args.batch_size),
         "--state-dir", str(workdir / "state")],
        env,
        logs,
    )  # fmt: skip
    started.commands["uploader"] = uploader
    try:
        code = simulator.process.wait(timeout=args.duration + 60)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the simulator did not finish:\n{simulator.tail()}") from None
    watcher.feeding.clear()
    feed_to_s = time.monotonic() - t0
    if code != 0:
        raise RuntimeError(f"the simulator exited {code}:\n{simulator.tail()}")
    with closing(sqlite3.connect(db)) as conn:
        rows, last = conn.execute(f"SELECT COUNT(*), MAX(timestamp) FROM {TABLE}").fetchone()
    last_event = to_epoch(last)

    # The tail closes once the source has been idle; then every closed window is written.
    aggregator = services["aggregator"]
    restart_quiet = config.queues.visibility_timeout_seconds + 5
    wait_s = max(idle_s, restart_quiet - (time.time() - feed_start)) + 90
    deadline = time.monotonic() + wait_s
    while True:
        if uploader.process.poll() is not None:
            raise RuntimeError(f"the uploader exited:\n{uploader.tail()}")
        text = aggregator.metrics_text()
        closed = metric_total(text, "sensorpipe_aggregator_windows_total", what="closed")
        still_open = metric_total(text, "sensorpipe_aggregator_open_windows")
        seen = sum(w.documents for w in watcher.snapshot())
        if closed and not still_open and seen >= closed:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"windows not all written {wait_s:.0f} s after the feed ended: {closed:.0f} "
                f"closed, {still_open:.0f} open, {seen} seen"
            )
        time.sleep(0.5)
    written_s = time.monotonic() - t0
    time.sleep(2 * WATCH_INTERVAL_S)  # one more listing for anything written meanwhile
    texts = {name: service.metrics_text() for name, service in services.items()}
    watcher.stop.set()
    watcher.join(timeout=10)
    ok = report(args, config, floors, watcher, texts, before, rows=int(rows), last_event=last_event)
    print(
        f"timeline (s): provisioned and stateless stages up {up_s:.0f}, floor measured and "
        f"stateful stages up {floor_s:.0f}, feed {feed_from_s:.0f}-{feed_to_s:.0f}, every "
        f"window written {written_s:.0f}",
        flush=True,
    )
    return ok


def _has_rows(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(db, timeout=1)) as conn:
            return conn.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:
        return False


def report(
    args: argparse.Namespace,
    config: PipelineConfig,
    floors: list[float],
    watcher: Watcher,
    texts: dict[str, str],
    before: dict[str, str],
    *,
    rows: int,
    last_event: float,
) -> bool:
    grace_s = config.windowing.grace_seconds
    s3, sqs = s3_client(), sqs_client()
    aggregated = config.buckets.name(BucketKind.AGGREGATED)
    windows = watcher.snapshot()
    # Final state of every document, and its versions.
    versions = 0
    for window in windows:
        watcher._read(s3, window)
        listed = s3.list_object_versions(Bucket=aggregated, Prefix=window.key)
        versions += sum(v["Key"] == window.key for v in listed.get("Versions", [])) > 1
    by_watermark = [w for w in windows if w.end + grace_s <= last_event]
    tail = [w for w in windows if w.end + grace_s > last_event]
    seen = [w.first_seen - w.end for w in by_watermark]

    print(f"  {'measurement (seconds)':<52} {'n':>5} {'p50':>8} {'p95':>8} {'max':>8}")
    print(row(FLOOR, floors))
    print(row(SEEN, seen))
    print(row(ABSENT, [w.absent_at - w.end for w in by_watermark if not math.isnan(w.absent_at)]))
    print(row(MODIFIED, [w.last_modified - w.end for w in by_watermark]))
    print(row(ADDED, [v - grace_s for v in seen]))
    print(row(TAIL, [w.first_seen - last_event for w in tail]))
    print(row(BEHIND, watcher.behind))

    lags = histogram_means(texts, before, "sensorpipe_message_lag_seconds")
    handlers = histogram_means(texts, before, "sensorpipe_processing_duration_seconds")
    path = ("enricher", "validator", "router", "aggregator")
    prefix = f"{config.queues.prefix}-"
    hops = [(lags[s][0].removeprefix(prefix), lags[s][1]) for s in path if s in lags]
    print(
        "  live run, means from /metrics: per-hop lag "
        + ", ".join(f"[{queue}] {mean:.3f}" for queue, mean in hops)
        + f" s (sum {sum(m for _, m in hops):.3f} s); handler time per receive "
        + ", ".join(f"{s} {handlers[s][1]:.3f}" for s in path if s in handlers)
        + " s"
    )
    listing = watcher.listing_s
    if listing:
        print(
            f"  bucket listings: {len(listing)}, p50 {percentile(listing, 0.5) * 1000:.0f} ms, "
            f"max {max(listing) * 1000:.0f} ms (first seen is late by at most one "
            f"{WATCH_INTERVAL_S:g} s interval plus one listing)"
        )
    print(f"grace: {grace_s:g} s (windowing.grace_seconds)")

    # Revisions, late readings, completeness, dead letters.
    aggregator = texts["aggregator"]
    revised_metric = metric_total(aggregator, "sensorpipe_aggregator_windows_total", what="revised")
    revised = {w.key for w in windows if w.revision > 0 or w.etag_changes > 0}
    revised_count = max(len(revised), versions, int(revised_metric))
    error = config.buckets.name(BucketKind.ERROR)
    reasons: Counter[str] = Counter()
    rejected = 0
    for prefix in ("late/", "rejected/"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=error, Prefix=prefix):
            for obj in page.get("Contents", []):
                lines = read_jsonl(s3.get_object(Bucket=error, Key=obj["Key"])["Body"].read())
                if prefix == "late/":
                    reasons.update(str(line.get("reason")) for line in lines)
                else:
                    rejected += len(lines)
    late_metric = metric_total(
        aggregator, "sensorpipe_records_processed_total", service="aggregator", outcome="late"
    )
    late = max(sum(reasons.values()), int(late_metric))
    dead = sum(
        depth(sqs, queue_url(sqs, QueueSettings.dlq_name(q)))
        for q in config.queues.consumer_queues()
    )
    in_windows = sum(w.record_count for w in windows)
    ends = len({w.end for w in by_watermark})
    print(
        f"windows: {sum(w.documents for w in windows)} written in {len(windows)} page(s) "
        f"({len(by_watermark)} page(s) closed by the watermark at {ends} window end(s), "
        f"{len(tail)} by idle flush), {revised_count} revised (pages with more than one "
        f"version: {versions}, aggregator counter: {revised_metric:.0f})"
    )
    print(
        f"readings: {rows} in the database, {in_windows} in windows, {rejected} rejected; "
        f"{late} late (late/ lines: {sum(reasons.values())}"
        + "".join(f", {reason}: {n}" for reason, n in sorted(reasons.items()))
        + f"; aggregator counter: {late_metric:.0f}); {dead} message(s) in DLQs"
    )
    failures = []
    if not by_watermark:
        failures.append("no window closed by the watermark was measured")
    if revised_count:
        failures.append(f"{revised_count} window(s) revised")
    if late:
        failures.append(f"{late} reading(s) in late/")
    if in_windows + rejected != rows:
        failures.append(f"{rows} rows but {in_windows} in windows + {rejected} rejected")
    if dead:
        failures.append(f"{dead} message(s) in dead-letter queues")
    failures += [f"bucket watcher: {e}" for e in watcher.errors[:3]]
    for failure in failures:
        print(f"FAIL: {failure}")
    return not failures


if __name__ == "__main__":
    raise SystemExit(main())
