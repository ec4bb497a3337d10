"""The columnar body (``content-encoding: arrow``): records as one Arrow table."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorpipe.columns import JSON_TEXT
from sensorpipe.envelope import (
    ARROW,
    AttributeMismatchError,
    Envelope,
    EnvelopeError,
    Position,
    decode,
    encode,
    encode_to_fit,
)


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "sensor_data": {
                "id": i,
                "timestamp": f"2026-12-01T10:{i % 60:02d}:00Z",
                "sensor_id": f"s{i % 7}",
                "temperature": 20.0 + i / 10,
                "anomaly_type": None if i % 3 else "spike",
            }
        }
        for i in range(1, n + 1)
    ]


def _envelope(n: int = 50) -> Envelope:
    return Envelope(
        "src-tok-g1-1-50",
        "notification",
        3,
        _rows(n),
        source="edge-1",
        position=Position("edge-1:g1", 4),
        meta={"lineage": {"node_id": "n1"}},
    )


def _arrow_body(table: pa.Table, header: dict[str, Any], layout: bytes = b"1") -> str:
    table = table.replace_schema_metadata(
        {b"sensorpipe.envelope": orjson.dumps(header), b"sensorpipe.columns": layout}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode()


_HEADER = {"v": 1, "batch_id": "b-1", "scenario": "raw", "config_version": 1}
_ATTRS = {"content-encoding": ARROW}


def test_a_columnar_envelope_decodes_to_the_same_envelope_without_making_dicts() -> None:
    envelope = _envelope()
    encoded = encode(envelope, compress=True, columnar=True)
    assert encoded.attributes["content-encoding"] == ARROW
    assert encoded.attributes["record-count"] == "50"
    decoded = decode(encoded.body, encoded.attributes)
    assert decoded.columnar and decoded.record_count == 50
    assert decoded.table.column("sensor_data").type.field("id").type == pa.int64()
    assert decoded.to_dict() == envelope.to_dict()  # header and every record
    assert decoded.columnar  # to_dict did not turn it into dicts
    assert decoded.records == _rows(50)
    assert not decoded.columnar


def test_records_changed_after_reading_them_are_what_is_encoded_next() -> None:
    encoded = encode(_envelope(3), compress=True, columnar=True)
    decoded = decode(encoded.body, encoded.attributes)
    decoded.records[0]["quality"] = {"valid": True}
    again = decode(*_body_and_attrs(encode(decoded, compress=True, columnar=True)))
    assert again.records[0]["quality"] == {"valid": True}
    assert "quality" not in again.records[1]


def _body_and_attrs(encoded: Any) -> tuple[str, dict[str, str]]:
    return encoded.body, encoded.attributes


def test_a_split_columnar_batch_keeps_every_record_once_with_covering_positions() -> None:
    envelope = _envelope(400)
    parts = encode_to_fit(envelope, max_bytes=4096, compress=True, columnar=True)
    assert len(parts) > 1
    decoded = [decode(p.body, p.attributes) for p in parts]
    assert [r for d in decoded for r in d.records] == _rows(400)
    paths = [d.position.part for d in decoded if d.position is not None]
    assert len(paths) == len(parts)
    # the split paths are the leaves of one binary tree: their sizes add up to a whole
    assert sum(2.0 ** -len(path) for path in paths) == 1.0
    for d in decoded:
        assert d.position is not None
        assert d.batch_id == "src-tok-g1-1-50" + "".join(f".{c}" for c in d.position.part)


def test_records_no_table_holds_are_sent_as_json() -> None:
    envelope = Envelope("b-1", "raw", 1, [{}, {}])
    encoded = encode(envelope, compress=True, columnar=True)
    assert encoded.attributes["content-encoding"] == "gzip"
    assert decode(encoded.body, encoded.attributes).records == [{}, {}]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("not base64!", "not a base64 Arrow IPC stream"),
        (base64.b64encode(b"plain bytes").decode(), "not a base64 Arrow IPC stream"),
        (_arrow_body(pa.table({"a": [1]}), _HEADER, layout=b"9"), "layout b'9'"),
        (_arrow_body(pa.table({"a": [1]}), {**_HEADER, "records": []}), "'records' is not"),
        (_arrow_body(pa.table({"a": [1]}), {**_HEADER, "batch_id": "a b"}), "'batch_id'"),
        (_arrow_body(pa.table({"a": pa.array([1], pa.int8())}), _HEADER), "column 'a' is int8"),
        (
            _arrow_body(
                pa.table({"a": ["[1,"]}).cast(
                    pa.schema([pa.field("a", pa.string(), metadata={JSON_TEXT: b"1"})])
                ),
                _HEADER,
            ),
            "row 0 is not JSON",
        ),
    ],
)
def test_a_bad_columnar_body_is_poison_with_its_reason(body: str, expected: str) -> None:
    with pytest.raises(EnvelopeError) as raised:
        decode(body, _ATTRS)
    assert expected in str(raised.value)


def test_a_record_count_attribute_that_contradicts_the_table_is_poison() -> None:
    encoded = encode(_envelope(5), compress=True, columnar=True)
    with pytest.raises(AttributeMismatchError, match="record-count '5'"):
        decode(encoded.body, {**encoded.attributes, "record-count": "6"})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_as_a_columnar_body_decode_or_raise_envelope_error(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(base64.b64encode(data).decode(), _ATTRS)
