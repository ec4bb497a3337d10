"""Simulated edge sources and the envelopes the router hands the notifier from them.

Each source is one **stream** (an edge database generation). Its sensors read once a
second at several locations; anomalies come at different rates per location plus a few
dense clusters. The source writes every reading a little after its time (up to
``spread_s``, below the grace), so rows are mildly out of order across batch
boundaries; ``late_rows`` anomalies are written minutes after their time; a few
readings are written twice (some with the timestamp spelt differently: the same
reading). Rows are cut into batches in the order they were written and numbered
0, 1, 2, ... Batch 0 of every source is a warm-up: normal readings only, all at
``START - 20 s`` (see :func:`warm_up_first`).

:func:`routed` shapes a source batch the way the router sends it on: for **every**
notify shard one envelope per piece (the batch whole, or split in dyadic pieces like
``encode_to_fit`` does), holding that shard's anomalous records (maybe none: a progress
envelope), with the position (stream, seq, split path) and ``max_event_us``, the newest
event time among all the piece's readings.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sensorpipe.envelope import Envelope, Position
from sensorpipe.records import stable_shard
from tests.services.notifier.reference import late_in_source_order, reading_key

LOCATIONS = ("Chicago", "Denver", "Texas Wind Farm", "São Paulo", "Berlin")
ANOMALY_RATE = {
    "Chicago": 0.002,
    "Denver": 0.006,
    "Texas Wind Farm": 0.0008,
    "São Paulo": 0.012,
    "Berlin": 0.003,
}
START = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
WARM_UP = START - timedelta(seconds=20)
SCENARIO = "notification"
QUIET_TAIL_S = 90  # no anomaly in the last 90 s: every decision can be made at the end
_US = 1_000_000


def us(at: datetime) -> int:
    return round((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * _US)


def reading(
    location: str,
    sensor_id: str,
    at: datetime,
    row_id: int,
    *,
    batch_id: str,
    anomalous: bool = True,
    stamp: str | None = None,
) -> dict[str, Any]:
    """A record as the router forwards it: sensor_data + lineage + quality."""
    stamp = stamp or at.isoformat(timespec="milliseconds")
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
            "node_id": f"edge-{sensor_id[:2].lower()}",
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
class SourceBatch:
    """One batch as its source wrote it: every reading's event time (normal ones too:
    they move ``max_event_us``) and the anomalous records, both in row order."""

    stream: str
    seq: int
    batch_id: str
    rows: list[tuple[int, dict[str, Any] | None]]

    @property
    def anomalies(self) -> list[dict[str, Any]]:
        return [r for _, r in self.rows if r is not None]


@dataclass
class Source:
    batches: list[SourceBatch]  # stream by stream, each in seq order
    on_time: list[dict[str, Any]]  # first copies of anomalies, not late in source order
    late: list[dict[str, Any]]  # first copies written more than the grace late
    duplicated: set[str] = field(default_factory=set)  # reading keys written twice

    @property
    def streams(self) -> list[str]:
        return sorted({b.stream for b in self.batches})

    def anomalies(self) -> list[dict[str, Any]]:
        return self.on_time + self.late


def key_of(record: dict[str, Any]) -> str:
    return reading_key(record)


def simulate(
    seed: int = 7,
    *,
    streams: int = 1,
    sensors: int = 12,
    seconds: int = 1200,
    batch_rows: int = 120,
    spread_s: float = 4.0,
    late_rows: int = 0,
    duplicate_rate: float = 0.03,
    grace_s: float = 10.0,
    run: str = "sim",
) -> Source:
    """``streams`` sources with ``sensors`` sensors each, over ``seconds`` of event time.

    On time and late are judged per source in its own order (reference.py): exactly the
    service's rule for one source; with several, see :func:`warm_up_first`."""
    rng = random.Random(seed)
    batches: list[SourceBatch] = []
    on_time: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    duplicated: set[str] = set()
    for s in range(streams):
        stream = f"edge{s}-{run}{seed}-g1"
        clusters = {
            (loc, rng.randrange(60, seconds - QUIET_TAIL_S - 80)) for loc in LOCATIONS for _ in "ab"
        }
        rows: list[tuple[float, int, dict[str, Any] | None]] = []
        row_id = 0
        for second in range(seconds):
            for index in range(sensors):
                location = LOCATIONS[(index + s) % len(LOCATIONS)]
                row_id += 1
                at = START + timedelta(seconds=second, milliseconds=rng.randrange(1000))
                near = any(loc == location and 0 <= second - c < 20 for loc, c in clusters)
                rate = 0.08 if near else ANOMALY_RATE[location]
                record = None
                if rng.random() < rate and second < seconds - QUIET_TAIL_S:
                    sensor = f"E{s}S{index:02d}"
                    record = reading(location, sensor, at, row_id, batch_id="")
                written = (at - START).total_seconds() + rng.uniform(0, spread_s)
                rows.append((written, us(at), record))
        anomalous = [(w, t, r) for w, t, r in rows if r is not None]
        written_late = rng.sample(range(len(anomalous)), min(late_rows, len(anomalous)))
        for index in written_late:
            written, at_us, record = anomalous[index]
            rows.remove((written, at_us, record))
            rows.append((written + rng.uniform(90, 600), at_us, record))
        for index, (written, at_us, record) in enumerate(anomalous):
            if index in written_late or rng.random() >= duplicate_rate:
                continue
            copy_ = copy.deepcopy(record)
            if rng.random() < 0.5:  # the same instant, spelt differently
                at = datetime.fromisoformat(copy_["sensor_data"]["timestamp"])
                copy_["sensor_data"]["timestamp"] = at.isoformat(timespec="microseconds")
            soon = rng.random() < 0.5
            delay = rng.uniform(0, spread_s) if soon else rng.uniform(60, 400)
            rows.append((written + delay, at_us, copy_))
            duplicated.add(reading_key(record))
        rows.sort(key=lambda row: row[0])
        warm = [(us(WARM_UP), None) for _ in range(sensors)]
        stream_batches = [SourceBatch(stream, 0, f"{stream}-00000", list(warm))]
        for number, start in enumerate(range(0, len(rows), batch_rows), start=1):
            chunk = [(at_us, record) for _, at_us, record in rows[start : start + batch_rows]]
            stream_batches.append(SourceBatch(stream, number, f"{stream}-{number:05d}", chunk))
        for batch in stream_batches:
            for index, (at_us, record) in enumerate(batch.rows):
                if record is not None:
                    stamped = {
                        **record,
                        "lineage": {**record["lineage"], "batch_id": batch.batch_id},
                    }
                    batch.rows[index] = (at_us, stamped)
        fresh, old = late_in_source_order(
            [([t for t, _ in b.rows], b.anomalies) for b in stream_batches], grace_s=grace_s
        )
        on_time += fresh
        late += old
        batches += stream_batches
    return Source(batches, on_time, late, duplicated)


