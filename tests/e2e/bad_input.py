"""The bad-input corpus of issue 11, as data: every case names its input, where that
input must end, and why.

Three families, each checked by ``tests/e2e/test_bad_input.py`` against one running
pipeline (scenario ``notification``, one aggregator and one notifier shard):

- **messages** (:class:`Dead`): a bad SQS message sent straight to ``[ingest]``. It must
  be moved at once by the consumer's ``Reject`` to the DLQ of the first stage that can
  tell it is bad, with a ``failure-reason`` naming the problem (one of the case's
  keywords), and it must not hold back the good envelope sent with it in the same call;
- **records** (:class:`Rejected`, :class:`Kept` and the special ends): bad records
  inside a good envelope. Each goes to the error bucket's ``rejected/`` with its field
  and rule; the rest of the batch is archived; every record ends in exactly one place;
- **rows** (:class:`RowCase`): bad rows in an edge database, sent by the real uploader.
  The upload goes on (rows before and after arrive) and the row ends in ``rejected/``
  with a rule or in the uploader's quarantine (a JSON Lines file beside its checkpoint,
  one object per row with the row's ``id`` (or ``row_id``, or ``row.id``) and a
  ``reason``).

Every record carries a tag in ``serial_number`` (an optional free-text field of the
spec), or beside ``sensor_data`` when ``sensor_data`` is not an object, so the test can
find it wherever it lands. Valid readings of the message phase lie within seconds of
:data:`T0`; edge rows lie after :data:`T1`, so the edge streams' progress closes every
window and decides every burst of the message phase.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import random
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from sensorpipe.envelope import (
    ATTR_BATCH_ID,
    ATTR_CONFIG_VERSION,
    ATTR_ENCODING,
    ATTR_RECORD_COUNT,
    ATTR_SCENARIO,
    ATTR_VERSION,
    Envelope,
    decode,
    encode,
)

SCENARIO = "notification"
CASE_ATTRIBUTE = "corpus-case"  # travels with a bad message into its DLQ copy
T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 30, 10, 20, 0, tzinfo=UTC)
HALL = "corpus-hall"
BATCH_KW = ("batch_id", "batch id")  # either spelling names the field
MAX_BODY_BYTES = 256 * 1024  # queues.max_body_bytes (the packaged default)

Row = dict[str, Any]
Pair = tuple[str, str]  # (field, rule) of the validator's error report

_ids = itertools.count(1)
_instants = itertools.count(1)


# -- expected ends -----------------------------------------------------------------


@dataclass(frozen=True)
class Dead:
    """A poison message: in the DLQ of one of ``queues`` (roles: ingest, enriched,
    validated) with a failure-reason holding one of ``keywords``. ``undelivered`` tags
    must reach no archive, raw object, window or notification."""

    keywords: tuple[str, ...]
    queues: tuple[str, ...] = ("ingest",)
    undelivered: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    """Bad records of a good envelope: each tag in ``rejected/`` with one of its pairs."""

    rules: dict[str, tuple[Pair, ...]]


@dataclass(frozen=True)
class Kept:
    """Odd but legal records: archived with ``sensor_data`` intact, or rejected with
    one of ``rules`` (the spec may choose either; losing or altering them is wrong)."""

    records: dict[str, dict[str, Any]]
    rules: tuple[Pair, ...] = ()


@dataclass(frozen=True)
class OneReading:
    """One instant spelt several ways: one reading in the sensor's window."""

    sensor_id: str


@dataclass(frozen=True)
class Bursts:
    """Two bursts in one envelope: ``normal`` notified; ``odd`` notified or set aside
    (``unusable-anomalies/`` with a reason), never silently dropped."""

    normal: tuple[str, str]  # (location, sensor id)
    odd: tuple[str, str]
    odd_tags: tuple[str, ...]


@dataclass(frozen=True)
class SurvivingRejects:
    """Batches whose ids share one safe key: every batch's rejected record survives."""

    rules: dict[str, tuple[Pair, ...]]


End = Dead | Rejected | Kept | OneReading | Bursts | SurvivingRejects


@dataclass(frozen=True)
class Sent:
    """One SQS message as it is sent to ``[ingest]``."""

    body: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class Case:
    name: str
    why: str
    family: str  # "message" or "record"
    messages: tuple[Sent, ...]
    end: End
    good: tuple[str, ...]  # tags that must reach the archive
    batch_ids: tuple[str, ...] = ()  # batch ids of this case (to find re-encoded copies)


class BadText(bytes):
    """Bytes stored in a TEXT column as they are (invalid UTF-8 when they are not)."""


@dataclass(frozen=True)
class RowCase:
    """An edge database: ``rows`` uploaded first, then ``later`` rows inserted and a
    second upload. ``bad`` ids must end in ``rejected/`` with one of ``rules`` or in
    the quarantine; every other row id must be archived."""

    name: str
    why: str
    rows: tuple[Row, ...]
    bad: tuple[int, ...]
    rules: tuple[Pair, ...]
    later: tuple[Row, ...] = ()

    @property
    def good(self) -> set[int]:
        return {int(r["id"]) for r in (*self.rows, *self.later)} - set(self.bad)


