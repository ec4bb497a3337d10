"""Simulated readings for the aggregator tests, and the independent expectation.

The stream is what the router would send the aggregator: records shaped
``{"sensor_data": row, "lineage": {...}, "quality": {"anomalous": bool, ...}}``, in
roughly event-time order (shuffled within a few seconds), with exact duplicates
(a replayed batch) and rows held back far beyond the grace period (late rows).
The expectation is computed here with plain Python (``statistics.mean`` / ``stdev``)
over the de-duplicated on-time rows, without any aggregator code.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sensorpipe.envelope import Envelope
from sensorpipe.records import METRICS, stable_shard
from sensorpipe.runtime import Message
from tests.moto_stack import message_of

T0 = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
LOCATIONS = ("Lisbon", "Porto", "Braga", "Faro", "Coimbra")
_MEANS = {"temperature": 22.0, "humidity": 50.0, "pressure": 1013.0, "vibration": 2.5}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def key_of(row: dict[str, Any]) -> str:
    return f"{row['sensor_id']}|{row['timestamp']}"


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
    return datetime.fromisoformat(row["timestamp"]).timestamp()


@dataclass
class Stream:
    rows: list[dict[str, Any]]  # unique readings
    late_keys: set[str]  # readings sent far behind the stream: must be late
    records: list[dict[str, Any]]  # what is sent, in order (duplicates included)
    batch_size: int

    def chunks(self) -> list[list[dict[str, Any]]]:
        n = self.batch_size
        return [self.records[i : i + n] for i in range(0, len(self.records), n)]

    def envelopes(self, shards: int = 1) -> list[list[Envelope]]:
        """Per shard, the envelopes the router would send (same split, same ids)."""
        out: list[list[Envelope]] = [[] for _ in range(shards)]
        for index, chunk in enumerate(self.chunks()):
            parts: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for record in chunk:
                parts[stable_shard(record["sensor_data"]["sensor_id"], shards)].append(record)
            for shard, records in sorted(parts.items()):
                batch = f"r{index:05d}" if shards == 1 else f"r{index:05d}.s{shard}"
                out[shard].append(Envelope(batch, "aggregated", 3, records, source="edge-test"))
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
    late_keys = {key_of(r) for r in late}
    keyed: list[tuple[float, int, dict[str, Any]]] = []
    for seq, row in enumerate(rows):
        at = at_of(row)
        if key_of(row) in late_keys:
            keyed.append((at + late_by_s + rng.uniform(0, 60), seq, row))
        else:
            keyed.append((at + rng.uniform(-jitter_s, jitter_s), seq, row))
    on_time = [r for r in rows if key_of(r) not in late_keys]
    for n, row in enumerate(rng.sample(on_time, int(len(rows) * duplicate_fraction))):
        keyed.append((at_of(row) + rng.uniform(0, duplicate_spread_s), len(rows) + n, row))
    keyed.sort(key=lambda item: (item[0], item[1]))
    # Lineage as the enricher stamps it: the batch of a reading's first occurrence, so a
    # duplicate is an exact copy (a replayed batch).
    lineage: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for position, (_, _, row) in enumerate(keyed):
        key = key_of(row)
        if key not in lineage:
            lineage[key] = {
                "batch_id": f"e{position // batch_size:05d}",
                "node_id": f"node-{row['location'].lower()}",
                "job_id_hash": f"job{position // (batch_size * 50):03d}",
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


def expected_windows(stream: Stream, size: int = 60) -> dict[tuple[str, int], dict[str, Any]]:
    """Independent computation: group the de-duplicated on-time readings by (sensor,
    window) and summarise them with the statistics module."""
    first_lineage: dict[str, dict[str, Any]] = {}
    for record in stream.records:
        first_lineage.setdefault(key_of(record["sensor_data"]), record["lineage"])
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in stream.rows:
        if key_of(row) in stream.late_keys:
            continue
        groups[(row["sensor_id"], int(at_of(row) // size) * size)].append(row)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for ident, members in groups.items():
        members.sort(key=at_of)
        metrics: dict[str, dict[str, Any]] = {}
        for name in METRICS:
            values = [m[name] for m in members if m.get(name) is not None]
            metrics[name] = {
                "count": len(values),
                "missing": len(members) - len(values),
                "mean": statistics.mean(values) if values else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "stddev": statistics.stdev(values) if len(values) > 1 else None,
            }
        out[ident] = {
            "record_count": len(members),
            "anomaly_count": sum(m["anomaly_flag"] == 1 for m in members),
            "location": members[0]["location"],
            "first_reading_at": members[0]["timestamp"],
            "last_reading_at": members[-1]["timestamp"],
            "metrics": metrics,
            "batch_ids": sorted({first_lineage[key_of(m)]["batch_id"] for m in members}),
            "reading_keys": sorted(key_of(m) for m in members),
        }
    return out


def message(envelope: Envelope, *, receive_count: int = 1) -> Message:
    return message_of(envelope, receive_count=receive_count)


def window_problems(
    docs: dict[tuple[str, int], dict[str, Any]],
    expected: dict[tuple[str, int], dict[str, Any]],
    *,
    rel: float = 1e-9,
) -> list[str]:
    """Every difference between written window documents and the expectation."""
    import math

    problems: list[str] = []
    missing = sorted(set(expected) - set(docs))
    extra = sorted(set(docs) - set(expected))
    if missing:
        problems.append(f"{len(missing)} window(s) missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected window(s), e.g. {extra[:3]}")
    for ident in sorted(set(docs) & set(expected)):
        doc, want = docs[ident], expected[ident]
        for field in ("record_count", "anomaly_count", "location", "first_reading_at"):
            if doc[field] != want[field]:
                problems.append(f"{ident} {field}: {doc[field]!r} != {want[field]!r}")
        if doc["last_reading_at"] != want["last_reading_at"]:
            problems.append(f"{ident} last_reading_at differs")
        if doc["lineage"]["batch_ids"] != want["batch_ids"]:
            problems.append(f"{ident} lineage batch ids differ")
        if doc["reading_keys"] != want["reading_keys"]:
            problems.append(f"{ident} reading keys differ")
        for name, stats in want["metrics"].items():
            got = doc["metrics"][name]
            for field, value in stats.items():
                other = got[field]
                if value is None or other is None or isinstance(value, int):
                    same = value == other
                else:
                    same = math.isclose(other, value, rel_tol=rel, abs_tol=1e-12)
                if not same:
                    problems.append(f"{ident} {name}.{field}: {other!r} != {value!r}")
    return problems
