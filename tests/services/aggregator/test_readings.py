"""Reading a batch into columns: the quick path and the exact path agree."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sensorpipe.columns import rows_of, table_of
from sensorpipe.envelope import Envelope
from services.aggregator.readings import TableRows, read_batch


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


def test_the_exact_path_sets_aside_what_cannot_be_windowed_with_its_reason() -> None:
    records: list[Any] = [
        {"sensor_data": _row(0, pressure=None)},
        {"sensor_data": _row(1, timestamp="2026-01-01T12:00:01.250+02:00")},
        {"sensor_data": _row(2, timestamp="not a time")},
        {"sensor_data": _row(3, sensor_id="")},
        {"no": "sensor data"},
        {"sensor_data": _row(5, timestamp="2026-01-01T10:00:05.250")},  # no offset: UTC
        {"sensor_data": _row(6, temperature=True)},
        {"sensor_data": _row(7, humidity="wet")},
        {"sensor_data": _row(8, pressure=math.inf)},
        {"sensor_data": _row(9, voltage=1e200)},
        {"sensor_data": _row(10, vibration={"x": 1})},
        {"sensor_data": _row(11, timestamp="0000-01-01T00:00:00")},
        {"sensor_data": _row(12, timestamp="0001-01-01T00:00:00+05:00")},  # before year 1
        {"sensor_data": _row(13, timestamp="9999-12-31T23:59:30+00:00")},  # window ends 10000
        {"sensor_data": _row(14, sensor_id=7)},
        ["not", "a", "record"],
    ]
    # Unvalidated, with a bool, a string and an offset: the quick path steps aside.
    got = read_batch([Envelope("b", "raw-ish", 1, records)], validated=True)
    reasons = [(u.reason, u.detail.split(" ")[0:2]) for u in got.unusable]
    assert [r for r, _ in reasons] == [
        "no_event_time",
        "no_sensor_id",
        "no_sensor_data",
        "metric_not_a_number",
        "metric_not_a_number",
        "metric_not_a_number",
        "metric_not_a_number",
        "metric_not_a_number",
        "no_event_time",
        "event_time_out_of_range",
        "event_time_out_of_range",
        "no_sensor_id",
        "no_sensor_data",
    ]
    details = [u.detail for u in got.unusable]
    assert details[0] == "timestamp 'not a time' is not an ISO-8601 time in years 1-9999"
    assert details[3] == "metric 'temperature' is True: bool, not a number"
    assert details[4] == "metric 'humidity' is 'wet': str, not a number"
    assert details[5] == "metric 'pressure' is inf: not a finite number"
    assert details[6] == "metric 'voltage' is 1e+200: beyond +-1e+150"
    assert "outside the windows of years 1-9999" in details[9]
    assert len(got) == 3
    assert math.isnan(got.values[0, 2])  # pressure None: missing
    # 12:00:01.25+02:00 is 10:00:01.25 UTC; the naive one is taken as UTC.
    assert (got.at_us[1] - got.at_us[0]) == 1_000_000
    assert (got.at_us[2] - got.at_us[0]) == 5_000_000


@pytest.mark.parametrize(
    "value", [True, False, 1e151, -1e151, math.nan, math.inf, 10**400, "1.5", [1.0], {"v": 1}]
)
def test_the_quick_path_takes_no_value_the_exact_path_would_set_aside(value: Any) -> None:
    """Arrow reads a bool as 0/1 and huge or non-finite floats as floats; the quick path
    checks for them and leaves the batch to the exact path, so both agree."""
    records = [{"sensor_data": _row(i)} for i in range(6)]
    records[2]["sensor_data"]["vibration"] = value
    quick = read_batch(_batch(records), validated=True)
    exact = read_batch(_batch(records), validated=False)
    for got in (quick, exact):
        assert [u.reason for u in got.unusable] == ["metric_not_a_number"]
        assert got.unusable[0].record is records[2] and got.unusable[0].part == 0
        assert len(got) == 5
    assert np.array_equal(quick.values, exact.values, equal_nan=True)


def test_the_edges_of_years_1_and_9999_are_windowed() -> None:
    first = "0001-01-01T00:00:00+00:00"
    last = "9999-12-31T23:58:59.999999+00:00"  # the last minute whose window ends in 9999
    records = [{"sensor_data": _row(0, timestamp=first)}, {"sensor_data": _row(1, timestamp=last)}]
    for validated in (True, False):
        got = read_batch([Envelope("b", "aggregated", 1, records)], validated=validated)
        assert not got.unusable and len(got) == 2


def _routed(i: int, **fields: Any) -> dict[str, Any]:
    return {"sensor_data": _row(i, **fields), "anomalous": i % 4 == 0}


def _tables(records: list[dict[str, Any]]) -> list[Envelope]:
    return [
        Envelope("b", "aggregated", 1, table=table_of(records[:3]), meta={"lineage": {}}),
        Envelope("b", "aggregated", 1, table=table_of(records[3:]), meta={"lineage": {}}),
    ]


def _same_readings(got: Any, want: Any) -> None:
    assert got.names == want.names
    assert got.codes.tolist() == want.codes.tolist()
    assert got.at_us.tolist() == want.at_us.tolist()
    assert np.array_equal(got.values, want.values, equal_nan=True)
    assert got.anomalous.tolist() == want.anomalous.tolist()
    assert got.parts.tolist() == want.parts.tolist()
    assert got.provenance == want.provenance and got.origin.tolist() == want.origin.tolist()
    assert [(u.reason, u.part) for u in got.unusable] == [(u.reason, u.part) for u in want.unusable]
    assert [got.records[i] for i in range(len(got))] == list(want.records)


@pytest.mark.parametrize(
    "records",
    [
        [_routed(i) for i in range(7)],
        [_routed(i, humidity=50.5 + i, vibration=i) for i in range(7)],  # ints, floats
        [_routed(i, temperature=True if i == 2 else 20.0) for i in range(7)],  # a boolean
        [_routed(i, humidity=50 if i % 2 else 50.5) for i in range(7)],  # mixed: JSON text
        [_routed(i, timestamp="2026-01-01T10:00:00Z") for i in range(7)],
        [
            {"sensor_data": _row(i)} | ({"anomalous": None} if i == 5 else {"anomalous": False})
            for i in range(7)
        ],
    ],
)
def test_columnar_parts_read_the_same_as_their_records(records: list[dict[str, Any]]) -> None:
    want = read_batch(
        [
            Envelope(e.batch_id, e.scenario, 1, rows_of(e.table), meta=e.meta)
            for e in _tables(records)
        ],
        validated=True,
    )
    _same_readings(read_batch(_tables(records), validated=True), want)


def test_a_typical_columnar_batch_is_read_without_a_dict_per_record() -> None:
    readings = read_batch(_tables([_routed(i) for i in range(7)]), validated=True)
    assert isinstance(readings.records, TableRows)
