"""End to end through ``notification``: throughput, CPU and memory per stage, latency, bytes.

    .venv/bin/python benchmarks/bench_e2e.py [--rows 50000] [--sensors 50] [--locations 5]
        [--event-rate 50] [--live-rate 5000] [--live-seconds 60] [--live-sensors 100]
        [--live-locations 16] [--repeat 3] [--json PATH] [--keep] [--smoke] [--profile DIR]

One pipeline of its own (a fresh prefix in LocalStack: $AWS_ENDPOINT_URL, else one
started or reused on 127.0.0.1:$LOCALSTACK_PORT or 4566), scenario ``notification``
(lineage, validation, archival bucket, aggregator, notifier), every stage a real
``python -m services.<name>`` process with one shard each. The config is the packaged
default except: the uploader polls every 0.5 s; ``--grace`` (10 s, the default);
``--idle-flush`` (5 s) so the last windows of a finite feed close within seconds, not 30
(no source counts as idle within the lease + 5 s, 15 s, of a stateful stage's start);
notification cool-down ``--cooldown`` (20 s) so a location can burst more than once a
run. All are printed.

1. **Throughput.** The simulator writes ``--rows`` rows (``--sensors`` at
   ``--locations``, ``--event-rate`` readings per event-time second, 1 % invalid,
   anomalies at 1 %) with event times ending in the past. The real uploader
   (``edge.uploader.Uploader.drain``, in this process) sends them to ``[ingest]`` as
   fast as it can; its envelopes are kept for the baselines. Figures: first send to
   *drained* (every pipeline queue empty, visible and in flight: the stateful stages
   hold messages until a checkpoint includes them), and first send to *the last
   window and notification written* (the aggregator has no open window and the
   notifier's watermark reached the source's progress: see ``settled``; the tail waits
   for the idle flush, so this includes it). CPU per
   process is utime + stime from ``/proc/<pid>/stat`` before the first send and once
   drained, divided by the rows; LocalStack's too (its pid from
   ``sensorpipe.devstack.localstack``'s pid file, else the process listening on the
   endpoint's port). Peak RSS is ``VmHWM`` from ``/proc/<pid>/status`` (LocalStack's is
   since it started, hours ago perhaps). Objects and bytes per bucket are listed once
   drained.
2. **Latency.** A live feed, as ``bench_window_latency`` runs one: the simulator in real
   time (event time is wall time) at ``--live-rate`` readings/s and the uploader
   following it (``python -m edge.uploader``), into the same services. Latency is the
   notification received from the FIFO queue (``live_pipeline.Inbox``) minus its last
   member reading's event time (the greatest instant among its ``reading_keys``);
   bursts decided by the idle flush after the feed ended (last member within the grace
   of the feed's end) are the *tail*, printed apart. The achieved rate (rows written /
   seconds) and the simulator's lag (wall clock minus the newest row's event time) say
   whether the feed was steady at the asked rate; the ``[ingest]`` depth says whether
   the pipeline kept up.
3. **Baselines, same run, same envelopes.** (a) *fused*: one process, no queues and no
   S3, calling the stages' own functions in order: ``enrich_envelope``, the validator's
   ``validate_envelope`` + ``error_objects`` (bytes rendered), ``RoutedBatch.of`` + the
   archival writer's ``render``, the router's shard ``envelopes``, the aggregator's
   stage (``build_stage``: prepare, apply, advance to progress - grace, flush to an
   in-memory store) and the notifier's stage (apply, advance, flush: ledger in memory,
   the FIFO send counted, not made); CPU time, best of ``--repeat``. (b) *transport
   ceiling*: the same messages through the same hops ([ingest] -> [enriched] ->
   [validated] -> [aggregate-0] + [notify-0]) with ``benchmarks.forwarder`` processes
   that only receive, forward the body untouched and delete; wall time, first send to
   both sinks done, with its own CPU per process. (c) *codec*: ``encode_to_fit`` +
   ``decode`` of the same envelopes, CPU time, best of ``--repeat``.

Prints tables and writes JSON (``--json``, default ``bench_e2e.json`` in the run's work
directory, which is then kept; with ``--json`` it is removed after a good run) with the
commit, the machine and every figure. Checks (exit 1 if one fails): every stage counted
the rows sent (enricher and validator all of them, router and aggregator the valid ones,
notifier the anomalous ones, decided or pending), the fused baseline made the pipeline's
windows and notifications, every notification sent was received, and the dead-letter
queues are empty. Nothing is asserted on time. Every process started here is stopped by
its pid at the end, also on errors, Ctrl-C or SIGTERM.
``--smoke``: a few thousand rows and a short live feed, for the test suite.

``--profile DIR``: the throughput phase's stages run under ``py-spy record --format raw
--rate 100 --nonblocking`` (``ServiceProcess``'s launcher; signals go to the service,
whose exit makes py-spy write), one collapsed-stack file per stage, ``DIR/<stage>.txt``,
over the stage's whole life in that phase; at the end each stage's top functions by
inclusive and by self share of its samples, imports left out (``benchmarks.hot_spots``),
are printed and written to the JSON. Only that phase is profiled: the baselines and the
latency phase run as without it. The sampler shares the cores, so that phase's figures
are a profiled run's; without ``--profile`` nothing changes.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
import yaml
from botocore.exceptions import BotoCoreError, ClientError

from edge.simulator.simulation import Simulation, SimulationOptions
from edge.uploader import CheckpointStore, SensorSource, Uploader, UploadOptions
from sensorpipe.aws import queue_url, s3_client, sqs_client
from sensorpipe.config import PipelineConfig, load_pipeline_config, load_validation_spec
from sensorpipe.config.loading import PIPELINE_CONFIG_FILE, default_file
from sensorpipe.config.pipeline import BucketKind, QueueSettings
from sensorpipe.controller import PipelineController
from sensorpipe.devstack.localstack import LocalStackHost
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Encoded, Envelope, decode, encode_to_fit
from sensorpipe.lineage import enrich_envelope, process_lineage
from sensorpipe.objects import ObjectWriter
from sensorpipe.pages import is_page_key, page_entries
from sensorpipe.provisioning import provision
from sensorpipe.runtime import EnvelopeProducer
from sensorpipe.stateful import Batch
from sensorpipe.store import MemoryObjectStore
from services.aggregator.config import AggregatorSettings
from services.aggregator.handler import build_stage
from services.notifier.config import resolve
from services.notifier.dedupe import NotificationLedger, NotificationSender
from services.notifier.handler import Metrics as NotifierMetrics
from services.notifier.stage import NotifierStage
from services.router.destinations import (
    AggregatorForwarder,
    ArchivalWriter,
    NotifierForwarder,
    RoutedBatch,
)
from services.validator.batch import BatchValidator, error_objects

if not __package__:  # run as a script (python benchmarks/<name>.py): import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hot_spots import IMPORT, HotSpots, hot_spots
from benchmarks.live_pipeline import (
    Inbox,
    Note,
    Started,
    begin_run,
    delete_pipeline,
    depth,
    metric_total,
    spawn,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

ROOT = Path(__file__).resolve().parents[1]
TABLE = "sensor_readings"
SCENARIO = "notification"
POLL_S = 0.25
WATERMARK = "sensorpipe_watermark_timestamp_seconds"  # set at each commit
COMMITTED_S = 1.5  # beyond the aggregator's (0.5 s) and the notifier's (0.25 s) commit
US = 1_000_000
STAGES = ("enricher", "validator", "router", "aggregator", "notifier")
HOPS = ("enricher-hop", "validator-hop", "router-hop", "aggregator-sink", "notifier-sink")

# Row labels (the smoke test looks for them).
DRAINED = "pipeline: first send -> drained (queues empty)"
WRITTEN = "pipeline: first send -> last window + notification"
FUSED = "baseline (a) fused, one process, no queues (CPU)"
CEILING = "baseline (b) transport ceiling, forward only (wall)"
CODEC = "baseline (c) codec encode_to_fit + decode (CPU)"
STEADY = "event -> notification received (steady)"
ADDED = "  minus the grace: what the pipeline adds"
TAIL = "tail, idle flush: last member -> received"
BEHIND = "live feed: simulator lag (wall - newest event)"
BACKLOG = "live feed: [ingest] depth (messages)"
PROFILE_RATE = 100  # py-spy samples per second
HOT_SPOTS = 8  # functions printed per stage and share


# -- /proc -----------------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM``: the process's peak resident set size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def localstack_pid(endpoint: str) -> int | None:
    """LocalStack's pid: from its pid file when that process is alive, else the process
    that listens on the endpoint's port (None when neither can be told)."""
    port = int(endpoint.rsplit(":", 1)[1].split("/")[0])
    with suppress(OSError, ValueError):
        pid = int(LocalStackHost(port=port).pid_file.read_text().strip())
        if Path(f"/proc/{pid}").exists():
            return pid
    return listening_pid(port)


