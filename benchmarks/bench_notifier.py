"""Event-to-notification latency of the real notifier through LocalStack (p50, p99, max).

    .venv/bin/python benchmarks/bench_notifier.py [--seconds 30] [--rate 4] [--interval 1]
                                                  [--trials 100] [--smoke]

For every setting below, a fresh pipeline (its own prefix) is provisioned and a real
``python -m services.notifier --shard 0`` process consumes its ``notify-0`` queue. A
live source then feeds that queue the way the router forwards a sequenced source: one
stream, batches numbered 0, 1, 2, ... cut every ``--interval`` seconds of wall clock
(event time is wall-clock time), one envelope per batch with its ``position`` (stream,
seq, part "") and ``max_event_us`` = the batch's greatest event time (the cut: the
source's normal readings, which the router does not forward to the notifier, reach up
to it), carrying the batch's anomalous records with ``quality.anomalous`` and lineage
as the router sends them (none: a progress envelope). Bursts start at ``--rate`` per
second, each at its own location (no cool-down interferes); a burst is k anomalies
(``notification.min_anomalies``, 3) in k consecutive batches, each at a random time
within its batch. The source keeps sending, with or without anomalies, until every
notification has arrived: a live source, never idle.

Latency is measured from the moment the batch holding a burst's k-th anomaly was sent
to SQS (just before ``SendMessage``) until the notification is received from the FIFO
queue by a long-polling receiver thread; "accepted" is until SQS accepted it (the
message's ``SentTimestamp``). Settings:

* grace 0 s (idle flush 30 s): a burst is final once its k-th anomaly's batch is
  applied;
* grace 1 s, idle flush 1 s: once a batch 1 s newer was applied, or the source was
  quiet 1 s (a batch a second: the two race);
* grace 10 s, idle flush 30 s, the defaults (nothing set): decided by the watermark
  once a batch 10 s newer was applied; the source is never quiet for 30 s.

Baselines measured in the same run: one SendMessage + long-poll ReceiveMessage on a
standard queue and on a FIFO queue (the notifier's path is a standard hop, the
sequencer, S3 calls, and a FIFO hop). Every burst sent must arrive exactly once with the
members sent; the counts are printed, and the exit status is 1 otherwise. Nothing is
asserted on time. ``--smoke`` is a tiny run for the test suite (< 40 s): it runs the
three settings side by side, so its figures mean nothing. The pipelines are deleted at
the end. Uses LocalStack at $AWS_ENDPOINT_URL, else starts/reuses one on 127.0.0.1:4566.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import PipelineConfig, load_pipeline_config
from sensorpipe.config.loading import PIPELINE_CONFIG_FILE, default_file
from sensorpipe.devstack.localstack import LocalStackHost, aws_environment
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Envelope, Position, utc_now_iso
from sensorpipe.records import reading_key_at
from sensorpipe.runtime import EnvelopeProducer

if not __package__:  # run as a script (python benchmarks/<name>.py): import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.live_pipeline import Inbox
from benchmarks.live_pipeline import delete_pipeline as remove_pipeline

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SCENARIO = "notification"
SETTLE_S = 1.5  # after the last notification: anything duplicated would come now
SMOKE_SETTLE_S = 0.5


@dataclass(frozen=True, slots=True)
class Setting:
    label: str
    grace_s: float | None  # None: not set, the pipeline config's default applies
    idle_s: float | None

    def env(self) -> dict[str, str]:
        out = {}
        if self.grace_s is not None:
            out["SENSORPIPE_NOTIFIER_GRACE_SECONDS"] = f"{self.grace_s:g}"
        if self.idle_s is not None:
            out["SENSORPIPE_NOTIFIER_IDLE_FLUSH_SECONDS"] = f"{self.idle_s:g}"
        return out


# Row labels (the smoke test looks for them).
SETTINGS = (
    Setting("notifier: grace 0 s, idle flush 30 s", 0.0, 30.0),
    Setting("notifier: grace 1 s, idle flush 1 s", 1.0, 1.0),
    Setting("notifier: grace 10 s, idle flush 30 s (defaults)", None, None),
)
BASELINE_STANDARD = "baseline: SQS send + receive, standard queue"
BASELINE_FIFO = "baseline: SQS send + receive, FIFO queue"


# -- figures ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def figures(values_s: list[float]) -> str:
    if not values_s:
        return f"{'-':>9} {'-':>9} {'-':>9}"
    ms = [v * 1000 for v in values_s]
    return f"{percentile(ms, 0.5):9.1f} {percentile(ms, 0.99):9.1f} {max(ms):9.1f}"


def row(label: str, count: str, latencies: list[float], accepted: list[float] | None) -> str:
    extra = ""
    if accepted is not None:
        extra = (
            f"  {percentile(accepted, 0.5) * 1000:9.1f} {percentile(accepted, 0.99) * 1000:9.1f}"
            if accepted
            else f"  {'-':>9} {'-':>9}"
        )
    return f"  {label:<50} {count:>9} {figures(latencies)}{extra}"


# -- the pipeline ------------------------------------------------------------------------


@dataclass
class Pipeline:
    config: PipelineConfig
    path: Path
    prefix: str

    def url(self, queue: str) -> str:
        return str(sqs_client().get_queue_url(QueueName=queue)["QueueUrl"])


def provisioned(workdir: Path) -> Pipeline:
    """A pipeline of its own: unique prefix, 10 s visibility, short polls (a prompt
    shutdown; a long poll returns as soon as a message is there either way)."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    base = yaml.safe_load(default_file(PIPELINE_CONFIG_FILE).read_text())
    base["buckets"]["prefix"] = prefix
    base["queues"].update(prefix=prefix, visibility_timeout_seconds=10)
    base["pipeline"]["controller_db"] = str(workdir / "controller.db")
    base["runtime"].update(wait_time_seconds=2)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "pipeline-config-v2.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    config = load_pipeline_config(path)
    provision(config)
    return Pipeline(config, path, prefix)


