"""Batch envelopes: round trip, deterministic size-aware splitting, poison bodies."""

from __future__ import annotations

import base64
import gzip
import re
import zlib
from typing import Any

import orjson
import pytest

from sensorpipe.envelope import (
    ATTR_BATCH_ID,
    ATTR_CONFIG_VERSION,
    ATTR_ENCODING,
    ATTR_RECORD_COUNT,
    ATTR_SCENARIO,
    Envelope,
    EnvelopeError,
    Position,
    RecordTooLargeError,
    decode,
    encode,
    encode_to_fit,
    encoded_size,
)


def _records(count: int, width: int = 40) -> list[dict[str, Any]]:
    return [
        {
            "sensor_data": {
                "id": i,
                "sensor_id": f"TEMP_{i % 13:03d}",
                "timestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                "temperature": 20.0 + i / 10,
                "location": "Hall 7 — north wall",  # non-ASCII survives the trip
                "note": "x" * width,
            },
            "lineage": {"node": "edge-1", "hops": [i]},
        }
        for i in range(count)
    ]


def _envelope(count: int = 5, **changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "batch_id": "edge-1:42",
        "scenario": "multi-destination",
        "config_version": 7,
        "records": _records(count),
        "source": "edge-1",
        "created_at": "2026-01-01T00:00:00.000+00:00",
        "hops": [{"stage": "uploader", "at": "2026-01-01T00:00:00.000+00:00"}],
        "meta": {"spec_version": "2.0.0"},
    }
    fields.update(changes)
    return Envelope(**fields)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "identity"])
def test_round_trip(compress: bool) -> None:
    envelope = _envelope(25)
    encoded = encode(envelope, compress=compress)
    assert encoded.attributes[ATTR_ENCODING] == ("gzip" if compress else "identity")
    assert encoded.attributes[ATTR_BATCH_ID] == "edge-1:42"
    assert encoded.attributes[ATTR_SCENARIO] == "multi-destination"
    assert encoded.attributes[ATTR_CONFIG_VERSION] == "7"
    assert encoded.attributes[ATTR_RECORD_COUNT] == "25"
    assert decode(encoded.body, encoded.attributes) == envelope


def test_compression_shrinks_repetitive_batches() -> None:
    envelope = _envelope(200)
    plain = encode(envelope, compress=False)
    packed = encode(envelope, compress=True)
    assert encoded_size(packed) < encoded_size(plain) / 3


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "identity"])
def test_split_under_a_byte_limit_keeps_every_record_in_order(compress: bool) -> None:
    envelope = _envelope(400)
    limit = 3 * 1024 if compress else 16 * 1024
    parts = encode_to_fit(envelope, max_bytes=limit, compress=compress)
    assert len(parts) > 2
    assert all(encoded_size(p) <= limit for p in parts)
    decoded = [decode(p.body, p.attributes) for p in parts]
    assert [r for d in decoded for r in d.records] == envelope.records
    assert sum(p.record_count for p in parts) == 400
    # Parts keep the batch's identity and say which part they are.
    assert len({d.batch_id for d in decoded}) == len(parts)
    assert all(d.batch_id.startswith("edge-1:42.") for d in decoded)
    assert all(
        (d.scenario, d.config_version, d.source, d.hops, d.meta)
        == (envelope.scenario, 7, "edge-1", envelope.hops, envelope.meta)
        for d in decoded
    )


def test_split_is_deterministic_across_runs() -> None:
    # Same records and limit: same part ids and same bytes (a resend is an overwrite).
    first = encode_to_fit(_envelope(300), max_bytes=6000, compress=False)
    second = encode_to_fit(_envelope(300), max_bytes=6000, compress=False)
    assert [p.batch_id for p in first] == [p.batch_id for p in second]
    assert [p.body for p in first] == [p.body for p in second]
    # Ids name the halves (".0" first half, ".1" second) and sort in record order.
    ids = [p.batch_id for p in first]
    assert all(re.fullmatch(r"edge-1:42(\.[01])+", i) for i in ids)
    assert ids == sorted(ids)


def test_a_batch_that_fits_is_not_split() -> None:
    parts = encode_to_fit(_envelope(3), max_bytes=256 * 1024, compress=True)
    assert [p.batch_id for p in parts] == ["edge-1:42"]