def listening_pid(port: int) -> int | None:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        with suppress(OSError):
            out[name] = cpu_seconds(pid)
    return out


# -- figures ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest rank on the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


@dataclass
class Rate:
    label: str
    readings: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else math.nan


@dataclass
class Usage:
    """CPU seconds and peak RSS of one process over a measured span."""

    cpu_s: float
    peak_rss: int = 0


# -- the pipeline ----------------------------------------------------------------------


@dataclass
class Pipeline:
    """One provisioned pipeline of this run, its config file and its services."""

    config: PipelineConfig
    env: dict[str, str]  # the services' environment (SENSORPIPE_PIPELINE_CONFIG set)
    workdir: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.config.queues.prefix

    def pids(self) -> dict[str, int]:
        return {n: s.service_pid for n, s in self.services.items() if s.process is not None}


def set_up(workdir: Path, args: argparse.Namespace) -> Pipeline:
    """A pipeline of its own prefix, provisioned, scenario ``notification`` active."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(default_file(PIPELINE_CONFIG_FILE).read_text())
    prefix = f"be2e{uuid.uuid4().hex[:8]}"
    base["buckets"]["prefix"] = prefix
    base["queues"]["prefix"] = prefix
    base["pipeline"]["controller_db"] = str(workdir / "pipeline_config.db")
    base["uploader"].update(
        poll_interval_seconds=0.5, state_dir=str(workdir / "state"), source_name="bench-e2e"
    )
    base["windowing"].update(grace_seconds=args.grace, idle_flush_seconds=args.idle_flush)
    if args.body_format is not None:
        base["runtime"]["body_format"] = args.body_format
    base["notification"]["cooldown_seconds"] = args.cooldown
    path = workdir / "pipeline-config-v2.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    env = {**os.environ, "SENSORPIPE_PIPELINE_CONFIG": str(path)}
    config = load_pipeline_config(path, env=env)
    provision(config)
    controller = PipelineController(
        config.pipeline.controller_db, valid_scenarios=config.scenario_names()
    )
    controller.set(SCENARIO, "bench", "end-to-end benchmark")
    return Pipeline(config, env, workdir)


def start_stages(pipeline: Pipeline, started: Started, profile: Path | None = None) -> Inbox:
    """Every stage as its own process (one shard each), and a receiver of notifications;
    with ``profile``, each under py-spy writing ``profile/<stage>.txt``."""
    logs = pipeline.workdir / "logs"
    pipeline.services = {
        name: ServiceProcess(
            f"services.{name}",
            pipeline.env,
            logs,
            ["--shard", "0"] if name in ("aggregator", "notifier") else [],
            launcher=[] if profile is None else py_spy(profile / f"{name}.txt"),
        )
        for name in STAGES
    }
    started.start_services(list(pipeline.services.values()))
    sqs = sqs_client()
    inbox = Inbox(queue_url(sqs, pipeline.config.queues.notifications))
    started.watcher = inbox
    inbox.start()
    return inbox


def py_spy(out: Path) -> list[str]:
    """The launcher that samples a service into ``out`` (collapsed stacks) until it exits."""
    beside = Path(sys.executable).parent / "py-spy"  # the venv's
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy (pip install -e '.[dev]')")
    rate = str(PROFILE_RATE)
    # --nonblocking: the service is not paused at each sample, and py-spy then tells an
    # idle thread (a long poll, a heartbeat's wait) from a running one; paused, idle
    # threads showed up as active in a few per cent of their samples.
    return [found, "record", "--output", str(out), "--format", "raw", "--rate", rate,
            "--nonblocking", "--"]  # fmt: skip


def profiles(directory: Path) -> dict[str, HotSpots]:
    """Each stage's hot spots, from the files py-spy wrote when the stages exited."""
    out = {}
    for name in STAGES:
        path = directory / f"{name}.txt"
        if path.exists():
            lines = path.read_text().splitlines()
            out[name] = hot_spots(lines, top=HOT_SPOTS, without={IMPORT})
    return out


