"""A columnar batch is forwarded cut from its table: every shard's envelope stays
columnar and decodes to exactly the records the dict path forwards (the oracle)."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import pytest

from sensorpipe import columns
from sensorpipe.envelope import Envelope, Position
from services.router.destinations import (
    AggregatorForwarder,
    NotifierForwarder,
    RoutedBatch,
    ShardForwarder,
)
from tests.services.router.conftest import envelope, reading, record


def batch_records() -> list[dict[str, Any]]:
    rows = [reading(i, f"2025-08-18T0{i % 3}:15:00Z") for i in range(40)]
    rows[5].pop("location")
    rows[6]["sensor_id"] = None
    return [record(row, anomalous=i % 4 == 0, lineage=i % 2 == 0) for i, row in enumerate(rows)]


def as_columnar(env: Envelope) -> Envelope:
    return env.with_table(columns.table_of(env.records))


def forwarded(forwarder: ShardForwarder, env: Envelope) -> list[tuple[int, str, list[Any]]]:
    return [
        (shard, part.batch_id, part.records)
        for shard, part in forwarder.envelopes(RoutedBatch.of(env))
    ]


@pytest.mark.parametrize("kind", [AggregatorForwarder, NotifierForwarder])
@pytest.mark.parametrize("shards", [1, 3, 8])
@pytest.mark.parametrize("sequenced", [False, True])
def test_columnar_parts_decode_to_the_dict_paths_records(
    kind: type[ShardForwarder], shards: int, sequenced: bool
) -> None:
    forwarder = kind([MagicMock() for _ in range(shards)])
    plain = envelope("full", batch_records())
    if sequenced:
        plain = plain.with_records(plain.records, position=Position("edge", 3))
    table_env = as_columnar(plain)
    parts = forwarder.envelopes(RoutedBatch.of(table_env))
    assert all(part.columnar for _, part in parts)
    assert forwarded(forwarder, table_env) == forwarded(forwarder, plain)
    assert [p.max_event_us for _, p in parts] == [
        p.max_event_us for _, p in forwarder.envelopes(RoutedBatch.of(plain))
    ]


def test_routing_a_columnar_batch_leaves_it_columnar() -> None:
    env = as_columnar(envelope("full", batch_records()))
    AggregatorForwarder([MagicMock(), MagicMock()]).envelopes(RoutedBatch.of(env))
    assert env.columnar