def provision(config: PipelineConfig) -> None:
    from sensorpipe.provisioning import provision as provision_pipeline

    provision_pipeline(config, s3=s3_client(), sqs=sqs_client())


def delete_pipeline(pipeline: Pipeline) -> None:
    """Remove the pipeline's queues and buckets (every object version) from LocalStack."""
    remove_pipeline(pipeline.prefix)


# -- the source --------------------------------------------------------------------------


def anomaly(
    location: str, sensor_id: str, at_ms: int, row_id: int, batch_id: str
) -> dict[str, Any]:
    """An anomalous record as the router forwards it: sensor_data + lineage + quality."""
    stamp = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return {
        "sensor_data": {
            "id": row_id,
            "timestamp": stamp,
            "sensor_id": sensor_id,
            "temperature": 71.5,
            "humidity": 45.0,
            "pressure": 1013.2,
            "vibration": 1.2,
            "voltage": 12.0,
            "status_code": 1,
            "anomaly_flag": 1,
            "anomaly_type": "spike",
            "location": location,
            "latitude": 41.88,
            "longitude": -87.63,
            "firmware_version": "1.4.0",
            "model": "EnvMonitor-3000",
            "manufacturer": "SensorTech",
        },
        "lineage": {
            "lineage_version": 1,
            "node_id": "edge-bench",
            "node_id_source": "local",
            "job_id_hash": "benchjob00000000",
            "execution_id": "exec-bench",
            "execution_id_source": "local-run",
            "pipeline": "sensorpipe",
            "pipeline_version": "2.0.0",
            "stage": "enricher",
            "processed_at": stamp,
            "scenario": SCENARIO,
            "config_version": 1,
            "batch_id": batch_id,
            "source": "edge",
            "hops": [{"stage": "enricher", "at": stamp}],
            "source_row_id": row_id,
        },
        "quality": {
            "spec_version": "2.0.0",
            "anomalous": True,
            "anomaly_reasons": ["anomaly_flag", "temperature_high"],
        },
    }