def stop_stages(started: Started) -> None:
    """Stop what runs (the inbox, the services, the live feed's tools) and forget it."""
    for problem in started.stop_all():
        print(f"stopping: {problem}", flush=True)
    started.services.clear()
    started.commands.clear()
    started.watcher = None


def dead_letters(config: PipelineConfig) -> int:
    sqs = sqs_client()
    return sum(
        depth(sqs, queue_url(sqs, QueueSettings.dlq_name(q)))
        for q in config.queues.consumer_queues()
    )


def pipeline_queues(config: PipelineConfig) -> list[str]:
    """The queues a reading passes, in the order it passes them."""
    q = config.queues
    return [q.ingest, q.enriched, q.validated, *q.aggregate_shard_names(), *q.notify_shard_names()]


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``check`` until true; the time.monotonic() it was first seen true."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic()


def simulate(db: Path, rows: int, sensors: int, locations: int, rate: float) -> None:
    """``rows`` readings whose event times end about an hour before now."""
    span = timedelta(seconds=rows / rate)
    start = (datetime.now(UTC) - span - timedelta(hours=1)).replace(second=0, microsecond=0)
    Simulation(
        SimulationOptions(
            db=db,
            sensors=sensors,
            locations=locations,
            rate=rate,
            count=rows,
            seed=42,
            replay_start=start,
            invalid_fraction=0.01,
            anomaly_probability=0.01,
            commit_every=5000,
        )
    ).run()


@dataclass
class Recorder:
    """The uploader's sender: sends through the producer and keeps what it sent."""

    producer: EnvelopeProducer
    envelopes: list[Envelope] = field(default_factory=list)
    encoded: list[Encoded] = field(default_factory=list)
    first_send: float = math.nan

    def send(self, envelopes: list[Envelope]) -> list[Encoded]:
        if math.isnan(self.first_send):
            self.first_send = time.monotonic()
        sent = self.producer.send(envelopes)
        self.envelopes += envelopes
        self.encoded += sent
        return sent


def ingest_producer(config: PipelineConfig) -> EnvelopeProducer:
    sqs = sqs_client()
    ingest = config.queues.ingest
    return EnvelopeProducer(
        sqs,
        queue_url(sqs, ingest),
        ingest,
        max_body_bytes=config.queues.max_body_bytes,
        compress=config.runtime.compress,
        columnar=config.runtime.columnar,
        service="bench",
    )


def upload(config: PipelineConfig, db: Path, workdir: Path) -> tuple[Recorder, float]:
    """The real uploader drains ``db`` into [ingest]; (what it sent, its CPU seconds)."""
    recorder = Recorder(ingest_producer(config))
    options = config.uploader
    uploader = Uploader(
        source=SensorSource(db, TABLE),
        store=CheckpointStore(workdir / "state" / "bench-e2e.json"),
        controller=PipelineController(config.pipeline.controller_db),
        sender=recorder,
        options=UploadOptions(
            "bench-e2e",
            batch_size=options.batch_size,
            max_batch_bytes=options.max_batch_bytes,
            compress=config.runtime.compress,
            columnar=config.runtime.columnar,
        ),
        known_scenarios=config.scenario_names(),
        dry_run_out=io.StringIO(),
    )
    started = time.process_time()
    uploader.drain()
    uploader.source.close()
    return recorder, time.process_time() - started


# -- counting --------------------------------------------------------------------------


def counts(texts: dict[str, str]) -> dict[str, int]:
    """What each stage says it did with the records (from /metrics)."""

    def records(service: str, *outcomes: str) -> int:
        return round(
            sum(
                metric_total(
                    texts[service],
                    "sensorpipe_records_processed_total",
                    service=service,
                    outcome=outcome,
                )
                for outcome in outcomes
            )
        )

    notifier, aggregator = texts["notifier"], texts["aggregator"]
    return {
        "enricher": records("enricher", "enriched"),
        "validator": records("validator", "valid", "invalid", "filtered"),
        "valid": records("validator", "valid"),
        "invalid": records("validator", "invalid"),
        "filtered": records("validator", "filtered"),
        "anomalous": round(
            metric_total(
                texts["validator"], "sensorpipe_anomalous_records_total", service="validator"
            )
        ),
        "router": records("router", "routed"),
        "aggregator": records("aggregator", "fold", "duplicate", "revise", "late", "unusable"),
        # Every anomaly it got: decided (by outcome) or pending (the feed's last minute:
        # a burst could still form, and a finite feed never says it cannot).
        "notifier": round(
            metric_total(notifier, "sensorpipe_notifier_anomalies_total")
            + metric_total(notifier, "sensorpipe_notifier_pending_anomalies")
        ),
        "windows": round(
            metric_total(aggregator, "sensorpipe_aggregator_windows_total", what="closed")
        ),
        "notifications": round(
            metric_total(notifier, "sensorpipe_notifier_notifications_total", outcome="sent")
        ),
    }


