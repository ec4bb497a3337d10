"""The columnar engine gives the report the per-record engine gives, for any batch.

The per-record path (records as dicts, ``rules.CompiledSpec``) is the reference, held to
plain-Python oracles in test_rules.py and test_batch.py; here random batches full of
edge cases (wrong types, NaN, 2**63, control characters, timestamps of every shape,
missing and null, readings that are not objects) go through both, once as a table made
in memory and once through the columnar body codec, and every output must agree: the
forwarded records with their quality, the rejected and filtered lines, the summary.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorpipe.columns import rows_of, table_of
from sensorpipe.config import FilterRule, load_validation_spec
from sensorpipe.envelope import Envelope, decode, encode
from services.validator.batch import BatchResult, BatchValidator
from tests.services.validator.rows import anomalous_reading, reading

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
FILTERS = [
    FilterRule(name="drop_anomalous_status", field="status_code", op="eq", value=1),
    FilterRule(name="cold", field="temperature", op="lt", value=0),
    FilterRule(name="no_model", field="model", op="is_null", value=True),
]

ODD_VALUES: list[Any] = [
    None,
    "<missing>",
    0,
    1,
    -1,
    2,
    1.0,
    0.0,
    -0.0,
    True,
    False,
    2**53 + 1,
    2**63 - 1,
    2**63,  # beyond int64: the column becomes JSON text (no body holds more than u64)
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    "",
    "21.5",
    "spike",
    "unknown",
    "tab\there",
    "del\x7f",
    "\u200fright-to-left",
    "CHI_000001",
    "Denver",
    [],
    [1, 2],
    {},
    {"nested": 1},
    "2025-08-18T10:00:00Z",
    "2025-08-18T10:00:00.2+00:00",
    "2025-08-18T10:00:00.123456789Z",
    "2025-08-18T10:00:00",
    "2025-08-18 10:00:00Z",
    "2025-08-18T10:00Z",
    "2025-08-18T23:59:60Z",
    "2023-02-29T10:00:00Z",
    "2024-02-29T10:00:00+05:30",
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "1000-01-01T00:00:00Z",
    "2025-08-18T12:04:59.999Z",
    "2025-08-18T12:05:00.001Z",
    "2025-08-18T10:00:00+2400",
    "2025-08-18T10:00:00+05:60",
    "2025-08-18t10:00:00z",
    "1.4.0-beta+exp",
    "-05:00",
]
FIELDS = list(reading(1))
# Odd values that keep a column's type, so the vectorised checks (not the fallback for
# mixed columns) meet them.
SPEC_TYPES = {
    name: {"number": float, "integer": int, "boolean": bool}.get(field.type, str)
    for name, field in load_validation_spec().fields.items()
}
TYPED: dict[type, list[Any]] = {
    bool: [True, False],
    str: [v for v in ODD_VALUES if isinstance(v, str) and v != "<missing>"],
    float: [v for v in ODD_VALUES if isinstance(v, float)] + [-50.0, 150.0, 150.000001, 95.0],
    int: [v for v in ODD_VALUES if type(v) is int and v < 2**63] + [0, 1, 5],
}


@st.composite
def records(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=30))
    typed = draw(st.booleans())  # odd values of each field's own type only
    out: list[dict[str, Any]] = []
    for row_id in range(1, count + 1):
        shape = draw(st.sampled_from(["valid", "valid", "anomalous", "odd", "odd", "odd"]))
        if shape == "anomalous":
            data: Any = anomalous_reading(row_id, draw(st.sampled_from(["spike", "noise", ""])))
        else:
            data = reading(row_id, temperature=draw(st.sampled_from([22.5, 45.0, -5.0, 3.0])))
        if shape == "odd":
            for name in draw(st.lists(st.sampled_from([*FIELDS, "extra"]), max_size=3)):
                kind = SPEC_TYPES.get(name)
                pool = TYPED[kind] if typed and kind is not None else ODD_VALUES
                # (missing beside null makes a column JSON text: only in untyped batches)
                value = draw(st.sampled_from([*pool, None] if typed else pool))
                if value == "<missing>":
                    data.pop(name, None)
                else:
                    data[name] = value
        record: dict[str, Any] = {"sensor_data": data, "lineage": {"batch_id": "b-1"}}
        odd_record = draw(st.integers(min_value=0, max_value=1000 if typed else 60))
        if odd_record == 0:
            record["sensor_data"] = draw(st.sampled_from([None, [1], "text", 7]))
        elif odd_record == 1:
            del record["sensor_data"]
        elif odd_record == 2:
            record["quality"] = {"spec_version": "0.9"}  # replayed: replaced in place
        out.append(record)
    return out


@pytest.fixture(scope="module")
def validator() -> BatchValidator:
    return BatchValidator(load_validation_spec(), FILTERS)


def _envelope(**kw: Any) -> Envelope:
    return Envelope(
        batch_id="edge-1-000007",
        scenario="filtered",
        config_version=4,
        created_at="2025-08-18T11:59:00.000+00:00",
        **kw,
    )


def _report(result: BatchResult) -> dict[str, Any]:
    return {
        "forward": rows_of(result.forward.table),
        "rejected": result.rejected,
        "filtered": result.filtered,
        "summary": result.summary,
        "errors": dict(result.error_counts),
        "has_content": bool(result.content),
        "hops": result.forward.hops,
        "header": {k: v for k, v in result.forward.header().items() if k != "record_count"},
    }


def _difference(a: Any, b: Any, where: str = "") -> str | None:
    """Where two reports differ (types and key order included, NaN equal to NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)} != {list(b)}"
        found = (_difference(a[k], b[k], f"{where}.{k}") for k in a)
        return next((d for d in found if d is not None), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        found = (
            _difference(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True))
        )
        return next((d for d in found if d is not None), None)
    if type(a) is type(b) and a == b:
        return None
    return f"{where}: {a!r} != {b!r}"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=records(), apply_filters=st.booleans())
