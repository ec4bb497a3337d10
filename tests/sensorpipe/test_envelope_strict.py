"""The strict envelope header: every malformed field is poison with a specific reason,
attributes that repeat body fields must agree with the body, and nothing but an
Envelope or an EnvelopeError ever comes out of ``decode`` (hypothesis)."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorpipe.envelope import (
    ATTR_BATCH_ID,
    ATTR_CONFIG_VERSION,
    ATTR_ENCODING,
    ATTR_RECORD_COUNT,
    ATTR_SCENARIO,
    ATTR_VERSION,
    MAX_NESTING,
    AttributeMismatchError,
    Envelope,
    EnvelopeError,
    Position,
    decode,
    encode,
)

IDENTITY = {ATTR_ENCODING: "identity"}


def _header(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": 1,
        "batch_id": "edge-1-ab12cd34-g0-000000000001-000000000002",
        "scenario": "raw",
        "config_version": 3,
        "source": "edge-1",
        "created_at": "2026-01-01T00:00:00.000+00:00",
        "hops": [{"stage": "uploader", "at": "2026-01-01T00:00:00.000+00:00"}],
        "meta": {},
        "records": [{"sensor_data": {"id": 1}}],
    }
    data.update(changes)
    return data


def _nested(depth: int) -> str:
    """JSON text of ``depth`` nested objects (orjson cannot write the deep ones)."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def _body_with_meta(meta_json: str) -> str:
    head = orjson.dumps(_header(meta={})).decode()
    return head.replace('"meta":{}', f'"meta":{meta_json}')


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"hops": 7}, "'hops' is the number 7: input should be a valid list"),
        ({"hops": [{"stage": 1, "at": "x"}]}, "'hops[0].stage' is the number 1"),
        ({"hops": [{"stage": "u"}]}, "'hops[0].at' is missing"),
        ({"hops": ["uploader"]}, "'hops[0]' is a string of 8 character(s)"),
        ({"meta": [1, 2]}, "'meta' is an array of 2: input should be a valid object"),
        ({"source": 5}, "'source' is the number 5: input should be a valid string"),
        ({"created_at": None}, "'created_at' is null: input should be a valid string"),
        ({"created_at": 1700000000}, "'created_at' is the number 1700000000"),
        ({"records": {"a": 1}}, "'records' is an object: input should be a valid list"),
        ({"records": [{}, []]}, "'records[1]' is an array of 0, expected an object"),
        ({"batch_id": "edge-1/ü"}, "'batch_id' is a string of 8 character(s) ('edge-1/ü')"),
        ({"batch_id": "b" * 1100}, "'batch_id' is a string of 1100 character(s)"),
        ({"batch_id": ""}, "'batch_id' is a string of 0 character(s) (''), expected 1-512"),
        ({"scenario": ""}, "'scenario' is a string of 0 character(s)"),
        ({"config_version": True}, "'config_version' is true: input should be a valid integer"),
        ({"v": True}, "envelope version 'v' is true, expected 1"),
        ({"max_event_us": "soon"}, "'max_event_us' is a string of 4 character(s)"),
        ({"extra": 1}, "'extra' is not an envelope field"),
    ],
)
def test_a_malformed_header_field_is_poison_with_a_specific_reason(
    changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode(orjson.dumps(_header(**changes)).decode(), IDENTITY)
    assert reason in str(info.value)


def test_batch_ids_the_uploader_replay_and_splits_make_are_accepted() -> None:
    ids = [
        "edge-1-ab12cd34-g0-000000000001-000000000500",  # uploader
        "replay-0123456789abcdef",  # sensorpipe-replay archive
        "edge-1-ab12cd34-g0-000000000001-000000000500.1.0.s3",  # split, then sharded
        "edge-1:42.x~y_z",
        "b" * 512,
    ]
    for batch_id in ids:
        assert decode(orjson.dumps(_header(batch_id=batch_id)).decode(), IDENTITY).batch_id == (
            batch_id
        )


def test_a_body_nested_deeper_than_orjson_writes_is_poison() -> None:
    # The envelope is level 1: meta may nest MAX_NESTING - 1 levels, not one more.
    fits = decode(_body_with_meta(_nested(MAX_NESTING - 1)), IDENTITY)
    assert isinstance(fits.meta, dict)
    orjson.dumps(fits.to_dict())  # and it can be written again
    with pytest.raises(EnvelopeError, match=f"nests deeper than {MAX_NESTING} levels"):
        decode(_body_with_meta(_nested(MAX_NESTING)), IDENTITY)
    with pytest.raises(EnvelopeError, match="nests deeper"):
        decode(_body_with_meta(_nested(500)), IDENTITY)


def test_a_record_nested_500_deep_is_poison() -> None:
    head = orjson.dumps(_header(records=[])).decode()
    body = head.replace('"records":[]', f'"records":[{{"sensor_data":{_nested(500)}}}]')
    with pytest.raises(EnvelopeError, match="nests deeper"):
        decode(body, IDENTITY)


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({}, "attribute 'content-encoding' is missing; expected one of gzip, identity"),
        ({ATTR_ENCODING: "br"}, "unknown content-encoding 'br'; expected one of gzip, identity"),
        (
            {ATTR_ENCODING: "identity", ATTR_VERSION: "2"},
            "attribute 'envelope-version' is '2'; this reader knows only version 1",
        ),
    ],
)
def test_missing_or_unknown_encoding_and_version_attributes_are_poison(
    attributes: dict[str, str], reason: str
) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode(orjson.dumps(_header()).decode(), attributes)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("attribute", "stated", "body_value"),
    [
        (ATTR_SCENARIO, "raw", "notification"),
        (ATTR_BATCH_ID, "other-batch", "edge-1-b7"),
        (ATTR_CONFIG_VERSION, "9", "3"),
        (ATTR_RECORD_COUNT, "40", "2"),
    ],
)
def test_an_attribute_that_contradicts_the_body_is_poison_naming_both(
    attribute: str, stated: str, body_value: str
) -> None:
    envelope = Envelope(
        batch_id="edge-1-b7",
        scenario="notification",
        config_version=3,
        records=[{"sensor_data": {"id": 1}}, {"sensor_data": {"id": 2}}],
    )
    encoded = encode(envelope, compress=True)
    assert decode(encoded.body, encoded.attributes) == envelope
    lying = {**encoded.attributes, attribute: stated}
    with pytest.raises(AttributeMismatchError) as info:
        decode(encoded.body, lying)
    assert f"body says {attribute} {body_value!r}, attributes say {stated!r}" in str(info.value)