def walk(s3: S3Client, bucket: str, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(key, size) of every object under ``prefix``; one listing per ``/`` level where a
    prefix holds more keys than LocalStack paginates correctly (1,000 with '=')."""
    page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1000)
    if not page.get("IsTruncated"):
        for item in page.get("Contents", []):
            yield item["Key"], item["Size"]
        return
    for level in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    ):
        for item in level.get("Contents", []):
            yield item["Key"], item["Size"]
        for sub in level.get("CommonPrefixes", []):
            yield from walk(s3, bucket, sub["Prefix"])


def bucket_usage(config: PipelineConfig) -> dict[str, dict[str, int]]:
    """Objects and bytes per bucket; checkpoints (``_checkpoints/``) on their own line."""
    s3 = s3_client()
    out: dict[str, dict[str, int]] = {}
    for kind in BucketKind:
        for key, size in walk(s3, config.buckets.name(kind)):
            name = f"{kind.value} (checkpoints)" if key.startswith("_checkpoints/") else kind.value
            entry = out.setdefault(name, {"objects": 0, "bytes": 0})
            entry["objects"] += 1
            entry["bytes"] += size
    return out


# -- (a) fused -------------------------------------------------------------------------


class CountingSQS:
    """Stands in for the notifier's FIFO queue: counts what would be sent."""

    def __init__(self) -> None:
        self.sent = 0

    def send_message(self, **_kwargs: Any) -> dict[str, Any]:
        self.sent += 1
        return {"MessageId": str(self.sent)}


@dataclass
class FusedRun:
    cpu_s: float
    windows: int
    notifications: int
    error_objects: int
    archival_objects: int


def fused_once(config: PipelineConfig, envelopes: list[Envelope]) -> FusedRun:
    """Every stage's work on every envelope, in order, in this process."""
    route = config.route(SCENARIO)
    assert route is not None
    lineage = process_lineage(
        stage="enricher",
        pipeline_name=config.pipeline.name,
        pipeline_version=config.pipeline.version,
    )
    validator = BatchValidator(
        load_validation_spec(config=config),
        config.filters,
        max_future_skew_seconds=config.validation.max_future_skew_seconds,
    )
    archival = ArchivalWriter(ObjectWriter(s3_client(), service="bench"), "unused")
    unused = cast("SQSClient", None)  # the forwarders' envelopes() only counts its shards
    to_aggregator = AggregatorForwarder([EnvelopeProducer(unused, "", "aggregate-0")])
    to_notifier = NotifierForwarder([EnvelopeProducer(unused, "", "notify-0")])
    aggregated = MemoryObjectStore("aggregated")
    aggregator = build_stage(config, aggregated, MemoryObjectStore("error"), AggregatorSettings())
    settings = resolve(config)
    queue = CountingSQS()
    notifier = NotifierStage(
        settings.rules,
        NotificationSender(
            cast("SQSClient", queue),
            "fused",
            NotificationLedger(MemoryObjectStore("archival"), settings.record_prefix),
            max_body_bytes=config.queues.max_body_bytes,
        ),
        MemoryObjectStore("error"),
        NotifierMetrics(),
        shard=0,
        shards=1,
        service="notifier",
    )
    grace_us = round(config.windowing.grace_seconds * US)
    window_us = config.windowing.window_seconds * US
    progress = -(2**62)
    errors = objects = 0
    started = time.process_time()
    for envelope in envelopes:
        enriched = enrich_envelope(envelope, lineage)
        result = validator.validate_envelope(enriched, apply_filters=route.filter)
        errors += len(error_objects(result))
        batch = RoutedBatch.of(result.forward)
        objects += len(archival.render(batch))
        if batch.max_event_us is not None:
            progress = max(progress, batch.max_event_us)
        for forwarder, stage, grace in (
            (to_aggregator, aggregator, grace_us),
            (to_notifier, notifier, settings.rules.grace_us),
        ):
            for _shard, part in forwarder.envelopes(batch):
                applied = Batch([part], batch_name(part))
                stage.prepare(applied)
                stage.apply(applied)
            stage.advance(progress - grace)
            stage.flush()
    # The end of the feed: the idle flush closes every window and decides every burst.
    aggregator.advance(progress + window_us)
    aggregator.flush()
    notifier.advance(progress)
    notifier.flush()
    cpu = time.process_time() - started
    windows = sum(  # window documents, in pages of one window start
        len(page_entries(stored.body))
        for key, stored in aggregated.objects.items()
        if is_page_key(key)
    )
    return FusedRun(cpu, windows, queue.sent, errors, objects)


def batch_name(part: Envelope) -> str:
    """The sequencer's name of a whole source batch."""
    if part.position is None:
        return part.batch_id
    return f"{part.position.stream}-b{part.position.seq:09d}"


def fused(config: PipelineConfig, envelopes: list[Envelope], repeat: int) -> FusedRun:
    runs = [fused_once(config, envelopes) for _ in range(repeat)]
    return min(runs, key=lambda run: run.cpu_s)


# -- (c) codec -------------------------------------------------------------------------


def codec(config: PipelineConfig, envelopes: list[Envelope], repeat: int) -> float:
    """Best CPU seconds of encode_to_fit + decode of every envelope."""
    best = math.inf
    for _ in range(repeat):
        started = time.process_time()
        for envelope in envelopes:
            for item in encode_to_fit(
                envelope,
                max_bytes=config.queues.max_body_bytes,
                compress=config.runtime.compress,
            ):
                decode(item.body, item.attributes)
        best = min(best, time.process_time() - started)
    return best


# -- (b) transport ceiling --------------------------------------------------------------


def forwarders(config: PipelineConfig, env: dict[str, str], logs: Path) -> list[ServiceProcess]:
    """Forward-only stages over the pipeline's hops, named as in HOPS."""
    q = config.queues
    aggregate, notify = q.aggregate_shard_names()[0], q.notify_shard_names()[0]
    hops: list[tuple[str, list[str]]] = [
        (q.ingest, [q.enriched]),
        (q.enriched, [q.validated]),
        (q.validated, [aggregate, notify]),
        (aggregate, []),
        (notify, []),
    ]
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return [
        ServiceProcess(
            "benchmarks.forwarder",
            {
                **env,
                "PYTHONPATH": path,
                "SENSORPIPE_FORWARD_SOURCE": source,
                "SENSORPIPE_FORWARD_TO": ",".join(targets),
            },
            logs,
            args=["--shard", str(index)],  # one log file each
        )
        for index, (source, targets) in enumerate(hops)
    ]


def ceiling(
    pipeline: Pipeline,
    started: Started,
    encoded: list[Encoded],
    localstack: int | None,
    wait_s: float,
) -> tuple[float, dict[str, Usage]]:
    """Wall seconds from the first send to both sinks done, and CPU per process."""
    config = pipeline.config
    hops = forwarders(config, pipeline.env, pipeline.workdir / "logs")
    started.start_services(hops)
    pids = {name: s.service_pid for name, s in zip(HOPS, hops, strict=True) if s.process}
    if localstack is not None:
        pids["localstack"] = localstack
    sinks = hops[3:]
    producer = ingest_producer(config)

    def done() -> bool:
        return all(
            metric_total(s.metrics_text(), "sensorpipe_messages_processed_total", outcome="ok")
            >= len(encoded)
            for s in sinks
        )

    before = cpu_of(pids)
    first = time.monotonic()
    producer.send_encoded(encoded)
    end = wait_for("transport ceiling", done, wait_s)
    after = cpu_of(pids)
    usage = {n: Usage(after[n] - before[n], peak_rss_bytes(p)) for n, p in pids.items()}
    for hop in hops:
        hop.terminate()
        started.services.pop(hop.name, None)
    return end - first, usage


# -- 1. throughput ---------------------------------------------------------------------


@dataclass
class Throughput:
    recorder: Recorder  # what the uploader sent
    sent: int  # rows
    drained_s: float  # first send -> every queue empty
    written_s: float  # first send -> last window closed, last notification received
    usage: dict[str, Usage]  # CPU from the first send until drained
    tallies: dict[str, int]  # counts()
    received: int  # notifications received
    buckets: dict[str, dict[str, int]]


def throughput(
    pipeline: Pipeline, db: Path, pids: dict[str, int], inbox: Inbox, wait_s: float
) -> Throughput:
    config, services = pipeline.config, pipeline.services
    sqs = sqs_client()
    urls = [queue_url(sqs, name) for name in pipeline_queues(config)]
    before = cpu_of(pids)
    recorder, uploader_cpu = upload(config, db, pipeline.workdir)
    drained = wait_for("drained", steadily(lambda: all_empty(sqs, urls)), wait_s)
    after = cpu_of(pids)
    usage = {"uploader (in bench)": Usage(uploader_cpu)}
    usage.update({n: Usage(after[n] - before[n]) for n in pids if n in after and n in before})

    last_window = settled(pipeline, wait_s)
    tallies = counts({n: s.metrics_text() for n, s in services.items()})
    wait_for("every notification", lambda: len(inbox.notes) >= tallies["notifications"], wait_s)
    # Wall clock of the last arrival, as a time.monotonic() reading.
    arrived = [time.monotonic() - (time.time() - note.arrived) for note in inbox.notes]
    return Throughput(
        recorder=recorder,
        sent=sum(len(e.records) for e in recorder.envelopes),
        drained_s=drained - recorder.first_send,
        written_s=max([last_window, *arrived]) - recorder.first_send,
        usage=usage,
        tallies=tallies,
        received=len(inbox.notes),
        buckets=bucket_usage(config),
    )


def settled(pipeline: Pipeline, wait_s: float) -> float:
    """Wait until a finite feed's last window is written and its last bursts are decided
    and published; the time.monotonic() of the later of the two.

    Both follow the idle flush. The aggregator then has no open window (its idle lift
    is a window: every window closes) and writes the closed ones at its next commit. The
    notifier lifts an idle source by 0: its watermark becomes the source's progress,
    which is the aggregator's final watermark minus a window; anomalies of the feed's
    last minute stay pending (a burst could still form), so "nothing pending" never
    comes. Watermarks are published at the commit, after the outputs."""
    aggregator, notifier = pipeline.services["aggregator"], pipeline.services["notifier"]
    window_s = pipeline.config.windowing.window_seconds

    def closed() -> bool:
        return not metric_total(aggregator.metrics_text(), "sensorpipe_aggregator_open_windows")

    last_window = wait_for("the last window closed", closed, wait_s)
    time.sleep(COMMITTED_S)  # the closed windows are written at the commit
    final = metric_total(aggregator.metrics_text(), WATERMARK) - window_s

    def decided() -> bool:
        return metric_total(notifier.metrics_text(), WATERMARK) >= final - 1e-3

    return max(last_window, wait_for("the last bursts decided", decided, wait_s))


def all_empty(sqs: SQSClient, urls: list[str]) -> bool:
    """Every queue empty, visible and in flight (stops at the first that is not)."""
    return all(depth(sqs, url) == 0 for url in urls)


def steadily(check: Callable[[], bool], times: int = 2) -> Callable[[], bool]:
    """``check`` true on ``times`` polls in a row."""
    seen = [0]

    def again() -> bool:
        seen[0] = seen[0] + 1 if check() else 0
        return seen[0] >= times

    return again


# -- 2. latency ------------------------------------------------------------------------


@dataclass
class Live:
    rows: int
    seconds: float
    latencies: list[float]
    tail: list[float]
    behind: list[float]
    backlog: list[float]


def last_member_s(note: Note) -> float:
    """The newest event time among a notification's readings (``sensor|instant``)."""
    return max(datetime.fromisoformat(k.rsplit("|", 1)[1]).timestamp() for k in note.reading_keys)


def newest_event_s(db: Path) -> float | None:
    with suppress(sqlite3.Error), closing(sqlite3.connect(db, timeout=1)) as conn:
        got = conn.execute(f"SELECT timestamp FROM {TABLE} ORDER BY id DESC LIMIT 1").fetchone()
        if got:
            return datetime.fromisoformat(got[0]).timestamp()
    return None


def live_feed(args: argparse.Namespace, pipeline: Pipeline, started: Started, inbox: Inbox) -> Live:
    config, env, workdir = pipeline.config, pipeline.env, pipeline.workdir
    logs = workdir / "logs"
    db = workdir / "live.db"
    feed_start = time.time()
    simulator = spawn(
        "simulator",
        ["edge.simulator", "--db", str(db), "--sensors", str(args.live_sensors),
         "--locations", str(args.live_locations), "--rate", str(args.live_rate),
         "--duration", str(args.live_seconds), "--seed", "43"],
        env,
        logs,
    )  # fmt: skip
    started.commands["simulator"] = simulator

    def writing() -> bool:
        if simulator.process.poll() not in (None, 0):
            raise RuntimeError(f"the simulator exited:\n{simulator.tail()}")
        return newest_event_s(db) is not None

    wait_for("the simulator's first row", writing, args.wait)
    uploader = spawn(
        "uploader",
        ["edge.uploader", "--db", str(db), "--batch-size", str(config.uploader.batch_size),
         "--state-dir", str(workdir / "live-state")],
        env,
        logs,
    )  # fmt: skip
    started.commands["uploader"] = uploader
    sqs = sqs_client()
    ingest = queue_url(sqs, config.queues.ingest)
    behind: list[float] = []
    backlog: list[float] = []
    while simulator.process.poll() is None:
        newest = newest_event_s(db)
        if newest is not None:
            behind.append(time.time() - newest)
        backlog.append(float(depth(sqs, ingest)))
        time.sleep(1.0)
    if simulator.process.returncode != 0:
        raise RuntimeError(f"the simulator exited {simulator.process.returncode}")
    with closing(sqlite3.connect(db)) as conn:
        rows, first, last = conn.execute(
            f"SELECT COUNT(*), MIN(timestamp), MAX(timestamp) FROM {TABLE}"
        ).fetchone()
    first_event, last_event = (datetime.fromisoformat(t).timestamp() for t in (first, last))
    # The uploader's last polls, the pipeline emptied, then the idle flush's decisions.
    time.sleep(2 * config.uploader.poll_interval_seconds + 1)
    urls = [queue_url(sqs, name) for name in pipeline_queues(config)]
    wait_for("the live feed drained", steadily(lambda: all_empty(sqs, urls)), args.wait)
    settled(pipeline, args.wait)
    time.sleep(1.0)  # the last notifications' trip from the FIFO queue
    uploader.stop()
    grace = config.windowing.grace_seconds
    latencies: list[float] = []
    tail: list[float] = []
    for note in inbox.notes:
        last_member = last_member_s(note)
        if last_member < feed_start:
            continue  # the throughput phase's
        (tail if last_member > last_event - grace else latencies).append(note.arrived - last_member)
    return Live(int(rows), last_event - first_event, latencies, tail, behind, backlog)


# -- the run ---------------------------------------------------------------------------


def commit() -> str:
    with suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    return "unknown"


def machine() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "load": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, help="rows of the throughput phase (50,000)")
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--locations", type=int, default=5)
    parser.add_argument(
        "--event-rate", type=float, default=50.0, help="readings per event-time second"
    )
    parser.add_argument("--live-rate", type=float, default=5000.0, help="live readings/s")
    parser.add_argument("--live-seconds", type=float, default=60.0)
    parser.add_argument("--live-sensors", type=int, default=100)
    parser.add_argument(
        "--live-locations", type=int, default=16, help="at most 16 (the simulator's cities)"
    )
    parser.add_argument("--grace", type=float, default=10.0, help="windowing.grace_seconds")
    parser.add_argument("--idle-flush", type=float, default=5.0, help="windowing.idle_flush")
    parser.add_argument("--cooldown", type=float, default=20.0, help="notification cool-down")
    parser.add_argument(
        "--body-format", choices=["arrow", "json"], help="runtime.body_format (the config's)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of, for (a) and (c)")
    parser.add_argument(
        "--wait", type=float, default=600.0, help="longest wait for a phase's step, s"
    )
    parser.add_argument("--json", type=Path, help="where to write the figures")
    parser.add_argument("--keep", action="store_true", help="keep databases and state too")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="3,000 rows (unless --rows), a 10 s live feed at 300/s, grace 2 s, idle flush "
        "3 s, best of 1",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run the throughput phase's stages under py-spy (raw collapsed stacks "
        "DIR/<stage>.txt) and print each stage's top functions; the baselines and the "
        "latency phase are not profiled (no time saved); that phase's figures are then a "
        "profiled run's",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows = args.rows or 3000
        args.live_rate, args.live_seconds, args.repeat = 300.0, 10.0, 1
        args.live_sensors, args.live_locations = 30, 10
        args.grace, args.idle_flush = 2.0, 3.0
        args.wait = min(args.wait, 40.0)  # within the test's timeout: no orphans
    args.rows = args.rows or 50_000

    host = begin_run()  # the LocalStack started here (stopped at the end), or None
    # The config says what it sets; nothing inherited may change it.
    for key in [k for k in os.environ if k.startswith(("SENSORPIPE_NOTIFIER_", "SENSORPIPE__"))]:
        del os.environ[key]
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    started = Started()
    made: list[str] = []  # prefixes of the pipelines provisioned
    ok = False
    try:
        ok = run(args, workdir, started, made)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut this short
        for problem in started.stop_all():
            print(f"stopping: {problem}", flush=True)
        for prefix in made:
            try:
                delete_pipeline(prefix)
            except (BotoCoreError, ClientError) as exc:
                print(f"deleting pipeline {prefix}: {exc}", flush=True)
        if host is not None:
            host.stop()
        if ok and args.json is not None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)  # the figures are elsewhere
        else:
            if not args.keep:
                for path in workdir.glob("*/*.db*"):
                    path.unlink(missing_ok=True)
            print(f"work directory: {workdir}", flush=True)
    return 0 if ok else 1


