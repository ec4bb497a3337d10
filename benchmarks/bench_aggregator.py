"""Aggregator throughput on one core (readings/s), next to baselines and peers from the same run.

    .venv/bin/python benchmarks/bench_aggregator.py [--sensors 100] [--per-sensor 2000]
                                                    [--batch 2000] [--repeat 3] [--smoke]

Readings are four a second per sensor, shuffled within a few seconds (as an edge node
writes them), records shaped ``{"sensor_data", "anomalous"}`` as the router sends them
to the aggregator, cut into envelopes of ``--batch`` records carrying
``Position(stream, seq)``, ``max_event_us`` and the batch's lineage ids as the router
stamps them (one shard). The records every measurement reads are the ones decoded from
those envelopes' message bodies, as an aggregator receives them (and as the decoder lays
them out in memory), so every figure is over the same decoded readings:

* aggregator, fold + close: ``build_stage`` over ``MemoryObjectStore`` stores, driven
  the way the sequencer drives it (``prepare``, ``apply``, ``advance`` to the stream's
  watermark after every batch, a flush every 10 batches as each receive's commit does,
  a final advance that closes everything, and the last flush), envelopes decoded
  beforehand;
* aggregator, decode + SequencedHandler: ``build_handler`` with in-memory stores, a
  fake acknowledger and an injected clock, fed receives of 10 gzip messages decoded
  anew every time (``handle`` then ``on_tick``, as the consumer loop calls them: a
  checkpoint per receive), then idle ticks that close the last windows;
* baseline: a plain-Python Welford loop (parse the timestamp, window key, Welford
  update of the five metrics per (sensor, window); no dedupe, lineage or output);
* baseline: envelope decode alone (base64 + gzip + orjson), the floor of any consumer;
* peer: bytewax ``fold_window`` (1-minute ``TumblingWindower``, ``EventClock`` with the
  pipeline's grace, a Welford fold of the five metrics, one worker, ``TestingSource``
  in batches of 1,000);
* peer: polars, columns taken from the records, then ``group_by`` (sensor, minute) with
  count/mean/std/min/max per metric.

Times are CPU seconds of this process (``time.process_time``), pinned to one core,
best of ``--repeat``; wall-clock rates are printed beside them. The inputs are built
first and frozen out of the garbage collector (``gc.freeze``), so that collections
cost what the code under test keeps alive, not what the harness holds. The memory table runs
fold + close under tracemalloc with outputs discarded (they are not state) and compares
the peak with the number of open windows: twice the readings over the same sensors,
and twice the sensors. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope, Position, decode, encode
from sensorpipe.pages import is_page_key, page_entries
from sensorpipe.records import METRICS
from sensorpipe.runtime import Message
from sensorpipe.stateful import Batch
from sensorpipe.store import Expect, MemoryObjectStore, ObjectStore, Put, Stored
from services.aggregator.config import AggregatorSettings
from services.aggregator.handler import build_handler, build_stage
from services.aggregator.stage import AggregatorStage

T0 = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
STREAM = "edge-bench-0a1b2c3d-g0"
SCENARIO = "aggregated"  # a scenario that validates: the stage's quick read path
LOCATIONS = ("Lisbon", "Porto", "Braga", "Faro", "Coimbra")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
PER_RECEIVE = 10  # SQS ReceiveMessage's maximum
BYTEWAX_BATCH = 1_000
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"  # as the edge writes it: ...T00:00:00.250+00:00

# Row labels (the smoke test looks for them).
LOOP = "baseline: plain-Python Welford loop"
DECODE = "baseline: envelope decode alone"
FOLD = "aggregator: fold + close (decoded Batch)"
FULL = "aggregator: decode + SequencedHandler"
BYTEWAX = "peer: bytewax fold_window, 1-min tumbling"
POLARS = "peer: polars group_by (sensor, minute)"
TARGET = 1.5  # the project's target for aggregator fold+close / Welford loop


# -- readings ----------------------------------------------------------------------------


def make_records(sensors: int, per_sensor: int, seed: int = 1) -> list[dict[str, Any]]:
    """What a source uploads, in its order: 4 readings a second per sensor (each with its
    own phase), shuffled within +-3 s, ~1 % of values missing, ~1 % anomalous."""
    rng = random.Random(seed)
    keyed = []
    for s in range(sensors):
        phase = rng.uniform(0, 0.25)
        for j in range(per_sensor):
            at = T0 + round((phase + j * 0.25) * 1000) / 1000
            anomalous = rng.random() < 0.01
            row: dict[str, Any] = {
                "id": s * per_sensor + j,
                "timestamp": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
                "sensor_id": f"SENSOR_{s:04d}",
                "location": LOCATIONS[s % len(LOCATIONS)],
                "status_code": int(anomalous),
                "anomaly_flag": int(anomalous),
                "firmware_version": "1.4.0",
                "model": "EnvMonitor-3000",
            }
            for name in METRICS:
                row[name] = None if rng.random() < 0.01 else rng.gauss(20, 2)
            keyed.append((at + rng.uniform(-3, 3), anomalous, row))
    keyed.sort(key=lambda item: item[0])
    # As the router sends them to the aggregator: the reading and its anomaly flag (the
    # batch's lineage ids travel once per envelope, make_envelopes).
    return [{"sensor_data": row, "anomalous": anomalous} for _, anomalous, row in keyed]


def instant_us(stamp: str) -> int:
    return (datetime.fromisoformat(stamp) - _EPOCH) // _US


def make_envelopes(records: list[dict[str, Any]], batch: int) -> list[Envelope]:
    """What the router sends the one aggregator shard: batch ``seq`` of the stream with
    its position and the greatest event time of its readings."""
    out = []
    for seq, i in enumerate(range(0, len(records), batch)):
        chunk = records[i : i + batch]
        envelope = Envelope(
            f"{STREAM}-{seq:06d}",
            SCENARIO,
            3,
            chunk,
            source="edge-bench",
            created_at="2025-06-01T00:00:00.000+00:00",
            position=Position(STREAM, seq),
            max_event_us=max(instant_us(r["sensor_data"]["timestamp"]) for r in chunk),
            # As the enricher stamps it: the lineage ids the batch's records share.
            meta={"lineage": {"batch_id": f"e{seq:05d}", "node_id": "node-1", "job_id_hash": "j0"}},
        )
        envelope.add_hop("router")
        out.append(envelope)
    return out


def encode_all(envelopes: list[Envelope]) -> list[tuple[str, dict[str, str]]]:
    out = []
    for envelope in envelopes:
        encoded = encode(envelope, compress=True)
        out.append((encoded.body, dict(encoded.attributes)))
    return out


# -- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seconds:
    cpu: float
    wall: float


class Timer:
    def __enter__(self) -> Timer:
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = Seconds(time.process_time() - self._cpu, time.perf_counter() - self._wall)


def best(repeat: int, run: Callable[[], Seconds]) -> Seconds:
    runs = [run() for _ in range(repeat)]
    return Seconds(min(r.cpu for r in runs), min(r.wall for r in runs))


def config() -> PipelineConfig:
    return PipelineConfig()  # 1-minute windows, grace 10 s, idle flush 30 s


def settings(remembered: int | None = None) -> AggregatorSettings:
    # One writer thread: writes go to memory, there is no S3 latency to overlap.
    if remembered is None:
        return AggregatorSettings(writer_threads=1)
    return AggregatorSettings(writer_threads=1, remembered_windows=remembered)


class DiscardingStore:
    """An ObjectStore that keeps nothing: outputs leave the process, they are not state."""

    bucket = "discard"

    def __init__(self) -> None:
        self.puts = 0

    def uri(self, key: str) -> str:
        return f"discard://{key}"

    def get(self, key: str) -> Stored | None:
        return None

    def get_many(self, keys: list[str]) -> list[Stored | None]:
        return [None for _ in keys]

    def keys(self, prefix: str) -> list[str]:
        return []

    def exists(self, key: str) -> bool:
        return False

    def put(
        self,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        gzipped: bool = False,
        expect: Expect | str = Expect.ANY,
    ) -> str:
        self.puts += 1
        return '"discarded"'

    def put_many(self, puts: list[Put]) -> None:
        self.puts += len(puts)


@dataclass(slots=True)
class FoldRun:
    seconds: Seconds
    stage: AggregatorStage
    aggregated: ObjectStore
    max_open: int = 0
    max_remembered: int = 0


def windows_of(store: MemoryObjectStore) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for key, stored in store.objects.items():
        if is_page_key(key):
            for doc in page_entries(stored.body):
                out[(doc["sensor_id"], instant_us(doc["window_start"]) // 60_000_000)] = doc
    return out


def run_fold(
    envelopes: list[Envelope],
    *,
    store: Callable[[], ObjectStore] = MemoryObjectStore,
    remembered: int | None = None,
    watch: bool = False,
) -> FoldRun:
    """The stage alone, as the sequencer drives it for one in-order stream."""
    cfg = config()
    aggregated, error = store(), store()
    stage = build_stage(cfg, aggregated, error, settings(remembered))
    grace_us = round(cfg.windowing.grace_seconds * 1_000_000)
    size_us = cfg.windowing.window_seconds * 1_000_000
    batches = [
        Batch([e], f"{e.position.stream}-b{e.position.seq:09d}" if e.position else e.batch_id)
        for e in envelopes
    ]
    run = FoldRun(Seconds(0, 0), stage, aggregated)
    done = -(2**63)
    with Timer() as timer:
        for n, batch in enumerate(batches, 1):
            stage.prepare(batch)
            stage.apply(batch)
            if watch:
                run.max_open = max(run.max_open, len(stage.open))
            latest = batch.parts[0].max_event_us
            if latest is not None and latest > done:
                done = latest
            stage.advance(done - grace_us)
            if watch:
                run.max_remembered = max(run.max_remembered, len(stage._written))
            if n % PER_RECEIVE == 0:
                stage.flush()
        stage.advance(done + size_us)  # the stream goes idle: the last windows close
        stage.flush()
    run.seconds = timer.seconds
    assert not stage.open, "every window is closed"
    return run


@dataclass
class Acks:
    acked: int = 0

    def ack(self, messages: list[Message]) -> None:
        self.acked += len(messages)

    def retry(self, messages: list[Message], reason: str) -> None:
        raise AssertionError(f"unexpected retry: {reason}")

    def release(self, messages: list[Message]) -> None:
        raise AssertionError("unexpected release")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def run_handler(bodies: list[tuple[str, dict[str, str]]]) -> tuple[Seconds, MemoryObjectStore]:
    """The whole handler: decode, sequence, fold, close, commit (checkpoint per receive)."""
    aggregated, error = MemoryObjectStore("aggregated"), MemoryObjectStore("error")
    clock = Clock()
    handler = build_handler(config(), aggregated, error, settings(), clock=clock)
    acks = Acks()
    handler.bind(acks)
    ids = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in bodies]
    with Timer() as timer:
        for i in range(0, len(bodies), PER_RECEIVE):
            # Fresh messages per receive, as the consumer makes them: each is decoded
            # here, and dropped once acknowledged (Message caches its envelope).
            handler.handle(
                [
                    Message(message_id, handle, body, dict(attributes))
                    for (message_id, handle), (body, attributes) in zip(
                        ids[i : i + PER_RECEIVE], bodies[i : i + PER_RECEIVE], strict=True
                    )
                ]
            )
            clock.now += 0.05
            handler.on_tick()
        for _ in range(2):  # the stream goes idle: the last windows close and are written
            clock.now += 1_000
            handler.on_tick()
    stage = cast(AggregatorStage, handler.stage)
    assert not stage.open and acks.acked == len(bodies) and not handler.held_count()
    return timer.seconds, aggregated


def run_decode(bodies: list[tuple[str, dict[str, str]]]) -> Seconds:
    with Timer() as timer:
        for body, attributes in bodies:
            decode(body, attributes)
    return timer.seconds


Welford = list[list[float]]  # per metric: [n, mean, m2, min, max]


def welford_new() -> Welford:
    return [[0.0, 0.0, 0.0, math.inf, -math.inf] for _ in METRICS]


def welford_add(stats: Welford, data: dict[str, Any]) -> Welford:
    for s, name in zip(stats, METRICS, strict=True):
        value = data.get(name)
        if value is None:
            continue
        s[0] += 1
        delta = value - s[1]
        s[1] += delta / s[0]
        s[2] += delta * (value - s[1])
        if value < s[3]:
            s[3] = value
        if value > s[4]:
            s[4] = value
    return stats


def welford_merge(a: Welford, b: Welford) -> Welford:
    """Chan et al. (bytewax asks for it; tumbling windows never merge)."""
    out = []
    for x, y in zip(a, b, strict=True):
        n = x[0] + y[0]
        if not n:
            out.append(list(x))
            continue
        delta = y[1] - x[1]
        mean = x[1] + delta * y[0] / n
        m2 = x[2] + y[2] + delta * delta * x[0] * y[0] / n
        out.append([n, mean, m2, min(x[3], y[3]), max(x[4], y[4])])
    return out


def run_welford_loop(
    records: list[dict[str, Any]],
) -> tuple[Seconds, dict[tuple[str, int], tuple[int, Welford]]]:
    windows: dict[tuple[str, int], tuple[int, Welford]] = {}
    with Timer() as timer:
        for record in records:
            data = record["sensor_data"]
            at = datetime.fromisoformat(data["timestamp"]).timestamp()
            key = (data["sensor_id"], math.floor(at / 60))
            entry = windows.get(key)
            if entry is None:
                entry = windows[key] = (0, welford_new())
            windows[key] = (entry[0] + 1, welford_add(entry[1], data))
    return timer.seconds, windows


def run_bytewax(records: list[dict[str, Any]], grace_s: float) -> tuple[Seconds, int, int]:
    """bytewax's own 1-minute tumbling window over the same readings: (time, windows, late)."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
    from bytewax.testing import TestingSink, TestingSource, run_main

    def sensor(record: dict[str, Any]) -> str:
        return str(record["sensor_data"]["sensor_id"])

    def event_time(record: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(record["sensor_data"]["timestamp"])

    def fold(stats: Welford, record: dict[str, Any]) -> Welford:
        return welford_add(stats, record["sensor_data"])

    closed: list[Any] = []
    late: list[Any] = []
    with Timer() as timer:
        flow = Dataflow("bench_aggregator")
        up = op.input("readings", flow, TestingSource(records, batch_size=BYTEWAX_BATCH))
        keyed = op.key_on("sensor", up, sensor)
        windowed = fold_window(
            "minute",
            keyed,
            EventClock(event_time, wait_for_system_duration=timedelta(seconds=grace_s)),
            TumblingWindower(
                length=timedelta(minutes=1), align_to=datetime(2025, 1, 1, tzinfo=UTC)
            ),
            welford_new,
            fold,
            welford_merge,
        )
        op.output("windows", windowed.down, TestingSink(closed))
        op.output("late", windowed.late, TestingSink(late))
        run_main(flow)
    return timer.seconds, len(closed), len(late)


def run_polars(records: list[dict[str, Any]]) -> tuple[Seconds, int]:
    import polars as pl

    with Timer() as timer:
        datas = [r["sensor_data"] for r in records]
        columns: dict[str, list[Any]] = {
            "sensor_id": [d["sensor_id"] for d in datas],
            "timestamp": [d["timestamp"] for d in datas],
        }
        for name in METRICS:
            columns[name] = [d.get(name) for d in datas]
        frame = pl.DataFrame(columns, schema_overrides={m: pl.Float64 for m in METRICS})
        stats = [
            expr
            for m in METRICS
            for expr in (
                pl.col(m).count().alias(f"{m}_count"),
                pl.col(m).mean().alias(f"{m}_mean"),
                pl.col(m).std(ddof=1).alias(f"{m}_std"),
                pl.col(m).min().alias(f"{m}_min"),
                pl.col(m).max().alias(f"{m}_max"),
            )
        ]
        out = (
            frame.with_columns(
                pl.col("timestamp").str.to_datetime(ISO_FORMAT, time_unit="us").dt.truncate("1m")
            )
            .group_by("sensor_id", "timestamp")
            .agg(pl.len().alias("records"), *stats)
        )
    return timer.seconds, out.height


# -- checks ------------------------------------------------------------------------------


def agreement(
    docs: dict[tuple[str, int], dict[str, Any]], loop: dict[tuple[str, int], tuple[int, Welford]]
) -> str:
    """The aggregator's documents against the Welford loop: same windows, same figures."""
    if docs.keys() != loop.keys():
        return f"MISMATCH: {len(docs)} windows written, the loop has {len(loop)}"
    worst = 0.0
    for key, (records, stats) in loop.items():
        doc = docs[key]
        if doc["record_count"] != records:
            return f"MISMATCH: {key} has {doc['record_count']} records, the loop {records}"
        for name, (n, mean, m2, *_) in zip(METRICS, stats, strict=True):
            figures = doc["metrics"][name]
            if figures["count"] != n:
                return f"MISMATCH: {key} {name} count {figures['count']} != {n}"
            if n:
                worst = max(worst, abs(figures["mean"] - mean), abs(figures["m2"] - m2) / n)
    return f"all {len(docs):,} windows agree with the loop (largest difference {worst:.1e})"


# -- memory ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryRow:
    sensors: int
    readings: int
    remembered_cap: int
    max_open: int
    max_remembered: int
    peak_bytes: int


def measure_memory(sensors: int, per_sensor: int, batch: int, remembered: int) -> MemoryRow:
    envelopes = make_envelopes(make_records(sensors, per_sensor, seed=3), batch)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run = run_fold(envelopes, store=DiscardingStore, remembered=remembered, watch=True)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    readings = sum(len(e.records) for e in envelopes)
    return MemoryRow(sensors, readings, remembered, run.max_open, run.max_remembered, peak)


# -- the report ----------------------------------------------------------------------------


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f}" if seconds > 0 else f"{'inf':>12}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--per-sensor", type=int, default=2000, help="readings per sensor")
    parser.add_argument(
        "--batch",
        type=int,
        default=2000,
        help="records per envelope (default: the uploader's default batch size)",
    )
    parser.add_argument(
        "--small-batch", type=int, default=500, help="also fold + close envelopes of this many"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny fast run (5 sensors x 480, batch 100)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.sensors, args.per_sensor, args.batch, args.small_batch, args.repeat = (
            5,
            480,
            100,
            50,
            1,
        )
    core = "unpinned"
    if hasattr(os, "sched_setaffinity"):
        pinned = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {pinned})  # one core, for us and any threads started later
        core = f"pinned to core {pinned}"
    os.environ.setdefault("POLARS_MAX_THREADS", "1")  # read when polars is imported

    made = make_records(args.sensors, args.per_sensor)
    bodies = encode_all(make_envelopes(made, args.batch))
    records = [r for body, attributes in bodies for r in decode(body, attributes).records]
    assert records == made, "the codec gives back what it was given"
    del made
    envelopes = make_envelopes(records, args.batch)
    n = len(records)
    grace_s = config().windowing.grace_seconds
    # The inputs live all run long; frozen, the collector skips them and collections cost
    # what the code under test keeps alive, not what this harness holds.
    gc.collect()
    gc.freeze()
    print(
        f"aggregator benchmark: {n:,} readings, {args.sensors} sensors x {args.per_sensor:,}, "
        f"{len(envelopes)} envelopes of {args.batch}, 1-minute windows, grace {grace_s:g} s; "
        f"best of {args.repeat}, CPU time, {core}"
    )

    loop_s = best(args.repeat, lambda: run_welford_loop(records)[0])
    decode_s = best(args.repeat, lambda: run_decode(bodies))
    fold_s = best(args.repeat, lambda: run_fold(envelopes).seconds)
    small = make_envelopes(records, args.small_batch)
    small_s = best(args.repeat, lambda: run_fold(small).seconds)
    full_s = best(args.repeat, lambda: run_handler(bodies)[0])
    rows: list[tuple[str, Seconds | None, str]] = [
        (LOOP, loop_s, ""),
        (DECODE, decode_s, ""),
        (FOLD, fold_s, ""),
        (f"aggregator: fold + close, envelopes of {args.small_batch}", small_s, ""),
        (FULL, full_s, ""),
    ]
    # Same windows from every path, checked outside the timings.
    _, loop_windows = run_welford_loop(records)
    fold_store = run_fold(envelopes).aggregated
    assert isinstance(fold_store, MemoryObjectStore)
    checks = [f"fold + close: {agreement(windows_of(fold_store), loop_windows)}"]
    checks.append(
        f"SequencedHandler: {agreement(windows_of(run_handler(bodies)[1]), loop_windows)}"
    )

    if importlib.util.find_spec("bytewax") is None:
        rows.append((BYTEWAX, None, "not run: bytewax is not installed (pip install -e '.[dev]')"))
    else:
        bytewax_s = best(args.repeat, lambda: run_bytewax(records, grace_s)[0])
        _, closed, late = run_bytewax(records, grace_s)
        rows.append((BYTEWAX, bytewax_s, ""))
        checks.append(f"bytewax: {closed:,} windows, {late:,} late readings")
    if importlib.util.find_spec("polars") is None:
        rows.append((POLARS, None, "not run: polars is not installed (pip install -e '.[dev]')"))
    else:
        polars_s = best(args.repeat, lambda: run_polars(records)[0])
        rows.append((POLARS, polars_s, ""))
        checks.append(f"polars: {run_polars(records)[1]:,} groups")

    print(f"  {'measurement':<44} {'readings/s':>12} {'wall rdg/s':>12}  {'vs loop':>8}")
    for label, seconds, note in rows:
        if seconds is None:
            print(f"  {label:<44} {note}")
            continue
        ratio = loop_s.cpu / seconds.cpu if seconds.cpu > 0 else math.inf
        print(f"  {label:<44} {rate(n, seconds.cpu)} {rate(n, seconds.wall)}  {ratio:>7.2f}x")
    for check in checks:
        print(f"  check: {check}")
    ratio = loop_s.cpu / fold_s.cpu if fold_s.cpu > 0 else math.inf
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(
        f"target: aggregator fold+close / Welford loop = {ratio:.2f}x "
        f"(project target >= {TARGET}x: {verdict})"
    )

    print("memory: tracemalloc peak during fold + close (outputs discarded: they are not state)")
    print(
        f"  {'sensors':>7} {'readings':>10} {'remembered cap':>14} {'max open':>8} "
        f"{'max remembered':>14} {'peak MiB':>9}"
    )
    default_cap = AggregatorSettings().remembered_windows
    low_cap = 100  # the least remembered_windows allows
    grid = [
        (args.sensors, args.per_sensor, low_cap),
        (args.sensors, 2 * args.per_sensor, low_cap),
        (2 * args.sensors, args.per_sensor, low_cap),
        (args.sensors, args.per_sensor, default_cap),
        (args.sensors, 2 * args.per_sensor, default_cap),
    ]
    table = []
    for sensors, per_sensor, cap in grid:
        row = measure_memory(sensors, per_sensor, args.batch, cap)
        table.append(row)
        print(
            f"  {row.sensors:>7} {row.readings:>10,} {row.remembered_cap:>14,} {row.max_open:>8,} "
            f"{row.max_remembered:>14,} {row.peak_bytes / 2**20:>9.1f}"
        )
    base, more_readings, more_sensors, cached, cached_more = table
    print(
        f"  cap {low_cap}: 2x readings, same sensors -> peak x"
        f"{more_readings.peak_bytes / base.peak_bytes:.2f} (open windows x"
        f"{more_readings.max_open / max(base.max_open, 1):.2f}); 2x sensors -> peak x"
        f"{more_sensors.peak_bytes / base.peak_bytes:.2f} (open windows x"
        f"{more_sensors.max_open / max(base.max_open, 1):.2f})"
    )
    extra = cached_more.max_remembered - cached.max_remembered
    if extra > 0:
        each = (cached_more.peak_bytes - cached.peak_bytes) / extra
        print(
            f"  cap {default_cap:,} (default): written windows kept for revisions, "
            f"{each / 1024:.1f} KiB each, grow with readings up to the cap "
            f"(~{each * default_cap / 2**20:.0f} MiB at {default_cap:,})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