def test_attributes_that_are_absent_are_not_required_to_agree() -> None:
    body = orjson.dumps(_header()).decode()
    assert decode(body, IDENTITY).scenario == "raw"


# -- the property: an Envelope with the documented types, or EnvelopeError -------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | _JSON


_ENVELOPE_SHAPED = st.fixed_dictionaries(
    {
        "v": _maybe(st.just(1)),
        "batch_id": _maybe(st.from_regex(r"[A-Za-z0-9._:~-]{1,30}", fullmatch=True) | st.text()),
        "scenario": _maybe(st.sampled_from(["raw", "lineage", ""])),
        "config_version": _maybe(st.integers(-3, 10)),
        "records": _maybe(
            st.lists(_maybe(st.dictionaries(st.text(max_size=5), _JSON)), max_size=3)
        ),
    },
    optional={
        "source": _maybe(st.text(max_size=10)),
        "created_at": _maybe(st.text(max_size=10)),
        "hops": _maybe(
            st.lists(
                _maybe(
                    st.fixed_dictionaries({"stage": _maybe(st.text()), "at": _maybe(st.text())})
                ),
                max_size=3,
            )
        ),
        "meta": _JSON,
        "position": _maybe(
            st.fixed_dictionaries(
                {"stream": _maybe(st.text(max_size=5)), "seq": _maybe(st.integers(-1, 5))},
                optional={"part": _maybe(st.sampled_from(["", "0", "10", "2"]))},
            )
        ),
        "max_event_us": _JSON,
        "extra": _JSON,
    },
)

_ATTRIBUTES = st.fixed_dictionaries(
    {},
    optional={
        ATTR_ENCODING: st.sampled_from(["identity", "gzip", "br", ""]),
        ATTR_VERSION: st.sampled_from(["1", "2", ""]),
        ATTR_SCENARIO: st.sampled_from(["raw", "lineage"]),
        ATTR_RECORD_COUNT: st.sampled_from(["0", "1", "x"]),
    },
)


def _assert_documented_types(envelope: Envelope) -> None:
    assert isinstance(envelope.batch_id, str) and 1 <= len(envelope.batch_id) <= 512
    assert envelope.batch_id.isascii()
    assert isinstance(envelope.scenario, str) and envelope.scenario
    assert type(envelope.config_version) is int and envelope.config_version >= 0
    assert isinstance(envelope.source, str) and isinstance(envelope.created_at, str)
    assert isinstance(envelope.hops, list)
    assert all(
        isinstance(h, dict)
        and set(h) == {"stage", "at"}
        and all(isinstance(v, str) for v in h.values())
        for h in envelope.hops
    )
    assert isinstance(envelope.meta, dict)
    assert isinstance(envelope.records, list) and all(type(r) is dict for r in envelope.records)
    assert envelope.position is None or isinstance(envelope.position, Position)
    assert envelope.max_event_us is None or type(envelope.max_event_us) is int
    orjson.dumps(envelope.to_dict())  # whatever decodes can be sent on


def _decodes_or_envelope_error(body: str, attributes: dict[str, str]) -> None:
    try:
        envelope = decode(body, attributes)
    except EnvelopeError:
        return
    _assert_documented_types(envelope)


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=200), _ATTRIBUTES)
def test_arbitrary_bytes_decode_or_raise_envelope_error(
    raw: bytes, attributes: dict[str, str]
) -> None:
    _decodes_or_envelope_error(raw.decode("latin-1"), attributes)
    _decodes_or_envelope_error(base64.b64encode(zlib.compress(raw)).decode(), attributes)


@_FUZZ
@given(_JSON, _ATTRIBUTES)
def test_arbitrary_json_decodes_or_raises_envelope_error(
    value: Any, attributes: dict[str, str]
) -> None:
    _decodes_or_envelope_error(
        orjson.dumps(value).decode(), {**attributes, ATTR_ENCODING: "identity"}
    )


@_FUZZ
@given(_ENVELOPE_SHAPED, _ATTRIBUTES, st.booleans())
def test_envelope_shaped_dicts_decode_or_raise_envelope_error(
    data: dict[str, Any], attributes: dict[str, str], compress: bool
) -> None:
    raw = orjson.dumps(data)
    body = base64.b64encode(zlib.compress(raw)).decode() if compress else raw.decode()
    attributes = {**attributes, ATTR_ENCODING: "gzip" if compress else "identity"}
    _decodes_or_envelope_error(body, attributes)
