"""Reading a batch into columns: the quick path and the exact path agree."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sensorpipe.envelope import Envelope
from services.aggregator.readings import read_batch


def _row(i: int, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": i,
        "sensor_id": f"S{i % 3}",
        "timestamp": f"2026-01-01T10:00:{i:02d}.250+00:00",
        "temperature": 20.0 + i,
        "humidity": 50,
        "pressure": None,
    }
    row.update(fields)
    return row


def _batch(records: list[dict[str, Any]]) -> list[Envelope]:
    return [
        Envelope("b", "aggregated", 1, records[:3]),
        Envelope("b", "aggregated", 1, records[3:]),
    ]


def test_the_quick_and_the_exact_path_read_the_same_columns() -> None:
    records = [{"sensor_data": _row(i)} for i in range(6)]
    records[4]["quality"] = {"anomalous": True}
    quick = read_batch(_batch(records), validated=True)
    exact = read_batch(_batch(records), validated=False)
    for got in (quick, exact):
        assert got.names == ["S0", "S1", "S2"]
        assert got.codes.tolist() == [0, 1, 2, 0, 1, 2]
        assert got.at_us[1] - got.at_us[0] == 1_000_000
        assert got.parts.tolist() == [0, 0, 0, 1, 1, 1]
        assert got.anomalous.tolist() == [False, False, False, False, True, False]
    assert np.array_equal(quick.at_us, exact.at_us)
    assert np.array_equal(quick.values, exact.values, equal_nan=True)
    assert math.isnan(quick.values[0, 2])  # pressure None: missing
    assert math.isnan(quick.values[0, 3])  # vibration absent: missing


def test_the_exact_path_sets_aside_what_cannot_be_windowed_and_counts_bools_missing() -> None:
    records: list[dict[str, Any]] = [
        {"sensor_data": _row(0, temperature=True, humidity="wet", pressure=math.inf)},
        {"sensor_data": _row(1, timestamp="2026-01-01T12:00:01.250+02:00")},
        {"sensor_data": _row(2, timestamp="not a time")},
        {"sensor_data": _row(3, sensor_id="")},
        {"no": "sensor data"},
        {"sensor_data": _row(5, timestamp="2026-01-01T10:00:05.250")},  # no offset: UTC
    ]
    # Unvalidated, with a bool, a string and an offset: the quick path steps aside.
    got = read_batch([Envelope("b", "raw-ish", 1, records)], validated=True)
    assert [u.detail for u in got.unusable] == [
        "timestamp 'not a time' is not an ISO-8601 time",
        "reading has no sensor_id",
        "record has no sensor_data object",
    ]
    assert len(got) == 3
    assert math.isnan(got.values[0, 0]) and math.isnan(got.values[0, 1])  # bool, "wet"
    assert math.isnan(got.values[0, 2])  # infinite: missing
    # 12:00:01.25+02:00 is 10:00:01.25 UTC; the naive one is taken as UTC.
    assert (got.at_us[1] - got.at_us[0]) == 1_000_000
    assert (got.at_us[2] - got.at_us[0]) == 5_000_000