def test_columns_and_records_give_the_same_report(
    validator: BatchValidator, batch: list[dict[str, Any]], apply_filters: bool
) -> None:
    # Both engines read the same records: the batch as a table holds them (a NaN in
    # a column of mixed types is JSON null, as in any body; test_columns says the rest).
    table = table_of(batch)
    by_records = validator.validate_envelope(
        _envelope(records=rows_of(table)), apply_filters=apply_filters, now=NOW
    )
    expected = _report(by_records)
    in_memory = validator.validate_envelope(
        _envelope(table=table), apply_filters=apply_filters, now=NOW
    )
    assert _difference(_report(in_memory), expected) is None
    sent = encode(_envelope(table=table), compress=True, columnar=True)
    decoded = decode(sent.body, sent.attributes)
    assert decoded.columnar
    through_codec = validator.validate_envelope(decoded, apply_filters=apply_filters, now=NOW)
    assert _difference(_report(through_codec), expected) is None


def test_a_clean_batch_is_decided_on_columns_without_a_dict(
    validator: BatchValidator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row cleared: the exact checks are never asked, yet every record is
    forwarded with its quality (an anomalous one with its reasons)."""
    rows = [reading(1), anomalous_reading(2, "spike"), reading(3, humidity=95.5)]
    batch = [{"sensor_data": r} for r in rows]

    def refuse(*_: Any) -> list[dict[str, Any]]:
        raise AssertionError("a cleared row reached the per-record checks")

    monkeypatch.setattr(validator.compiled, "errors", refuse)
    result = validator.validate_envelope(
        _envelope(table=table_of(batch)), apply_filters=False, now=NOW
    )
    forwarded = rows_of(result.forward.table)
    assert [r["sensor_data"] for r in forwarded] == rows
    assert [r["quality"]["anomaly_reasons"] for r in forwarded] == [
        [],
        ["sensor_flag:spike"],
        ["humidity above 90"],
    ]
    assert [r["quality"]["anomalous"] for r in forwarded] == [False, True, True]
    assert result.summary["anomalous"] == 2 and result.rejected == []


def test_the_content_digest_follows_the_rows(validator: BatchValidator) -> None:
    """A redelivered columnar body names its error objects alike; other rows do not."""
    bad = [{"sensor_data": reading(1, humidity=140.0)}, {"sensor_data": reading(2)}]
    other = [{"sensor_data": reading(1, humidity=141.0)}, {"sensor_data": reading(2)}]

    def content(batch: list[dict[str, Any]]) -> str:
        sent = encode(_envelope(table=table_of(batch)), compress=True, columnar=True)
        envelope = decode(sent.body, sent.attributes)
        return validator.validate_envelope(envelope, apply_filters=False, now=NOW).content

    assert content(bad) == content(bad) != content(other)
    assert len(content(bad)) == 16
