"""A simulated sensor stream as the router hands it to the notifier.

100,000 readings from 50 sensors at 5 locations (one reading per sensor per second),
anomalies at different rates per location plus a few dense clusters, then: arrival order
shuffled within a few seconds (below the grace), duplicates, and late rows that arrive
long after newer anomalies of their location. Readings are cut into batches of 500 in
arrival order, and each batch's anomalous records become one envelope per notify shard,
shaped like the router's output (sensor_data + lineage + quality).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sensorpipe.envelope import Envelope
from sensorpipe.records import stable_shard

LOCATIONS = ("Chicago", "Denver", "Texas Wind Farm", "São Paulo", "Berlin")
ANOMALY_RATE = {
    "Chicago": 0.002,
    "Denver": 0.006,
    "Texas Wind Farm": 0.0008,
    "São Paulo": 0.015,
    "Berlin": 0.003,
}
START = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
SCENARIO = "notification"


def reading(
    location: str,
    sensor_id: str,
    at: datetime,
    row_id: int,
    *,
    batch_id: str,
    anomalous: bool = True,
) -> dict[str, Any]:
    stamp = at.isoformat(timespec="milliseconds")
    return {
        "sensor_data": {
            "id": row_id,
            "timestamp": stamp,
            "sensor_id": sensor_id,
            "temperature": 71.5 if anomalous else 21.5,
            "humidity": 45.0,
            "pressure": 1013.2,
            "vibration": 1.2,
            "voltage": 12.0,
            "status_code": int(anomalous),
            "anomaly_flag": int(anomalous),
            "anomaly_type": "spike" if anomalous else None,
            "location": location,
            "latitude": 41.88,
            "longitude": -87.63,
            "firmware_version": "1.4.0",
            "model": "EnvMonitor-3000",
            "manufacturer": "SensorTech",
        },
        "lineage": {
            "lineage_version": 1,
            "node_id": f"edge-{location[:3].lower()}",
            "node_id_source": "local",
            "job_id_hash": f"job{stable_shard(location, 97):03d}{'a' * 10}",
            "execution_id": "exec-1",
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
            "anomalous": anomalous,
            "anomaly_reasons": ["anomaly_flag", "temperature_high"] if anomalous else [],
        },
    }


@dataclass
class Stream:
    envelopes: list[Envelope]  # in the order to send, for one shard count
    anomalies: list[dict[str, Any]]  # every distinct anomalous reading
    late: list[dict[str, Any]]  # anomalies that arrive long after their location moved on
    duplicated: set[str] = field(default_factory=set)  # reading keys sent twice

    @property
    def on_time(self) -> list[dict[str, Any]]:
        late_keys = {key_of(r) for r in self.late}
        return [r for r in self.anomalies if key_of(r) not in late_keys]


def key_of(record: dict[str, Any]) -> str:
    data = record["sensor_data"]
    return f"{data['sensor_id']}|{data['timestamp']}"


def simulate(
    seed: int = 7,
    *,
    readings: int = 100_000,
    sensors: int = 50,
    shards: int = 1,
    spread_s: float = 4.0,
    batch_size: int = 500,
    run: str = "sim",
) -> Stream:
    rng = random.Random(seed)
    per_location = sensors // len(LOCATIONS)
    seconds = readings // sensors
    clusters = {(loc, rng.randrange(60, seconds - 60)) for loc in LOCATIONS for _ in range(2)}
    # Normal readings never reach the notifier (the router forwards anomalies only), so
    # they stay tuples; they still take their place in arrival order and batches.
    rows: list[tuple[float, dict[str, Any] | None]] = []
    row_id = 0
    for second in range(seconds):
        for index in range(sensors):
            location = LOCATIONS[index // per_location]
            row_id += 1
            millis = rng.randrange(0, 1000)
            near_cluster = any(loc == location and 0 <= second - c < 20 for loc, c in clusters)
            rate = 0.05 if near_cluster else ANOMALY_RATE[location]
            record = None
            if rng.random() < rate:
                at = START + timedelta(seconds=second, milliseconds=millis)
                record = reading(location, f"SENSOR_{index:03d}", at, row_id, batch_id="")
            arrival = START.timestamp() + second + millis / 1000 + rng.uniform(0, spread_s)
            rows.append((arrival, record))
    anomalies = [r for _, r in rows if r is not None]
    late = _pick_late(rng, anomalies)
    late_keys = {key_of(r) for r in late}
    arrivals: list[tuple[float, dict[str, Any] | None]] = []
    duplicated: set[str] = set()
    for arrival, maybe in rows:
        if maybe is None:
            arrivals.append((arrival, None))
            continue
        if key_of(maybe) in late_keys:
            arrival += rng.uniform(900, 1000)  # far behind newer anomalies of its location
        arrivals.append((arrival, maybe))
        if rng.random() < 0.03:
            duplicated.add(key_of(maybe))
            # Half of the copies come soon (pending), half long after (decided already).
            delay = rng.uniform(0, spread_s) if rng.random() < 0.5 else rng.uniform(120, 600)
            arrivals.append((arrival + delay, maybe))
    arrivals.sort(key=lambda item: item[0])
    envelopes = _envelopes([r for _, r in arrivals], batch_size, shards, run)
    return Stream(envelopes, anomalies, late, duplicated)


def _pick_late(rng: random.Random, anomalies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Anomalies certain to be late: their location has another anomaly 60-800 s newer,
    which arrives (at most a few seconds after its time) long before they do."""
    by_location: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in anomalies:
        by_location[record["sensor_data"]["location"]].append(record)
    late = []
    for records in by_location.values():
        records.sort(key=lambda r: r["sensor_data"]["timestamp"])
        stamps = [datetime.fromisoformat(r["sensor_data"]["timestamp"]) for r in records]
        candidates = [
            r
            for i, r in enumerate(records)
            if any(60 <= (s - stamps[i]).total_seconds() <= 800 for s in stamps[i + 1 : i + 40])
        ]
        late += rng.sample(candidates, min(8, len(candidates)))
    return late


def _envelopes(
    arrivals: list[dict[str, Any] | None], batch_size: int, shards: int, run: str
) -> list[Envelope]:
    out = []
    for number, start in enumerate(range(0, len(arrivals), batch_size)):
        batch = arrivals[start : start + batch_size]
        per_shard: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for record in batch:
            if record is not None:
                shard = stable_shard(record["sensor_data"]["location"], shards)
                per_shard[shard].append(record)
        for shard, records in sorted(per_shard.items()):
            batch_id = f"{run}-b{number:05d}-n{shard}"
            stamped = [{**r, "lineage": {**r["lineage"], "batch_id": batch_id}} for r in records]
            out.append(
                Envelope(batch_id, SCENARIO, 1, stamped, source="edge", meta={"shard": shard})
            )
    return out