# -- the router's side ---------------------------------------------------------------------


def piece_rows(
    rows: Sequence[tuple[int, dict[str, Any] | None]], path: str
) -> list[tuple[int, dict[str, Any] | None]]:
    """The rows of a split path: halves as ``encode_to_fit`` cuts them (first half
    ``len // 2`` rows)."""
    out = list(rows)
    for step in path:
        mid = len(out) // 2
        out = out[:mid] if step == "0" else out[mid:]
    return out


def random_split(rng: random.Random, depth: int, rows: int) -> list[str]:
    """A random dyadic partition of a batch of ``rows`` rows, pieces at most ``depth``
    levels deep, none empty."""
    paths: list[str] = []

    def cut(path: str, size: int) -> None:
        if size >= 2 and len(path) < depth and rng.random() < 0.6:
            cut(path + "0", size // 2)
            cut(path + "1", size - size // 2)
        else:
            paths.append(path)

    cut("", rows)
    return paths


def routed(
    batch: SourceBatch, shards: int, *, pieces: Sequence[str] = ("",)
) -> list[tuple[int, Envelope]]:
    """(shard, envelope) for every piece and every shard, as the router sends them."""
    out: list[tuple[int, Envelope]] = []
    for path in pieces:
        rows = piece_rows(batch.rows, path)
        assert rows, f"piece {path!r} of {batch.batch_id} is empty"
        piece_id = batch.batch_id + "".join(f".{step}" for step in path)
        records = [r for _, r in rows if r is not None]
        for shard in range(shards):
            mine = [
                r for r in records if stable_shard(r["sensor_data"]["location"], shards) == shard
            ]
            out.append(
                (
                    shard,
                    Envelope(
                        piece_id if shards == 1 else f"{piece_id}.s{shard}",
                        SCENARIO,
                        1,
                        mine,
                        source="edge",
                        created_at=START.isoformat(timespec="milliseconds"),
                        hops=[{"stage": "router", "at": "2026-11-22T02:00:00.000+00:00"}],
                        position=Position(batch.stream, batch.seq, path),
                        max_event_us=max(t for t, _ in rows),
                    ),
                )
            )
    return out


def warm_up_first(batches: Sequence[SourceBatch]) -> tuple[list[SourceBatch], list[SourceBatch]]:
    """(every source's batch 0, the rest). With several sources, the tests deliver the
    batch 0s before anything else: a source whose first batch has not been applied yet
    does not hold the shard's watermark back (sensorpipe/stateful/streams.py), so
    another source running ahead before it would make its readings late."""
    first = [b for b in batches if b.seq == 0]
    return first, [b for b in batches if b.seq != 0]