def test_single_record_over_the_limit_is_an_error_naming_the_batch() -> None:
    huge = _envelope(1, records=[{"sensor_data": {"id": 1, "blob": "z" * 5000}}])
    with pytest.raises(RecordTooLargeError) as info:
        encode_to_fit(huge, max_bytes=2048, compress=False)
    assert info.value.batch_id == "edge-1:42"
    assert info.value.limit == 2048
    assert info.value.size > 2048
    assert isinstance(info.value, EnvelopeError)
    assert "max_body_bytes" in str(info.value)


def test_one_oversized_record_among_small_ones_is_still_an_error() -> None:
    records = [*_records(6), {"sensor_data": {"id": 99, "blob": "q" * 9000}}]
    with pytest.raises(RecordTooLargeError) as info:
        encode_to_fit(_envelope(records=records), max_bytes=4096, compress=False)
    assert info.value.batch_id.startswith("edge-1:42.")


def _gzip_body(payload: Any) -> str:
    return base64.b64encode(zlib.compress(orjson.dumps(payload))).decode()


IDENTITY = {ATTR_ENCODING: "identity"}

POISON: list[tuple[str, str, dict[str, str], str]] = [
    ("not base64", "%%% not base64 %%%", {ATTR_ENCODING: "gzip"}, "base64"),
    (
        "base64 but not compressed",
        base64.b64encode(b"plain text").decode(),
        {ATTR_ENCODING: "gzip"},
        "base64+gzip",
    ),
    ("not JSON", "{this is not json", {ATTR_ENCODING: "identity"}, "not valid JSON"),
    (
        "compressed non-JSON",
        base64.b64encode(zlib.compress(b"<xml/>")).decode(),
        {ATTR_ENCODING: "gzip"},
        "not valid JSON",
    ),
    ("JSON list", "[1, 2, 3]", IDENTITY, "expected an envelope object"),
    ("JSON string", '"hello"', IDENTITY, "expected an envelope object"),
    ("empty object", "{}", IDENTITY, "envelope version 'v' is null, expected 1"),
    (
        "records not a list",
        orjson.dumps(
            {"v": 1, "batch_id": "b", "scenario": "raw", "config_version": 1, "records": {"a": 1}}
        ).decode(),
        IDENTITY,
        "'records' is an object: input should be a valid list",
    ),
    (
        "record not an object",
        orjson.dumps(
            {
                "v": 1,
                "batch_id": "b",
                "scenario": "raw",
                "config_version": 1,
                "records": [{"ok": 1}, 5],
            }
        ).decode(),
        IDENTITY,
        "'records[1]' is the number 5, expected an object",
    ),
    (
        "config_version a string",
        orjson.dumps(
            {"v": 1, "batch_id": "b", "scenario": "raw", "config_version": "1", "records": []}
        ).decode(),
        IDENTITY,
        "'config_version' is a string of 1 character(s) ('1'): input should be a valid integer",
    ),
    (
        "config_version a boolean",
        _gzip_body(
            {"v": 1, "batch_id": "b", "scenario": "raw", "config_version": True, "records": []}
        ),
        {ATTR_ENCODING: "gzip"},
        "'config_version' is true: input should be a valid integer",
    ),
    (
        "future envelope version",
        orjson.dumps(
            {"v": 9, "batch_id": "b", "scenario": "raw", "config_version": 1, "records": []}
        ).decode(),
        IDENTITY,
        "envelope version 'v' is the number 9, expected 1",
    ),
    ("unknown encoding", "{}", {ATTR_ENCODING: "br"}, "unknown content-encoding"),
]


@pytest.mark.parametrize(
    ("body", "attributes", "words"),
    [pytest.param(b, a, w, id=name) for name, b, a, w in POISON],
)
def test_poison_bodies_raise_envelope_error(
    body: str, attributes: dict[str, str], words: str
) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode(body, attributes)
    assert words in str(info.value)


def test_with_records_copies_ids_and_does_not_share_hops() -> None:
    original = _envelope(2)
    copy = original.with_records([{"sensor_data": {"id": 5}}], batch_id="edge-1:42.x")
    copy.add_hop("validator")
    assert (copy.scenario, copy.config_version, copy.batch_id) == (
        "multi-destination",
        7,
        "edge-1:42.x",
    )
    assert len(original.hops) == 1 and len(copy.hops) == 2


