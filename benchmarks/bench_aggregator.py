"""Aggregator throughput on one core (records/s), next to baselines from the same run.

    .venv/bin/python benchmarks/bench_aggregator.py [--sensors 100] [--per-sensor 2000]
                                                    [--batch 500] [--repeat 3]

The real ``AggregatorHandler`` is driven the way the runtime drives it (``handle`` on
batches of up to 10 messages, then ``on_tick``), with its S3 stores replaced by
in-memory ones (no AWS: the fold and window close path, rendering of window documents
included). Readings are four a second per sensor, shuffled within a few seconds, in
envelopes of ``--batch`` records. Two figures:
  * aggregator, decode + fold + close: from compressed message bodies, as received;
  * aggregator, fold + close: envelopes already decoded.
Baselines over the same rows, same run:
  * a plain-Python Welford loop: parse the timestamp, window key, Welford update of the
    five metrics per (sensor, window); no dedupe, no lineage, no output;
  * envelope decode alone (orjson + zlib), the floor any consumer pays;
  * polars group_by_dynamic: only if polars is installed (it is not in this project's
    environment, so it is skipped and said so).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope, decode, encode
from sensorpipe.records import METRICS
from sensorpipe.runtime import Message
from services.aggregator.config import AggregatorSettings
from services.aggregator.handler import AggregatorHandler
from services.aggregator.output import LateStore, RenderedWindow, WindowStore
from services.aggregator.windows import WindowId

T0 = datetime(2025, 6, 1, tzinfo=UTC).timestamp()


class MemoryWindows(WindowStore):
    def __init__(self) -> None:
        self.prefix = "1-minute"
        self.objects: dict[str, bytes] = {}

    def write_if_absent(self, rendered: RenderedWindow) -> bool:
        if rendered.key in self.objects:
            return False
        self.objects[rendered.key] = rendered.body
        return True

    def members(self, window: WindowId) -> frozenset[str] | None:
        return None


class MemoryLate(LateStore):
    def __init__(self) -> None:
        self.objects: dict[str, int] = {}

    def write(self, key: str, lines: list[dict[str, Any]], metadata: dict[str, str]) -> None:
        self.objects[key] = len(lines)

    def read(self, key: str) -> list[dict[str, Any]]:
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_records(sensors: int, per_sensor: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    keyed = []
    for s in range(sensors):
        phase = rng.uniform(0, 0.25)
        for j in range(per_sensor):
            at = T0 + round((phase + j * 0.25) * 1000) / 1000
            row: dict[str, Any] = {
                "id": s * per_sensor + j,
                "timestamp": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
                "sensor_id": f"SENSOR_{s:04d}",
                "location": f"site-{s % 5}",
                "status_code": 0,
                "anomaly_flag": 0,
                "firmware_version": "1.4.0",
                "model": "EnvMonitor-3000",
            }
            for name in METRICS:
                row[name] = None if rng.random() < 0.01 else rng.gauss(20, 2)
            keyed.append((at + rng.uniform(-3, 3), row))
    keyed.sort(key=lambda item: item[0])
    return [
        {
            "sensor_data": row,
            "lineage": {"batch_id": f"e{i // 500}", "node_id": "node-1", "job_id_hash": "j"},
            "quality": {"spec_version": "2.0.0", "anomalous": False, "anomaly_reasons": []},
        }
        for i, (_, row) in enumerate(keyed)
    ]


def messages(records: list[dict[str, Any]], batch: int) -> list[Message]:
    out = []
    for i in range(0, len(records), batch):
        envelope = Envelope(f"b{i // batch:06d}", "aggregated", 1, records[i : i + batch])
        encoded = encode(envelope, compress=True)
        out.append(Message(str(uuid.uuid4()), str(uuid.uuid4()), encoded.body, encoded.attributes))
    return out


def run_aggregator(bodies: list[Message], decoded: bool) -> tuple[float, int]:
    """Seconds to take every message and close every window; windows written."""
    config = PipelineConfig(windowing={"grace_seconds": 10, "idle_flush_seconds": 30})
    clock = Clock()
    windows, late = MemoryWindows(), MemoryLate()
    handler = AggregatorHandler(
        config, windows, late, AggregatorSettings(writer_threads=1), recovery_s=0, clock=clock
    )
    fresh = [Message(m.message_id, m.receipt_handle, m.body, m.attributes) for m in bodies]
    if decoded:
        for m in fresh:
            m.envelope()
    started = time.perf_counter()
    for i in range(0, len(fresh), 10):
        handler.handle(fresh[i : i + 10])
        handler.on_tick()
    clock.now += 60  # the final idle flush
    handler.on_tick()
    elapsed = time.perf_counter() - started
    assert not handler.open_windows
    return elapsed, len(windows.objects)


def run_welford_loop(records: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    windows: dict[tuple[str, int], list[list[float]]] = {}
    for record in records:
        data = record["sensor_data"]
        at = datetime.fromisoformat(data["timestamp"]).timestamp()
        key = (data["sensor_id"], math.floor(at / 60) * 60)
        stats = windows.get(key)
        if stats is None:
            stats = windows[key] = [[0, 0.0, 0.0] for _ in METRICS]
        for s, name in zip(stats, METRICS, strict=True):
            value = data.get(name)
            if value is None:
                continue
            s[0] += 1
            delta = value - s[1]
            s[1] += delta / s[0]
            s[2] += delta * (value - s[1])
    return time.perf_counter() - started


def run_decode(bodies: list[Message]) -> float:
    started = time.perf_counter()
    for m in bodies:
        decode(m.body, m.attributes)
    return time.perf_counter() - started


def best(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--per-sensor", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    records = make_records(args.sensors, args.per_sensor)
    bodies = messages(records, args.batch)
    n = len(records)
    print(f"{n:,} readings, {args.sensors} sensors, {len(bodies)} envelopes of {args.batch}")
    full = best(args.repeat, lambda: run_aggregator(bodies, decoded=False)[0])
    fold = best(args.repeat, lambda: run_aggregator(bodies, decoded=True)[0])
    written = run_aggregator(bodies, decoded=True)[1]
    loop = best(args.repeat, lambda: run_welford_loop(records))
    dec = best(args.repeat, lambda: run_decode(bodies))
    rows = [
        ("aggregator: decode + fold + close", full),
        ("aggregator: fold + close (decoded)", fold),
        ("baseline: plain-Python Welford loop", loop),
        ("baseline: envelope decode alone", dec),
    ]
    for label, seconds in rows:
        print(f"  {label:<40} {n / seconds:>12,.0f} records/s")
    print(f"  windows written per run: {written:,}")
    print(f"  aggregator fold+close / Welford loop: {loop / fold:.2f}x of the loop's rate")
    if importlib.util.find_spec("polars") is None:
        print("  polars group_by_dynamic: not run (polars is not installed here)")
    else:
        print("  polars group_by_dynamic: not measured by this benchmark (no polars baseline)")


if __name__ == "__main__":
    main()