class Source(threading.Thread):
    """One live stream: a batch every ``interval_s`` until stopped; burst ``b`` starts
    in batch ``1 + b // (rate * interval)`` and has one anomaly in each of ``k``
    consecutive batches."""

    def __init__(
        self,
        producer: EnvelopeProducer,
        bursts: int,
        rate: float,
        interval_s: float,
        k: int,
        *,
        seed: int,
    ) -> None:
        super().__init__(name="source", daemon=True)
        self.producer = producer
        self.interval_s = interval_s
        self.k = k
        self.seed = seed
        self.stream = f"edge-bench-{uuid.uuid4().hex[:8]}-g1"
        self.sent_at: dict[str, float] = {}  # location -> its k-th anomaly's batch sent
        self.expected: dict[str, list[str]] = {}  # location -> reading keys sent
        self.batches = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.finished_bursts = threading.Event()
        self._starts = [1 + int(b / (rate * interval_s)) for b in range(bursts)]
        self.last_burst_batch = self._starts[-1] + k - 1 if bursts else 0

    @staticmethod
    def location(burst: int) -> str:
        return f"site-{burst:05d}"

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the caller
            self.error = exc

    def _run(self) -> None:
        rng = random.Random(self.seed)
        previous_ms = int(time.time() * 1000) - round(self.interval_s * 1000)
        next_at = time.monotonic()
        seq = 0
        row_id = 0
        while not self.stop.is_set():
            cut_ms = max(int(time.time() * 1000), previous_ms + 1)
            batch_id = f"{self.stream}-{seq:06d}"
            records = []
            completing = []
            for burst, start in enumerate(self._starts):
                member = seq - start
                if not 0 <= member < self.k:
                    continue
                location = self.location(burst)
                sensor = f"B{burst:05d}S{member}"
                at_ms = rng.randint(previous_ms + 1, cut_ms)  # after the previous cut
                row_id += 1
                records.append(anomaly(location, sensor, at_ms, row_id, batch_id))
                self.expected.setdefault(location, []).append(reading_key_at(sensor, at_ms * 1000))
                if member == self.k - 1:
                    completing.append(location)
            envelope = Envelope(
                batch_id,
                SCENARIO,
                1,
                records,
                source="edge",
                hops=[{"stage": "router", "at": utc_now_iso()}],
                position=Position(self.stream, seq),
                max_event_us=cut_ms * 1000,
            )
            sent = time.time()
            self.producer.send([envelope])
            for location in completing:
                self.sent_at[location] = sent
            self.batches = seq + 1
            if seq == self.last_burst_batch:
                self.finished_bursts.set()
            previous_ms = cut_ms
            seq += 1
            next_at += self.interval_s
            self.stop.wait(max(0.0, next_at - time.monotonic()))


# -- the receiving end -------------------------------------------------------------------