# -- building blocks ---------------------------------------------------------------


def at(offset_s: float, base: datetime = T0) -> str:
    return (base + timedelta(seconds=offset_s)).isoformat()


def reading(tag: str, sensor: str = "corpus-s1", **fields: Any) -> dict[str, Any]:
    """A valid, non-anomalous reading tagged ``tag``: ``fields`` override or add (a
    ``None`` value is kept as null), ``drop`` names fields to remove."""
    drop = fields.pop("drop", ())
    data: dict[str, Any] = {
        "id": next(_ids),
        "timestamp": at(next(_instants) * 0.001),
        "sensor_id": sensor,
        "temperature": 21.5,
        "humidity": 45.0,
        "status_code": 0,
        "anomaly_flag": 0,
        "location": HALL,
        "serial_number": tag,
        **fields,
    }
    for name in drop:
        data.pop(name)
    return data


def anomalous(tag: str, sensor: str, location: str, offset_s: float) -> dict[str, Any]:
    """Valid, and anomalous by the temperature threshold (high: 40)."""
    return reading(tag, sensor, location=location, temperature=45.0, timestamp=at(offset_s))


def envelope(batch: str, records: list[dict[str, Any]]) -> Envelope:
    return Envelope(
        batch_id=batch,
        scenario=SCENARIO,
        config_version=1,
        records=records,
        source="corpus",
        hops=[{"stage": "uploader", "at": at(0)}],
        meta={"table": "sensor_readings"},
    )


def good_message(case: str, compress: bool = True) -> tuple[Sent, tuple[str, ...]]:
    """The good companion of a bad message: two valid readings."""
    tags = (f"{case}/good#0", f"{case}/good#1")
    env = envelope(f"corpus-{case}-good", [{"sensor_data": reading(t)} for t in tags])
    encoded = encode(env, compress=compress)
    return Sent(encoded.body, {**encoded.attributes, CASE_ATTRIBUTE: f"{case}/good"}), tags


def attributes(case: str, batch: str, records: int = 1, **over: str | None) -> dict[str, str]:
    """The attributes the uploader would put on a body (``None`` removes one)."""
    base: dict[str, str | None] = {
        ATTR_BATCH_ID: batch,
        ATTR_SCENARIO: SCENARIO,
        ATTR_CONFIG_VERSION: "1",
        ATTR_RECORD_COUNT: str(records),
        ATTR_ENCODING: "identity",
        ATTR_VERSION: "1",
        CASE_ATTRIBUTE: case,
    }
    base.update({k.replace("_", "-"): v for k, v in over.items()})
    return {k: v for k, v in base.items() if v is not None}


def body_dict(case: str, **over: Any) -> dict[str, Any]:
    """A valid envelope body (one valid reading): ``over`` replaces keys, ``drop``
    names keys to remove."""
    drop = over.pop("drop", ())
    data = envelope(f"corpus-{case}", [{"sensor_data": reading(f"{case}/bad#0")}]).to_dict()
    data.update(over)
    for name in drop:
        data.pop(name)
    return data


def gzip_b64(raw: bytes) -> str:
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


# -- the message family ------------------------------------------------------------


def _message(
    name: str, why: str, body: str, end: Dead, attrs: dict[str, str] | None = None
) -> Case:
    good, tags = good_message(name)
    bad = Sent(body, attrs if attrs is not None else attributes(name, f"corpus-{name}"))
    return Case(name, why, "message", (bad, good), end, tags, (f"corpus-{name}",))


def _without_version_attribute() -> Case:
    """The attributes are copies, checked when present; the body's ``v`` is the truth:
    a body of version 1 without the ``envelope-version`` attribute is processed."""
    name = "attr-version-missing"
    good, tags = good_message(name)
    body = orjson.dumps(body_dict(name)).decode()
    bad = Sent(body, attributes(name, f"corpus-{name}", envelope_version=None))
    return Case(
        name,
        "no envelope-version attribute, body version 1",
        "record",
        (bad, good),
        Kept({}),
        (*tags, f"{name}/bad#0"),
        (f"corpus-{name}",),
    )


def _json(name: str, why: str, keywords: tuple[str, ...], **over: Any) -> Case:
    # The standard library writes what orjson refuses to (nesting beyond 254 levels).
    body = json.dumps(body_dict(name, **over), ensure_ascii=False, separators=(",", ":"))
    case = _message(name, why, body, Dead(keywords))
    named = over.get("batch_id")  # a stage that re-encodes the body stamps this id
    return replace(case, batch_ids=(*case.batch_ids, named)) if isinstance(named, str) else case


