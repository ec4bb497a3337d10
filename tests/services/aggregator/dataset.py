"""Simulated readings for the aggregator tests, and the independent expectation.

The stream is what a source uploads, in its order: records shaped
``{"sensor_data": row, "lineage": {...}, "quality": {"anomalous": bool, ...}}``, roughly
in event-time order (shuffled within a few seconds), with exact duplicates (a replayed
batch) and rows the source wrote far behind the others (late rows). It is cut into
batches numbered 0, 1, 2, ... like the uploader does; ``envelopes`` gives what the
router sends each aggregator shard (every batch to every shard, positions and the
batch's greatest event time stamped).

The expectation is computed here with plain Python (``statistics`` and ``datetime``),
from the definition in docs/WINDOWS.md and without any service code: the batches are
taken in order; before batch k the watermark is the greatest event time of batches
0..k-1 minus the grace; a reading whose window ended at least the allowed lateness before
that watermark is late; the first occurrence of a (sensor, instant) counts, later ones
are duplicates; a window is first written after the first batch that brings the
watermark to its end, and every later batch that adds readings to it is one revision.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sensorpipe.envelope import Envelope, Position
from sensorpipe.records import METRICS, stable_shard

T0 = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
LOCATIONS = ("Lisbon", "Porto", "Braga", "Faro", "Coimbra")
STREAM = "edge-test-0a1b2c3d-g0"
_MEANS = {"temperature": 22.0, "humidity": 50.0, "pressure": 1013.0, "vibration": 2.5}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def instant_us(stamp: str) -> int:
    """Exact microseconds since the epoch (the oracle's own parse)."""
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def canonical_key(row: dict[str, Any]) -> str:
    """``sensor|instant`` with the instant spelt in UTC, microseconds and ``Z``."""
    moment = datetime(1970, 1, 1) + timedelta(microseconds=instant_us(row["timestamp"]))
    return f"{row['sensor_id']}|{moment.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z"


def make_rows(
    *, sensors: int, per_sensor: int, interval_s: float = 1.0, seed: int = 1
) -> list[dict[str, Any]]:
    """Unique readings: every sensor reads every ``interval_s`` from T0 (with its own
    phase), about 2 % of values missing, about 1 % of readings anomalous."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    row_id = 0
    for s in range(sensors):
        sensor = f"SENSOR_{s:03d}"
        phase = rng.uniform(0, interval_s)
        for j in range(per_sensor):
            row_id += 1
            at = T0 + round((phase + j * interval_s) * 1000) / 1000
            row: dict[str, Any] = {
                "id": row_id,
                "timestamp": iso(at),
                "sensor_id": sensor,
                "location": LOCATIONS[s % len(LOCATIONS)],
                "status_code": 0,
                "anomaly_flag": 0,
            }
            for name in METRICS:
                mean = _MEANS.get(name, 12.0)
                roll = rng.random()
                if roll < 0.01:
                    row[name] = None
                elif roll < 0.02:
                    continue  # the column is absent altogether
                else:
                    row[name] = rng.gauss(mean, mean * 0.05)
            if rng.random() < 0.01:
                row["anomaly_flag"] = row["status_code"] = 1
            rows.append(row)
    return rows


def at_of(row: dict[str, Any]) -> float:
    return instant_us(row["timestamp"]) / 1e6


@dataclass
class Stream:
    rows: list[dict[str, Any]]  # unique readings
    late_keys: set[str]  # readings the source wrote far behind the others
    records: list[dict[str, Any]]  # what the source sends, in its order (duplicates too)
    batch_size: int

    def chunks(self) -> list[list[dict[str, Any]]]:
        n = self.batch_size
        return [self.records[i : i + n] for i in range(0, len(self.records), n)]

    def envelopes(self, shards: int = 1, *, split: bool = False) -> list[list[Envelope]]:
        """Per shard, what the router sends: every batch to every shard (no records
        when none are the shard's), position and the batch's greatest event time set;
        ``split`` cuts each into two parts "0" and "1" as a size-aware stage would."""
        out: list[list[Envelope]] = [[] for _ in range(shards)]
        for seq, chunk in enumerate(self.chunks()):
            pieces = [("0", chunk[: len(chunk) // 2]), ("1", chunk[len(chunk) // 2 :])]
            for part, records in pieces if split else [("", chunk)]:
                latest = max(instant_us(r["sensor_data"]["timestamp"]) for r in records)
                by_shard: dict[int, list[dict[str, Any]]] = defaultdict(list)
                for record in records:
                    shard = stable_shard(record["sensor_data"]["sensor_id"], shards)
                    by_shard[shard].append(record)
                for shard in range(shards):
                    suffix = f".{part}" if part else ""
                    out[shard].append(
                        Envelope(
                            f"{STREAM}-{seq:06d}{suffix}.s{shard}",
                            "aggregated",
                            3,
                            by_shard.get(shard, []),
                            source="edge-test",
                            position=Position(STREAM, seq, part),
                            max_event_us=latest,
                        )
                    )
        return out


def make_stream(
    rows: list[dict[str, Any]],
    *,
    jitter_s: float = 5.0,
    late_fraction: float = 0.01,
    late_by_s: float = 600.0,
    duplicate_fraction: float = 0.02,
    duplicate_spread_s: float = 300.0,
    batch_size: int = 500,
    seed: int = 2,
) -> Stream:
    rng = random.Random(seed)
    start, end = min(map(at_of, rows)), max(map(at_of, rows))
    eligible = [r for r in rows if start + 120 < at_of(r) < end - late_by_s - 120]
    late = rng.sample(eligible, int(len(rows) * late_fraction))
    late_keys = {canonical_key(r) for r in late}
    keyed: list[tuple[float, int, dict[str, Any]]] = []
    for seq, row in enumerate(rows):
        at = at_of(row)
        if canonical_key(row) in late_keys:
            keyed.append((at + late_by_s + rng.uniform(0, 60), seq, row))
        else:
            keyed.append((at + rng.uniform(-jitter_s, jitter_s), seq, row))
    on_time = [r for r in rows if canonical_key(r) not in late_keys]
    for n, row in enumerate(rng.sample(on_time, int(len(rows) * duplicate_fraction))):
        keyed.append((at_of(row) + rng.uniform(0, duplicate_spread_s), len(rows) + n, row))
    keyed.sort(key=lambda item: (item[0], item[1]))
    # Lineage as the enricher stamps it: the batch of a reading's first occurrence, so a
    # duplicate is an exact copy (a replayed batch).
    lineage: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for index, (_, _, row) in enumerate(keyed):
        key = canonical_key(row)
        if key not in lineage:
            lineage[key] = {
                "batch_id": f"e{index // batch_size:05d}",
                "node_id": f"node-{row['location'].lower()}",
                "job_id_hash": f"job{index // (batch_size * 50):03d}",
            }
        records.append(
            {
                "sensor_data": row,
                "lineage": lineage[key],
                "quality": {
                    "spec_version": "2.0.0",
                    "anomalous": row["anomaly_flag"] == 1,
                    "anomaly_reasons": [],
                },
            }
        )
    return Stream(rows, late_keys, records, batch_size)


@dataclass
class Expected:
    windows: dict[tuple[str, int], dict[str, Any]]  # (sensor, window start s) -> figures
    late: set[str]  # canonical keys of readings beyond the allowed lateness
    duplicates: int


def expected_windows(
    stream: Stream, *, grace_s: float, allowed_s: float, size: int = 60
) -> Expected:
    """The independent computation of docs/WINDOWS.md's definition (module docstring)."""
    size_us = size * 1_000_000
    grace_us, allowed_us = round(grace_s * 1e6), round(allowed_s * 1e6)
    seen: set[tuple[str, int]] = set()
    members: dict[tuple[str, int], list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    closed_after: dict[tuple[str, int], int] = {}
    revised_by: dict[tuple[str, int], set[int]] = defaultdict(set)
    late: set[str] = set()
    duplicates = 0
    latest: int | None = None
    for k, chunk in enumerate(stream.chunks()):
        watermark = None if latest is None else latest - grace_us
        for record in chunk:
            row = record["sensor_data"]
            at = instant_us(row["timestamp"])
            start = at // size_us * size_us
            window = (row["sensor_id"], start // 1_000_000)
            if watermark is not None and start + size_us + allowed_us <= watermark:
                late.add(canonical_key(row))
                continue
            if (row["sensor_id"], at) in seen:
                duplicates += 1
                continue
            seen.add((row["sensor_id"], at))
            members[window].append((row, record["lineage"]))
            if window in closed_after:
                revised_by[window].add(k)
        batch_latest = max(instant_us(r["sensor_data"]["timestamp"]) for r in chunk)
        latest = batch_latest if latest is None else max(latest, batch_latest)
        for window in members:
            if window not in closed_after and (window[1] + size) * 1_000_000 <= latest - grace_us:
                closed_after[window] = k
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for window, items in members.items():
        rows = sorted((row for row, _ in items), key=lambda r: instant_us(r["timestamp"]))
        metrics: dict[str, dict[str, Any]] = {}
        for name in METRICS:
            values = [
                float(r[name])
                for r in rows
                if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])
            ]
            metrics[name] = {
                "count": len(values),
                "missing": len(rows) - len(values),
                "mean": statistics.mean(values) if values else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "stddev": statistics.stdev(values) if len(values) > 1 else None,
            }
        out[window] = {
            "record_count": len(rows),
            "anomaly_count": sum(r["anomaly_flag"] == 1 for r in rows),
            "location": rows[0]["location"],
            "first_reading_at": canonical_key(rows[0]).split("|", 1)[1],
            "last_reading_at": canonical_key(rows[-1]).split("|", 1)[1],
            "metrics": metrics,
            "batch_ids": sorted({lineage["batch_id"] for _, lineage in items}),
            "reading_offsets_us": sorted(
                instant_us(r["timestamp"]) - window[1] * 1_000_000 for r in rows
            ),
            "revision": len(revised_by[window]),
        }
    return Expected(out, late, duplicates)


def window_problems(
    docs: dict[tuple[str, int], dict[str, Any]],
    expected: dict[tuple[str, int], dict[str, Any]],
    *,
    rel: float = 1e-9,
    revisions: bool = True,
) -> list[str]:
    """Every difference between written window documents and the expectation."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(docs))
    extra = sorted(set(docs) - set(expected))
    if missing:
        problems.append(f"{len(missing)} window(s) missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected window(s), e.g. {extra[:3]}")
    fields = ["record_count", "anomaly_count", "location", "first_reading_at"]
    fields += ["last_reading_at", "reading_offsets_us"] + (["revision"] if revisions else [])
    for ident in sorted(set(docs) & set(expected)):
        doc, want = docs[ident], expected[ident]
        for name in fields:
            if doc[name] != want[name]:
                problems.append(f"{ident} {name}: {doc[name]!r} != {want[name]!r}")
        if doc["lineage"]["batch_ids"] != want["batch_ids"]:
            problems.append(f"{ident} lineage batch ids differ")
        for metric, stats in want["metrics"].items():
            got = doc["metrics"][metric]
            for name, value in stats.items():
                other = got[name]
                if value is None or other is None or isinstance(value, int):
                    same = value == other
                else:
                    same = math.isclose(other, value, rel_tol=rel, abs_tol=1e-12)
                if not same:
                    problems.append(f"{ident} {metric}.{name}: {other!r} != {value!r}")
    return problems