def metric(process: ServiceProcess, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for line in process.metrics_text().splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


# -- one setting -------------------------------------------------------------------------


@dataclass
class Result:
    setting: Setting
    sent: int
    latencies: list[float]
    accepted: list[float]
    received: int  # distinct bursts received with the members sent
    duplicated: int
    missing: int
    wrong: int
    late: float
    pending: float
    batches: int
    log_tail: str

    @property
    def exact(self) -> bool:
        """Every burst sent arrived exactly once, with the members sent."""
        return self.received == self.sent and not (self.duplicated or self.missing or self.wrong)


def measure_setting(
    pipeline: Pipeline,
    setting: Setting,
    *,
    bursts: int,
    rate: float,
    interval_s: float,
    seed: int,
    settle_s: float = SETTLE_S,
) -> Result:
    """One notifier process on ``pipeline``, fed by a live source until every burst's
    notification arrived (or a deadline passed), then stopped."""
    config = pipeline.config
    sqs = sqs_client()
    queue = config.queues.notify_shard_names()[0]
    producer = EnvelopeProducer(
        sqs,
        pipeline.url(queue),
        queue,
        max_body_bytes=config.queues.max_body_bytes,
        compress=config.runtime.compress,
        service="bench",
    )
    env = {"SENSORPIPE_PIPELINE_CONFIG": str(pipeline.path), **setting.env()}
    logs = pipeline.path.parent / "logs"
    notifier = ServiceProcess("services.notifier", env, logs, args=["--shard", "0"])
    notifier.start()
    inbox = Inbox(pipeline.url(config.queues.notifications))
    source = Source(
        producer, bursts, rate, interval_s, config.notification.min_anomalies, seed=seed
    )
    grace = setting.grace_s if setting.grace_s is not None else config.windowing.grace_seconds
    try:
        inbox.start()
        source.start()
        source.finished_bursts.wait(timeout=bursts / rate + 10 * interval_s + 30)
        deadline = time.monotonic() + grace + 3 * interval_s + 20
        while time.monotonic() < deadline and source.error is None and inbox.error is None:
            if len({n.location for n in inbox.notes}) >= bursts:
                break
            time.sleep(0.05)
        time.sleep(settle_s)
        late = metric(notifier, "sensorpipe_notifier_anomalies_total", outcome="late")
        pending = metric(notifier, "sensorpipe_notifier_pending_anomalies")
    finally:
        source.stop.set()
        inbox.stop.set()
        source.join(timeout=10)
        inbox.join(timeout=10)
        notifier.terminate()
    for error in (source.error, inbox.error):
        if error is not None:
            raise error
    seen: dict[str, int] = {}
    latencies, accepted = [], []
    wrong = 0
    for note in inbox.notes:
        sent = source.sent_at.get(note.location)
        if sent is None or note.reading_keys != source.expected[note.location]:
            wrong += 1
            continue
        seen[note.location] = seen.get(note.location, 0) + 1
        if seen[note.location] == 1:
            latencies.append(note.arrived - sent)
            accepted.append(note.accepted - sent)
    return Result(
        setting,
        sent=len(source.sent_at),
        latencies=latencies,
        accepted=accepted,
        received=len(seen),
        duplicated=sum(c - 1 for c in seen.values()),
        missing=len(source.sent_at) - len(seen),
        wrong=wrong,
        late=late,
        pending=pending,
        batches=source.batches,
        log_tail=notifier.log_tail(),
    )


# -- baselines -----------------------------------------------------------------------------


def round_trips(sqs: SQSClient, url: str, trials: int, *, fifo: bool) -> list[float]:
    """SendMessage then a long-poll ReceiveMessage (and the delete), one at a time."""
    out = []
    for _ in range(trials):
        sent = time.time()
        if fifo:
            sqs.send_message(
                QueueUrl=url,
                MessageBody="ping",
                MessageGroupId="ping",
                MessageDeduplicationId=uuid.uuid4().hex,
            )
        else:
            sqs.send_message(QueueUrl=url, MessageBody="ping")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=5)
        if got.get("Messages"):
            out.append(time.time() - sent)
        for message in got.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return out


