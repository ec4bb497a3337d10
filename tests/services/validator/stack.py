"""The shared in-memory AWS (tests/moto_stack.py) with the stateless stages' pipeline
provisioned, for handler tests of the enricher and the validator, plus a builder of
their input envelopes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tests.moto_stack as shared
from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope
from tests.moto_stack import MotoStack


def envelope_of(
    scenario: str, rows: list[dict[str, Any]], batch_id: str = "edge-1-000001"
) -> Envelope:
    return Envelope(
        batch_id=batch_id,
        scenario=scenario,
        config_version=3,
        records=[{"sensor_data": row} for row in rows],
        source="edge-1",
        created_at="2025-08-18T10:20:00.000+00:00",
        hops=[{"stage": "uploader", "at": "2025-08-18T10:20:00.000+00:00"}],
    )


@pytest.fixture
def moto_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoStack]:
    config = PipelineConfig(
        buckets={"prefix": "unit-stages"},
        queues={"prefix": "unit-stages"},
        filters=[{"name": "drop_anomalous_status", "field": "status_code", "op": "eq", "value": 1}],
    )
    with shared.moto_stack(monkeypatch, config) as stack:
        yield stack