def run(args: argparse.Namespace, workdir: Path, started: Started, made: list[str]) -> bool:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    localstack = localstack_pid(endpoint)
    figures: dict[str, Any] = {
        "commit": commit(),
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "endpoint": endpoint,
        "localstack_pid": localstack,
    }
    print(
        f"end to end, scenario {SCENARIO}, one shard per stage: {args.rows} rows "
        f"({args.sensors} sensors, {args.locations} locations, {args.event_rate:g} readings "
        f"per event-time s); live feed {args.live_rate:g} readings/s for "
        f"{args.live_seconds:g} s; grace {args.grace:g} s, idle flush {args.idle_flush:g} s, "
        f"cool-down {args.cooldown:g} s; bodies {args.body_format or 'as configured'}; "
        f"endpoint {endpoint} "
        f"(LocalStack pid {localstack}); commit {figures['commit'][:12]}; {os.cpu_count()} "
        f"cpus, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    # 1. throughput, on a pipeline of its own
    bulk = set_up(workdir / "throughput", args)
    made.append(bulk.prefix)
    db = bulk.workdir / "sensor_data.db"
    simulate(db, args.rows, args.sensors, args.locations, args.event_rate)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        print(f"profiling the throughput phase's stages with py-spy into {args.profile}")
    inbox = start_stages(bulk, started, args.profile)
    pids = bulk.pids()
    if localstack is not None:
        pids["localstack"] = localstack
    phase = throughput(bulk, db, pids, inbox, args.wait)
    for name, pid in pids.items():
        with suppress(OSError):
            phase.usage[name].peak_rss = peak_rss_bytes(pid)
    dead = dead_letters(bulk.config)
    life_cpu = cpu_of(pids)  # since each started: what the samples are to be held against
    stop_stages(started)  # py-spy writes each profile as its stage exits
    spots = {} if args.profile is None else profiles(args.profile)

    # 3. baselines, on the same envelopes (the ceiling on the same, now empty, queues)
    ceiling_s, ceiling_usage = ceiling(bulk, started, phase.recorder.encoded, localstack, args.wait)
    fused_run = fused(bulk.config, phase.recorder.envelopes, args.repeat)
    codec_s = codec(bulk.config, phase.recorder.envelopes, args.repeat)

    # 2. latency: a fresh pipeline (the bulk source would hold its watermark back)
    fresh = set_up(workdir / "live", args)
    made.append(fresh.prefix)
    inbox = start_stages(fresh, started)
    live = live_feed(args, fresh, started, inbox)
    dead += dead_letters(fresh.config)
    stop_stages(started)

    sent = phase.sent
    rates = [
        Rate(DRAINED, sent, phase.drained_s),
        Rate(WRITTEN, sent, phase.written_s),
        Rate(FUSED, sent, fused_run.cpu_s),
        Rate(CEILING, sent, ceiling_s),
        Rate(CODEC, sent, codec_s),
    ]
    figures.update(
        rows=sent,
        messages=len(phase.recorder.encoded),
        rates={r.label: {"readings": r.readings, "seconds": r.seconds, "per_s": r.per_s}
               for r in rates},
        cpu={n: asdict(u) for n, u in phase.usage.items()},
        ceiling_cpu={n: asdict(u) for n, u in ceiling_usage.items()},
        fused=asdict(fused_run),
        counts={**phase.tallies, "sent": sent, "received": phase.received, "dead_letters": dead},
        buckets=phase.buckets,
        live={
            "rows": live.rows,
            "seconds": live.seconds,
            "rate": live.rows / live.seconds if live.seconds > 0 else math.nan,
            "asked_rate": args.live_rate,
            "grace": args.grace,
            "latency": spread(live.latencies),
            "tail": spread(live.tail),
            "behind": spread(live.behind),
            "backlog": spread(live.backlog),
        },
    )  # fmt: skip
    if args.profile is not None:
        figures["profile"] = {
            n: {**asdict(h), "life_cpu_s": life_cpu.get(n)} for n, h in spots.items()
        }
    ok = report(figures, rates, phase.usage, ceiling_usage, live, args.grace)
    if args.profile is not None:
        report_profiles(spots, life_cpu, args.profile)
    out = args.json or workdir / "bench_e2e.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print(f"json: {out}", flush=True)
    return ok


# -- the report ------------------------------------------------------------------------


def report(
    figures: dict[str, Any],
    rates: list[Rate],
    usage: dict[str, Usage],
    ceiling_usage: dict[str, Usage],
    live: Live,
    grace: float,
) -> bool:
    sent = int(figures["rows"])
    base = rates[0].per_s
    print(f"\n  {'throughput':<52} {'readings':>9} {'seconds':>9} {'readings/s':>11} "
          f"{'vs drained':>10}")  # fmt: skip
    for rate in rates:
        print(
            f"  {rate.label:<52} {rate.readings:>9} {rate.seconds:>9.3f} {rate.per_s:>11,.0f} "
            f"{rate.per_s / base:>9.2f}x"
        )
    fused_us = figures["fused"]["cpu_s"] / sent * US
    print(f"\n  {'CPU per process (throughput phase)':<36} {'CPU s':>8} {'us/reading':>11} "
          f"{'vs fused':>9} {'peak RSS MiB':>13}")  # fmt: skip
    stage_total = sum(u.cpu_s for n, u in usage.items() if n != "localstack")
    rows = [
        *[(n, u) for n, u in usage.items() if n != "localstack"],
        ("total, stages", Usage(stage_total)),
    ]
    if "localstack" in usage:
        rows += [
            ("localstack", usage["localstack"]),
            ("total, stages + localstack", Usage(stage_total + usage["localstack"].cpu_s)),
        ]
    for name, use in rows:
        print(cpu_line(name, use, sent, fused_us))
    print(cpu_line("baseline (a) fused", Usage(figures["fused"]["cpu_s"]), sent, fused_us))
    print(f"\n  {'CPU per process (transport ceiling)':<36} {'CPU s':>8} {'us/reading':>11} "
          f"{'vs fused':>9} {'peak RSS MiB':>13}")  # fmt: skip
    for name, use in ceiling_usage.items():
        print(cpu_line(name, use, sent, fused_us))
    hops = sum(u.cpu_s for n, u in ceiling_usage.items() if n != "localstack")
    print(cpu_line("total, forwarders", Usage(hops), sent, fused_us))

    print(f"\n  {'latency (seconds)':<52} {'n':>5} {'p50':>8} {'p99':>8} {'max':>8}")
    print(spread_line(STEADY, live.latencies))
    print(spread_line(ADDED, [v - grace for v in live.latencies]))
    print(spread_line(TAIL, live.tail))
    print(spread_line(BEHIND, live.behind))
    print(spread_line(BACKLOG, live.backlog))
    achieved = live.rows / live.seconds if live.seconds > 0 else math.nan
    print(
        f"  live feed: {live.rows} rows in {live.seconds:.1f} s = {achieved:,.0f} readings/s "
        f"(asked {figures['live']['asked_rate']:,.0f}); grace {grace:g} s"
    )

    print(
        f"\n  {'bucket (throughput phase)':<36} {'objects':>8} {'bytes':>12} {'bytes/reading':>14}"
    )
    for name, entry in sorted(figures["buckets"].items()):
        print(
            f"  {name:<36} {entry['objects']:>8} {entry['bytes']:>12} "
            f"{entry['bytes'] / sent:>14.1f}"
        )

    c, fused_run = figures["counts"], figures["fused"]
    print(
        f"\ncounts: sent {sent}, enricher {c['enricher']}, validator {c['validator']} (valid "
        f"{c['valid']}, invalid {c['invalid']}, filtered {c['filtered']}), router "
        f"{c['router']}, aggregator {c['aggregator']}; anomalous {c['anomalous']}, notifier "
        f"{c['notifier']}; windows {c['windows']} (fused {fused_run['windows']}), "
        f"notifications {c['notifications']} (received {c['received']}, fused "
        f"{fused_run['notifications']}); {figures['messages']} messages into [ingest]; "
        f"{c['dead_letters']} in DLQs"
    )
    failures = []
    if not c["enricher"] == c["validator"] == sent:
        failures.append(f"{sent} rows sent, enricher {c['enricher']}, validator {c['validator']}")
    if not c["router"] == c["aggregator"] == c["valid"]:
        failures.append(f"{c['valid']} valid, router {c['router']}, aggregator {c['aggregator']}")
    if c["notifier"] != c["anomalous"]:
        failures.append(f"{c['anomalous']} anomalous, notifier {c['notifier']}")
    if c["windows"] != fused_run["windows"] or not c["windows"]:
        failures.append(f"windows: pipeline {c['windows']}, fused {fused_run['windows']}")
    if not c["notifications"] == fused_run["notifications"] == c["received"]:
        failures.append(
            f"notifications: pipeline {c['notifications']}, fused "
            f"{fused_run['notifications']}, received {c['received']}"
        )
    if not live.latencies:
        failures.append("no notification of the live feed measured")
    if c["dead_letters"]:
        failures.append(f"{c['dead_letters']} message(s) in dead-letter queues")
    for failure in failures:
        print(f"FAIL: {failure}")
    figures["failures"] = failures
    return not failures


def report_profiles(
    spots: dict[str, HotSpots], life_cpu: dict[str, float], directory: Path
) -> None:
    print(
        f"\nwhere each stage spends its CPU (py-spy, {PROFILE_RATE} samples/s of its active "
        f"threads, the stage's life in the throughput phase, imports left out; share of "
        f"the stage's samples; {directory}). Samples / {PROFILE_RATE} is active thread "
        f"time, CPU or waiting for a core: held against the CPU of the stage's life"
    )
    for name in STAGES:
        if name not in spots:
            print(f"\n  {name}: no profile written")
            continue
        spot = spots[name]
        cpu = life_cpu.get(name, math.nan)
        print(
            f"\n  {name}: {spot.samples} samples ({spot.left_out} more in imports) = "
            f"{(spot.samples + spot.left_out) / PROFILE_RATE:.2f} s active; {cpu:.2f} s CPU "
            f"in its life"
        )
        for title, shares in (("inclusive", spot.inclusive), ("self", spot.own)):
            print(f"    {title}")
            for share in shares:
                print(f"    {share.share:>6.1%} {share.samples:>6}  {share.function}")


def cpu_line(name: str, use: Usage, readings: int, fused_us: float) -> str:
    us = use.cpu_s / readings * US
    rss = f"{use.peak_rss / 2**20:>13.0f}" if use.peak_rss else f"{'':>13}"
    return f"  {name:<36} {use.cpu_s:>8.2f} {us:>11.1f} {us / fused_us:>8.2f}x {rss}"


def spread_line(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<52} {0:>5} {'-':>8} {'-':>8} {'-':>8}"
    p50, p99, top = percentile(values, 0.5), percentile(values, 0.99), max(values)
    return f"  {label:<52} {len(values):>5} {p50:>8.2f} {p99:>8.2f} {top:>8.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