def measure_baselines(trials: int) -> tuple[list[float], list[float]]:
    sqs = sqs_client()
    name = f"bench{uuid.uuid4().hex[:8]}-ping"
    standard = sqs.create_queue(QueueName=name)["QueueUrl"]
    fifo = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    try:
        return (
            round_trips(sqs, standard, trials, fifo=False),
            round_trips(sqs, fifo, trials, fifo=True),
        )
    finally:
        sqs.delete_queue(QueueUrl=standard)
        sqs.delete_queue(QueueUrl=fifo)


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of burst starts")
    parser.add_argument("--rate", type=float, default=4.0, help="bursts started per second")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between batches")
    parser.add_argument("--trials", type=int, default=100, help="baseline round trips")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run (3 bursts, batches every 0.5 s, settings side by side)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.rate, args.interval, args.trials = 1.5, 2.0, 0.5, 10
    bursts = max(1, round(args.seconds * args.rate))
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    # The settings say what they set; nothing inherited may change them.
    for key in [k for k in os.environ if k.startswith(("SENSORPIPE_NOTIFIER_", "SENSORPIPE__"))]:
        del os.environ[key]
    host = LocalStackHost()
    started_here = False
    if "AWS_ENDPOINT_URL" not in os.environ:
        started_here = host.start()
        os.environ.update(aws_environment(host.endpoint))
    print(f"endpoint: {os.environ['AWS_ENDPOINT_URL']}, cpus: {os.cpu_count()}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-notifier-") as tmp:
            # Every pipeline first: a config that does not load fails before any run.
            pipelines: list[Pipeline] = []
            try:
                with ThreadPoolExecutor(len(SETTINGS)) as pool:
                    futures = [
                        pool.submit(provisioned, Path(tmp) / f"setting-{index}")
                        for index in range(len(SETTINGS))
                    ]
                pipelines += [f.result() for f in futures if f.exception() is None]
                for future in futures:
                    if (error := future.exception()) is not None:
                        raise error
                rule = pipelines[0].config.notification
                if rule.min_anomalies * args.interval > rule.window_seconds:
                    parser.error(
                        f"--interval {args.interval:g}: {rule.min_anomalies} batches must fit "
                        f"in notification.window_seconds ({rule.window_seconds:g} s)"
                    )
                print(
                    f"one source stream, a batch every {args.interval:g} s; {bursts} bursts "
                    f"of {rule.min_anomalies} anomalies (one per batch) started at "
                    f"{args.rate:g}/s, each at its own location"
                    + ("; smoke: settings side by side" if args.smoke else ""),
                    flush=True,
                )
                standard, fifo = measure_baselines(args.trials)

                def run(index: int) -> Result:
                    print(f"  running {SETTINGS[index].label}", flush=True)
                    return measure_setting(
                        pipelines[index],
                        SETTINGS[index],
                        bursts=bursts,
                        rate=args.rate,
                        interval_s=args.interval,
                        seed=args.seed + index,
                        settle_s=SMOKE_SETTLE_S if args.smoke else SETTLE_S,
                    )

                if args.smoke:
                    with ThreadPoolExecutor(len(SETTINGS)) as pool:
                        results = list(pool.map(run, range(len(SETTINGS))))
                else:
                    results = [run(index) for index in range(len(SETTINGS))]
            finally:
                with ThreadPoolExecutor(len(SETTINGS)) as pool:
                    list(pool.map(delete_pipeline, pipelines))
    finally:
        if started_here:
            host.stop()
    print()
    print(
        f"  {'measurement':<50} {'n':>9} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
        f"  {'accepted':>9} {'accepted':>9}"
    )
    print(f"  {'':<50} {'':>9} {'':>9} {'':>9} {'':>9}  {'p50 ms':>9} {'p99 ms':>9}")
    print(row(BASELINE_STANDARD, f"{len(standard)}/{args.trials}", standard, None))
    print(row(BASELINE_FIFO, f"{len(fifo)}/{args.trials}", fifo, None))
    for result in results:
        count = f"{result.received}/{result.sent}"
        print(row(result.setting.label, count, result.latencies, result.accepted))
    print()
    for result in results:
        print(
            f"  check: {result.setting.label}: {result.sent} bursts sent, {result.received} "
            f"received exactly once, {result.duplicated} duplicated, {result.missing} missing, "
            f"{result.wrong} wrong; notifier counted {result.late:g} late, "
            f"{result.pending:g} pending; {result.batches} batches sent"
        )
    print(
        "\nn: bursts received / sent (baselines: round trips); latency: the burst's k-th "
        "anomaly's batch\nsent to SQS -> notification received from the FIFO queue; "
        "accepted: -> SQS accepted the\nnotification (SentTimestamp). No timing is asserted."
    )
    failed = [r for r in results if not r.exact or r.sent != bursts]
    for result in failed:
        print(
            f"FAILED: {result.setting.label}: not every burst arrived exactly once; the "
            f"notifier's last log lines:\n{result.log_tail}",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