def _bomb() -> str:
    """A gzip body of ~100 KB that inflates to 65 MiB of zeros."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    parts = [packer.compress(chunk) for _ in range(65)]
    return base64.b64encode(b"".join(parts) + packer.flush()).decode("ascii")


def _oversized(name: str, limit: int) -> tuple[str, str]:
    """One record of word salad in a columnar body (the stages' own codec) just under
    the limit: it fits SQS as sent, but once the enricher adds its lineage column no
    stage can forward it again; the body and its size."""
    rng = random.Random(1)
    words = [
        "".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 9)))
        for _ in range(3000)
    ]
    text = " ".join(rng.choice(words) for _ in range(400_000))

    def body(length: int) -> str:
        data = body_dict(name)
        data["records"][0]["sensor_data"]["model"] = text[:length]
        envelope = decode(orjson.dumps(data).decode(), {"content-encoding": "identity"})
        return encode(envelope, compress=True, columnar=True).body

    low, high = 1000, len(text)
    while high - low > 200:  # the longest text whose columnar body fits with 300 to spare
        mid = (low + high) // 2
        if len(body(mid)) > limit - 300:
            high = mid
        else:
            low = mid
    found = body(low)
    assert len(found) <= limit - 300, "the word salad is too short for the limit"
    return found, str(len(found))


def _deflate(raw: bytes, level: int) -> bytes:
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    return packer.compress(raw) + packer.flush()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"n": value}
    return value


def message_cases() -> list[Case]:
    json_kw = ("not valid JSON",)
    env_kw = ("envelope",)
    version_kw = ("envelope version", "envelope-version")
    records_kw = ("records",)
    cases = [
        _message("not-json-text", "plain text", "hello, not json", Dead(json_kw)),
        _message("not-json-truncated", "cut mid-object", '{"v": 1, "batch_id": "x', Dead(json_kw)),
        _message(
            "not-json-bom",
            "a UTF-8 BOM before the object",
            "\ufeff" + orjson.dumps(body_dict("not-json-bom")).decode(),
            Dead(json_kw),
        ),
        _message("json-array", "JSON, not an object", '["json-array", 1]', Dead(env_kw)),
        _message("json-number", "JSON, not an object", "4242", Dead(env_kw)),
        _message("json-string", "JSON, not an object", '"json-string"', Dead(env_kw)),
        _message("json-null", "JSON, not an object", "null", Dead(env_kw)),
        _message(
            "object-not-envelope",
            "an object without envelope keys",
            '{"hello": "object-not-envelope"}',
            Dead(env_kw),
        ),
        _json("body-version-2", "a future envelope version", version_kw, v=2),
        _json("body-version-missing", "no 'v' in the body", version_kw, drop=("v",)),
        _json("body-version-string", "'v' is the string '1'", version_kw, v="1"),
        _json("records-null", "'records' is null", records_kw, records=None),
        _json("records-missing", "no 'records'", records_kw, drop=("records",)),
        _json("records-object", "'records' is an object", records_kw, records={"a": 1}),
        _json("records-string", "'records' is a string", records_kw, records="rows"),
        _json("records-numbers", "'records' holds numbers", records_kw, records=[1, 2]),
        _json("records-null-entry", "'records' holds null", records_kw, records=[None]),
        _json("records-list-entry", "'records' holds a list", records_kw, records=[[1]]),
        _json("hops-integer", "'hops' is an integer", ("hops",), hops=5),
        _json("hops-string", "'hops' is a string", ("hops",), hops="uploader"),
        _json("hops-numbers", "'hops' holds numbers", ("hops",), hops=[1, 2]),
        _json("meta-list", "'meta' is a list", ("meta",), meta=["table"]),
        _json("meta-string", "'meta' is a string", ("meta",), meta="table"),
        _json("batch-id-number", "'batch_id' is a number", BATCH_KW, batch_id=12345),
        _json("batch-id-null", "'batch_id' is null", BATCH_KW, batch_id=None),
        _json("batch-id-empty", "'batch_id' is empty", BATCH_KW, batch_id=""),
        _json(
            "batch-id-non-ascii",
            "a non-ASCII batch id (S3 metadata is ASCII)",
            BATCH_KW,
            batch_id="corpus-bätch-ü-\u65e5",
        ),
        _json(
            "batch-id-1100-chars",
            "a batch id longer than an S3 key",
            BATCH_KW,
            batch_id="corpus-" + "x" * 1093,
        ),
        _json(
            "batch-id-path",
            "a batch id that walks out of its key",
            BATCH_KW,
            batch_id="../../corpus/batch",
        ),
        _json(
            "batch-id-newline",
            "a batch id ending in a newline",
            BATCH_KW,
            batch_id="corpus-batch-id-newline\n",
        ),
        _json(
            "config-version-string",
            "'config_version' is a string",
            ("config_version",),
            config_version="1",
        ),
        _json(
            "config-version-bool",
            "'config_version' is a boolean",
            ("config_version",),
            config_version=True,
        ),
        _json("position-string", "'position' is a string", ("position",), position="p"),
        _json(
            "position-negative",
            "'position.seq' is negative",
            ("position",),
            position={"stream": "corpus", "seq": -1, "part": ""},
        ),
        _json(
            "max-event-us-string",
            "'max_event_us' is a string",
            ("max_event_us",),
            max_event_us="1700000000000000",
        ),
        _json("source-list", "'source' is a list", ("source",), source=["edge"]),
        _json("created-at-number", "'created_at' is a number", ("created_at",), created_at=17),
        _json(
            "nested-500-deep",
            "a record field nested 500 levels deep",
            ("nest", "deep", "depth"),
            records=[{"sensor_data": reading("nested-500-deep/bad#0", model=_nested(500))}],
        ),
        _message(
            "nan-token",
            "NaN as a JSON token (orjson refuses it)",
            orjson.dumps(body_dict("nan-token"))
            .decode()
            .replace('"humidity":45.0', '"humidity":NaN'),
            Dead(json_kw),
        ),
        _message(
            "infinity-token",
            "Infinity as a JSON token",
            orjson.dumps(body_dict("infinity-token"))
            .decode()
            .replace('"humidity":45.0', '"humidity":-Infinity'),
            Dead(json_kw),
        ),
        _message(
            "huge-exponent",
            "1e400: infinite as a double",
            orjson.dumps(body_dict("huge-exponent"))
            .decode()
            .replace('"humidity":45.0', '"humidity":1e400'),
            Dead(json_kw),
        ),
        _message(
            "lone-surrogate",
            "a lone UTF-16 surrogate escape in a string",
            orjson.dumps(body_dict("lone-surrogate"))
            .decode()
            .replace('"location":"corpus-hall"', '"location":"hall\\ud800"'),
            Dead(("surrogate", *json_kw)),
        ),
        _message(
            "gzip-garbage",
            "gzip claimed, valid base64 of random bytes",
            base64.b64encode(random.Random(3).randbytes(600)).decode(),
            Dead(("gzip",)),
            attributes("gzip-garbage", "corpus-gzip-garbage", content_encoding="gzip"),
        ),
        _message(
            "gzip-truncated",
            "a gzip stream cut in half",
            base64.b64encode(
                base64.b64decode(gzip_b64(orjson.dumps(body_dict("gzip-truncated"))))[:40]
            ).decode(),
            Dead(("truncated", "gzip")),
            attributes("gzip-truncated", "corpus-gzip-truncated", content_encoding="gzip"),
        ),
        _message(
            "base64-garbage",
            "gzip claimed, not base64 at all",
            "!!! not base64 ***",
            Dead(("base64",)),
            attributes("base64-garbage", "corpus-base64-garbage", content_encoding="gzip"),
        ),
        _message(
            "gzip-json-text",
            "gzip claimed, the body is plain JSON",
            orjson.dumps(body_dict("gzip-json-text")).decode(),
            Dead(("base64",)),
            attributes("gzip-json-text", "corpus-gzip-json-text", content_encoding="gzip"),
        ),
        _message(
            "gzip-bomb",
            "100 KB of gzip inflating to 65 MiB",
            _bomb(),
            Dead(("inflate",)),
            attributes("gzip-bomb", "corpus-gzip-bomb", content_encoding="gzip"),
        ),
        _message(
            "unknown-encoding",
            "content-encoding br",
            orjson.dumps(body_dict("unknown-encoding")).decode(),
            Dead(("content-encoding",)),
            attributes("unknown-encoding", "corpus-unknown-encoding", content_encoding="br"),
        ),
        _message(
            "deflate-encoding",
            "content-encoding deflate (SQS refuses an empty attribute value)",
            orjson.dumps(body_dict("deflate-encoding")).decode(),
            Dead(("content-encoding",)),
            attributes("deflate-encoding", "corpus-deflate-encoding", content_encoding="deflate"),
        ),
        _message(
            "attr-version-2",
            "envelope-version attribute 2, body v 1",
            orjson.dumps(body_dict("attr-version-2")).decode(),
            Dead(version_kw),
            attributes("attr-version-2", "corpus-attr-version-2", envelope_version="2"),
        ),
        _without_version_attribute(),
        _message(
            "unknown-scenario",
            "a scenario the routing table lacks",
            orjson.dumps(body_dict("unknown-scenario", scenario="nonesuch")).decode(),
            Dead(("scenario",)),
            attributes("unknown-scenario", "corpus-unknown-scenario", scenario="nonesuch"),
        ),
        _message(
            "unknown-scenario-attr",
            "attribute names an unknown scenario, body a known",
            orjson.dumps(body_dict("unknown-scenario-attr")).decode(),
            Dead(("scenario",)),
            attributes(
                "unknown-scenario-attr", "corpus-unknown-scenario-attr", scenario="nonesuch"
            ),
        ),
        _message(
            "scenario-body-raw",
            "attribute notification, body raw",
            orjson.dumps(body_dict("scenario-body-raw", scenario="raw")).decode(),
            Dead(("scenario",)),
        ),
        _message(
            "oversized-record",
            "one record that fits SQS but not once re-encoded",
            _oversized("oversized-record", MAX_BODY_BYTES)[0],
            Dead(("limit",)),
            attributes("oversized-record", "corpus-oversized-record", content_encoding="arrow"),
        ),
    ]
    cases.append(_scenario_mismatch())
    return cases


def _scenario_mismatch() -> Case:
    """Attribute raw, body notification, invalid records: the stages that skip a raw
    batch must not let its body take it to the archive or the windows."""
    name = "scenario-mismatch-raw"
    tags = tuple(f"{name}/bad#{i}" for i in range(3))
    records = [
        {"sensor_data": reading(tags[0], "corpus-mismatch", temperature=999.0)},
        {"sensor_data": reading(tags[1], "corpus-mismatch", humidity=-4.0)},
        {"sensor_data": anomalous(tags[2], "corpus-mismatch", "corpus-mismatch-loc", 0.5)},
    ]
    body = orjson.dumps(envelope(f"corpus-{name}", records).to_dict()).decode()
    attrs = attributes(name, f"corpus-{name}", 3, scenario="raw")
    good, good_tags = good_message(name)
    end = Dead(("scenario",), ("ingest", "enriched", "validated"), undelivered=tags)
    return Case(
        name,
        "attribute raw, body notification",
        "message",
        (Sent(body, attrs), good),
        end,
        good_tags,
        (f"corpus-{name}",),
    )


# -- the record family -------------------------------------------------------------


def _records(name: str, why: str, bad: list[dict[str, Any]], rules: tuple[Pair, ...]) -> Case:
    """``bad`` records (sensor_data, or whole records when they hold a 'sensor_data'
    key) beside two good ones in one envelope."""
    good_tags = (f"{name}/good#0", f"{name}/good#1")
    records: list[dict[str, Any]] = [{"sensor_data": reading(good_tags[0])}]
    tags: dict[str, tuple[Pair, ...]] = {}
    for i, data in enumerate(bad):
        tag = f"{name}/bad#{i}"
        if "sensor_data" in data or not data:
            records.append({**data, "serial_number": tag})
        else:
            records.append({"sensor_data": {**data, "serial_number": tag}})
        tags[tag] = rules
    records.append({"sensor_data": reading(good_tags[1])})
    return _enveloped(name, why, records, Rejected(tags), good_tags)


def _enveloped(
    name: str, why: str, records: list[dict[str, Any]], end: End, good: tuple[str, ...]
) -> Case:
    batch = f"corpus-{name}"
    encoded = encode(envelope(batch, records), compress=True)
    sent = Sent(encoded.body, {**encoded.attributes, CASE_ATTRIBUTE: name})
    return Case(name, why, "record", (sent,), end, good, (batch,))


def _field(name: str, why: str, rules: tuple[Pair, ...], **fields: Any) -> Case:
    return _records(name, why, [reading("", **fields)], rules)


def _kept(name: str, why: str, rules: tuple[Pair, ...], **fields: Any) -> Case:
    tag = f"{name}/odd#0"
    data = reading(tag, **fields)
    good_tags = (f"{name}/good#0",)
    records = [{"sensor_data": reading(good_tags[0])}, {"sensor_data": data}]
    return _enveloped(name, why, records, Kept({tag: data}, rules), good_tags)


def record_cases() -> list[Case]:
    shape = (("sensor_data", "record_shape"),)
    ts_format = (("timestamp", "timestamp_format"),)
    ts_future = (("timestamp", "timestamp_future"),)
    ts_range = (("timestamp", "timestamp_range"),)
    # spec 2.1.0: no C0 control character in any text field (a NUL or newline breaks
    # logs, CSV and FIFO group ids); either rule names the problem
    control = "control_character"
    sensor_pattern = (("sensor_id", "pattern"),)
    location_rule = (("location", "pattern"),)
    sensor_control = (("sensor_id", "pattern"), ("sensor_id", control))
    location_control = (("location", "pattern"), ("location", control))

    def t(field_name: str, rule: str) -> tuple[Pair, ...]:
        return ((field_name, rule),)

    return [
        _records("empty-record", "a record that is {}", [{}], shape),
        _records("sensor-data-null", "sensor_data null", [{"sensor_data": None}], shape),
        _records("sensor-data-list", "sensor_data a list", [{"sensor_data": [1, 2]}], shape),
        _records("sensor-data-string", "sensor_data a string", [{"sensor_data": "21.5"}], shape),
        _records("sensor-data-number", "sensor_data a number", [{"sensor_data": 7}], shape),
        _records(
            "data-elsewhere",
            "the reading under another key",
            [{"sensor_data": None, "data": reading("x")}],
            shape,
        ),
        _field(
            "missing-temperature",
            "a required field absent",
            t("temperature", "required"),
            drop=("temperature",),
        ),
        _field(
            "null-temperature",
            "a required field null",
            t("temperature", "required"),
            temperature=None,
        ),
        _field("null-timestamp", "the event time null", t("timestamp", "required"), timestamp=None),
        _field(
            "missing-sensor-id", "no sensor id", t("sensor_id", "required"), drop=("sensor_id",)
        ),
        _field(
            "temperature-string",
            "a number as a string",
            t("temperature", "type"),
            temperature="21.5",
        ),
        _field("humidity-string", "a number as a string", t("humidity", "type"), humidity="45"),
        _field("id-string", "the row id as a string", t("id", "type"), id="7"),
        _field("id-float", "the row id as a fraction", t("id", "type"), id=7.5),
        _field(
            "status-code-string", "an enum as a string", t("status_code", "type"), status_code="0"
        ),
        _field(
            "anomaly-flag-string", "a flag as a string", t("anomaly_flag", "type"), anomaly_flag="1"
        ),
        _field(
            "temperature-bool", "a boolean for a number", t("temperature", "type"), temperature=True
        ),
        _field(
            "temperature-object",
            "an object for a number",
            t("temperature", "type"),
            temperature={"c": 21.5},
        ),
        _field(
            "temperature-list", "a list for a number", t("temperature", "type"), temperature=[21.5]
        ),
        _field(
            "nan-string-optional",
            "'NaN' in an optional number",
            t("pressure", "type"),
            pressure="NaN",
        ),
        _field(
            "infinity-string-optional",
            "'Infinity' in an optional number",
            t("voltage", "type"),
            voltage="Infinity",
        ),
        _field("temperature-absurd", "1e300 degrees", t("temperature", "range"), temperature=1e300),
        _field("temperature-huge", "99999 degrees", t("temperature", "range"), temperature=99999),
        _field("humidity-negative", "negative humidity", t("humidity", "range"), humidity=-5.0),
        _field("latitude-absurd", "latitude 1000", t("latitude", "range"), latitude=1000.0),
        _field("id-zero", "row id 0", t("id", "range"), id=0),
        _field("id-negative", "row id -1", t("id", "range"), id=-1),
        _field("status-code-enum", "status code 5", t("status_code", "enum"), status_code=5),
        _field(
            "anomaly-type-enum",
            "an unknown anomaly type",
            t("anomaly_type", "enum"),
            anomaly_type="meteor",
            anomaly_flag=1,
            status_code=1,
        ),
        _field(
            "anomaly-type-without-flag",
            "anomaly type set, flag 0",
            t("anomaly_type", "anomaly_type_requires_flag"),
            anomaly_type="spike",
        ),
        _field(
            "firmware-pattern",
            "firmware 'v1'",
            t("firmware_version", "pattern"),
            firmware_version="v1",
        ),
        _field(
            "timezone-pattern",
            "original timezone 'UTC'",
            t("original_timezone", "pattern"),
            original_timezone="UTC",
        ),
        _field(
            "ts-no-timezone",
            "a naive timestamp",
            t("timestamp", "timestamp_timezone"),
            timestamp="2026-11-30T10:00:01",
        ),
        _field("ts-year-0", "year 0", ts_range, timestamp="0000-01-01T00:00:00+00:00"),
        _field("ts-year-9999", "year 9999", ts_future, timestamp="9999-12-31T23:59:59+00:00"),
        _field("ts-far-future", "the year 2200", ts_future, timestamp="2200-01-01T00:00:00Z"),
        _field("ts-unparseable", "words for a time", ts_format, timestamp="yesterday at noon!"),
        _field("ts-month-13", "month 13", ts_format, timestamp="2026-13-01T00:00:00+00:00"),
        _field("ts-date-only", "a date without a time", ts_format, timestamp="2026-11-30"),
        _field(
            "ts-empty", "an empty timestamp", (*ts_format, ("timestamp", "required")), timestamp=""
        ),
        _field(
            "ts-epoch-number",
            "epoch seconds for a timestamp",
            t("timestamp", "type"),
            timestamp=1_780_000_000,
        ),
        _field("sensor-nul", "NUL in a sensor id", sensor_pattern, sensor_id="corpus\0s"),
        _field(
            "sensor-rtl",
            "an RTL override in a sensor id",
            sensor_pattern,
            sensor_id="corpus\u202es",
        ),
        _field(
            "sensor-very-long",
            "a 10,000-character sensor id",
            sensor_pattern,
            sensor_id="s" * 10_000,
        ),
        _field("sensor-slash", "'/' in a sensor id", sensor_pattern, sensor_id="corpus/s"),
        _field("sensor-equals", "'=' in a sensor id", sensor_pattern, sensor_id="corpus=s"),
        _field(
            "sensor-dotdot-path", "'../' in a sensor id", sensor_pattern, sensor_id="corpus/../s"
        ),
        _field(
            "sensor-inner-newline",
            "a newline inside a sensor id",
            sensor_pattern,
            sensor_id="corpus\ns",
        ),
        _field(
            "sensor-trailing-newline",
            "a sensor id ending in a newline",
            sensor_control,
            sensor_id="corpus-nl\n",
        ),
        _field(
            "location-inner-newline",
            "a newline inside a location",
            location_rule,
            location="hall\nb",
        ),
        _field(
            "location-trailing-newline",
            "a location ending in a newline",
            location_control,
            location="corpus-hall-nl\n",
        ),
        _field("location-placeholder", "location 'unknown'", location_rule, location="unknown"),
        _kept(
            "sensor-dotdot",
            "'..' inside a legal sensor id",
            sensor_pattern,
            sensor_id="corpus..dots",
        ),
        _kept(
            "location-dotdot-slash",
            "'../' in a location",
            location_rule,
            location="../../corpus/etc",
        ),
        _kept(
            "location-equals", "'=' and '/' in a location", location_rule, location="zone=1/corpus"
        ),
        _kept("location-nul", "NUL in a location", location_control, location="corpus\0hall"),
        _kept(
            "location-rtl", "an RTL mark in a location", location_rule, location="corpus\u200fhall"
        ),
        _kept(
            "id-huge",
            "row id 2**64 - 1",
            (("id", "range"), ("id", "type")),
            id=18_446_744_073_709_551_615,
        ),
        _kept(
            "long-optional-string",
            "100,000 characters in a free-text field",
            (),
            model="m" * 100_000,
        ),
        _kept(
            "unicode-optional-string",
            "NUL, RTL marks and emoji in a free-text field",
            (("manufacturer", control),),
            manufacturer="a\0b\u202ec\u200f\U0001f600d",
        ),
        _near_limit(),
        _spellings(),
        _bursts(),
        *_colliding_batch_ids(),
        _reused_batch_id(),
    ]


def _near_limit() -> Case:
    """An identity body just under 256 KiB: every record arrives (split downstream)."""
    name = "near-size-limit"
    noise = random.Random(5)
    records: list[dict[str, Any]] = []
    tags: list[str] = []
    size = 0
    while size < 245_000:
        tag = f"{name}/good#{len(tags)}"
        model = base64.b64encode(noise.randbytes(1500)).decode()
        records.append({"sensor_data": reading(tag, model=model)})
        tags.append(tag)
        size += len(model) + 300
    encoded = encode(envelope(f"corpus-{name}", records), compress=False)
    sent = Sent(encoded.body, {**encoded.attributes, CASE_ATTRIBUTE: name})
    end = Rejected({})
    return Case(
        name,
        "a body near the size limit",
        "message",
        (sent,),
        end,
        tuple(tags),
        (f"corpus-{name}",),
    )


def _spellings() -> Case:
    name = "one-instant-three-spellings"
    sensor = "corpus-spelt"
    tags = tuple(f"{name}/good#{i}" for i in range(3))
    spellings = ("2026-11-30T10:00:30+00:00", "2026-11-30T10:00:30Z", "2026-11-30 10:00:30+00:00")
    records = [
        {"sensor_data": reading(tag, sensor, timestamp=ts)}
        for tag, ts in zip(tags, spellings, strict=True)
    ]
    return _enveloped(name, "+00:00, Z and a space", records, OneReading(sensor), tags)


def _bursts() -> Case:
    name = "nul-location-burst"
    normal = ("corpus-plant-normal", "corpus-burst-normal")
    odd = ("corpus-plant\0nul", "corpus-burst-nul")
    records: list[dict[str, Any]] = []
    odd_tags: list[str] = []
    for i in range(3):
        records.append({"sensor_data": anomalous(f"{name}/n#{i}", normal[1], normal[0], 1 + i)})
        odd_tags.append(f"{name}/o#{i}")
        records.append({"sensor_data": anomalous(odd_tags[-1], odd[1], odd[0], 1.5 + i)})
    end = Bursts(normal, odd, tuple(odd_tags))
    return _enveloped(name, "a NUL location's burst beside a normal one", records, end, ())


def _colliding_batch_ids() -> list[Case]:
    """``coll:1`` and ``coll_1`` (both legal batch ids) shared the validator's old safe
    key ``coll_1``: every character outside ``[A-Za-z0-9-_.=]`` became ``_``. (``#`` is
    not a legal batch id at all: it is refused at decode, see the message cases.)"""
    out = []
    for batch in ("corpus-coll:1", "corpus-coll_1"):
        name = f"batch-id-{batch.removeprefix('corpus-')}"
        good, bad = f"{name}/good#0", f"{name}/bad#0"
        records = [
            {"sensor_data": reading(good)},
            {"sensor_data": reading(bad, temperature=500.0, timestamp=at(2))},
        ]
        encoded = encode(envelope(batch, records), compress=True)
        sent = Sent(encoded.body, {**encoded.attributes, CASE_ATTRIBUTE: name})
        end = SurvivingRejects({bad: (("temperature", "range"),)})
        out.append(
            Case(name, "two batch ids, one safe key", "record", (sent,), end, (good,), (batch,))
        )
    return out


def _reused_batch_id() -> Case:
    """Two different envelopes under one batch id: both archived."""
    name = "batch-id-reused"
    batch = f"corpus-{name}"
    tags = tuple(f"{name}/good#{i}" for i in range(4))
    sent = []
    for half in (tags[:2], tags[2:]):
        encoded = encode(
            envelope(batch, [{"sensor_data": reading(t)} for t in half]), compress=True
        )
        sent.append(Sent(encoded.body, {**encoded.attributes, CASE_ATTRIBUTE: name}))
    return Case(
        name, "one batch id, two envelopes", "record", tuple(sent), Rejected({}), tags, (batch,)
    )


# -- the row family ----------------------------------------------------------------


def edge_row(row_id: int, minute: int, second: float, **columns: Any) -> Row:
    """A valid edge row after :data:`T1` (``columns`` override)."""
    return {
        "id": row_id,
        "timestamp": at(minute * 60 + second, T1),
        "sensor_id": f"corpus-edge-{minute}",
        "temperature": 20.0,
        "humidity": 40.0,
        "status_code": 0,
        "anomaly_flag": 0,
        "location": "corpus-edge",
        "serial_number": f"edge-{minute}-{row_id}",
        **columns,
    }


def _row_case(
    name: str, why: str, minute: int, bad: Row | list[Row], rules: tuple[Pair, ...]
) -> RowCase:
    """Rows 1-2 good, the bad row(s), then 4-5 good (batches of two rows)."""
    bad_rows = bad if isinstance(bad, list) else [bad]
    rows = [
        edge_row(1, minute, 1),
        edge_row(2, minute, 2),
        *bad_rows,
        edge_row(4, minute, 4),
        edge_row(5, minute, 5),
    ]
    bad_ids = tuple(int(r["id"]) for r in bad_rows)
    return RowCase(name, why, tuple(rows), bad_ids, rules)


def row_cases() -> list[RowCase]:
    big = base64.b64encode(random.Random(7).randbytes(310_000)).decode()[:413_000]

    def bad(minute: int, **columns: Any) -> Row:
        return edge_row(3, minute, 3, **columns)

    return [
        _row_case(
            "row-invalid-utf8-text",
            "invalid UTF-8 in a text column",
            0,
            bad(0, model=BadText(b"corpus\xff\xfe model")),
            (("model", "type"),),
        ),
        _row_case(
            "row-invalid-utf8-sensor",
            "invalid UTF-8 in the sensor id",
            1,
            bad(1, sensor_id=BadText(b"corpus-\xc3\x28")),
            (("sensor_id", "pattern"),),
        ),
        _row_case("row-413kb", "a 413 KB row", 2, bad(2, model=big), ()),
        _row_case("row-id-zero", "a row with id 0", 3, edge_row(0, 3, 3), (("id", "range"),)),
        _row_case("row-id-negative", "a row with id -1", 4, edge_row(-1, 4, 3), (("id", "range"),)),
        _row_case(
            "row-null-timestamp",
            "NULL in the timestamp",
            5,
            bad(5, timestamp=None),
            (("timestamp", "required"),),
        ),
        _row_case(
            "row-null-sensor",
            "NULL in the sensor id",
            6,
            bad(6, sensor_id=None),
            (("sensor_id", "required"),),
        ),
        _row_case(
            "row-null-temperature",
            "NULL in a required number",
            7,
            bad(7, temperature=None),
            (("temperature", "required"),),
        ),
        _row_case(
            "row-blob-timestamp",
            "a BLOB in the timestamp",
            8,
            bad(8, timestamp=b"\x00\x01\x02"),
            (("timestamp", "timestamp_format"), ("timestamp", "type")),
        ),
        _row_case(
            "row-blob-sensor",
            "a BLOB in the sensor id",
            9,
            bad(9, sensor_id=b"\xff\xfe/corpus"),
            (("sensor_id", "pattern"), ("sensor_id", "type")),
        ),
        _row_case(
            "row-blob-temperature",
            "a BLOB in a number column",
            10,
            bad(10, temperature=b"\x01\x02"),
            (("temperature", "type"),),
        ),
        _row_case(
            "row-text-in-real",
            "text in a REAL column",
            11,
            bad(11, temperature="warm"),
            (("temperature", "type"),),
        ),
        _row_case(
            "row-infinity-optional",
            "Infinity in an optional REAL column",
            12,
            bad(12, pressure=float("inf")),
            (("pressure", "type"), ("pressure", "range")),
        ),
        RowCase(
            "row-gap-filled-later",
            "a gap in the ids, filled after an upload",
            tuple(edge_row(i, 13, i) for i in (1, 2, 4, 5)),
            (),
            (),
            later=(edge_row(3, 13, 3),),
        ),
    ]


def all_cases() -> list[Case]:
    return [*message_cases(), *record_cases()]


CASES = all_cases()
ROWS = row_cases()