def test_gzip_bodies_are_real_gzip_and_reproducible() -> None:
    envelope = _envelope(20)
    first, second = encode(envelope, compress=True), encode(envelope, compress=True)
    assert first.body == second.body  # no timestamp in the gzip header
    unpacked = gzip.decompress(base64.b64decode(first.body))  # any gzip reader can open it
    assert orjson.loads(unpacked)["records"] == envelope.records


def test_a_bare_zlib_body_is_still_accepted() -> None:
    envelope = _envelope(3)
    body = base64.b64encode(zlib.compress(orjson.dumps(envelope.to_dict()))).decode()
    assert decode(body, {ATTR_ENCODING: "gzip"}) == envelope


def test_a_compression_bomb_is_poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sensorpipe.envelope.MAX_DECODED_BYTES", 1024 * 1024)
    bomb = base64.b64encode(gzip.compress(b"[" + b"0," * (2 * 1024 * 1024) + b"0]")).decode()
    assert len(bomb) < 16 * 1024
    with pytest.raises(EnvelopeError, match="inflates beyond"):
        decode(bomb, {ATTR_ENCODING: "gzip"})


def test_a_truncated_gzip_body_is_poison() -> None:
    packed = base64.b64decode(encode(_envelope(50), compress=True).body)
    truncated = base64.b64encode(packed[: len(packed) // 2]).decode()
    with pytest.raises(EnvelopeError, match="truncated"):
        decode(truncated, {ATTR_ENCODING: "gzip"})


def test_position_and_latest_event_time_travel_in_the_body() -> None:
    original = _envelope(position=Position("node-a-1f2e-g0", 41, "10"), max_event_us=17)
    encoded = encode(original, compress=True)
    decoded = decode(encoded.body, encoded.attributes)
    assert decoded.position == Position("node-a-1f2e-g0", 41, "10")
    assert decoded.max_event_us == 17
    unpositioned = decode(*_body_and_attrs(_envelope()))
    assert unpositioned.position is None and unpositioned.max_event_us is None


def _body_and_attrs(envelope: Envelope) -> tuple[str, dict[str, str]]:
    encoded = encode(envelope, compress=False)
    return encoded.body, encoded.attributes


def test_a_split_extends_the_part_path_of_each_piece() -> None:
    envelope = _envelope(count=200, position=Position("s", 3, "1"))
    parts = [
        decode(e.body, e.attributes)
        for e in encode_to_fit(envelope, max_bytes=4_000, compress=False)
    ]
    assert len(parts) > 2
    paths = [p.position.part for p in parts if p.position is not None]
    assert all(path.startswith("1") and len(path) > 1 for path in paths)
    assert sum(2.0 ** -(len(path) - 1) for path in paths) == 1.0  # they cover part "1"
    assert [r for p in parts for r in p.records] == envelope.records
    assert {(p.position.stream, p.position.seq) for p in parts if p.position} == {("s", 3)}


@pytest.mark.parametrize(
    ("position", "problem"),
    [
        ("seq-7", "'position' is str"),
        ({"stream": "", "seq": 0}, "position.stream"),
        ({"stream": "x" * 201, "seq": 0}, "position.stream"),
        ({"stream": "s", "seq": -1}, "position.seq"),
        ({"stream": "s", "seq": True}, "position.seq"),
        ({"stream": "s", "seq": 1, "part": "012"}, "position.part"),
        ({"stream": "s", "seq": 1, "part": "0" * 65}, "position.part"),
    ],
)
def test_a_bad_position_is_poison_with_a_precise_reason(position: Any, problem: str) -> None:
    data = _envelope().to_dict()
    data["position"] = position
    with pytest.raises(EnvelopeError, match=re.escape(problem)):
        decode(orjson.dumps(data).decode(), IDENTITY)


def test_a_bad_latest_event_time_is_poison() -> None:
    data = _envelope().to_dict()
    data["max_event_us"] = "soon"
    with pytest.raises(EnvelopeError, match="max_event_us"):
        decode(orjson.dumps(data).decode(), IDENTITY)
