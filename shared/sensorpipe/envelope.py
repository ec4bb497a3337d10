"""Batch envelopes: one SQS message carries many records.

SQS calls are the scarce resource, so a record never travels alone. The envelope's ids
(batch id, scenario, config version) also travel as message attributes, so a stage with
nothing to do for a scenario forwards the body untouched without decoding it.

Every part of a source's batch also carries its **position** in the source's sequence
(stream, batch sequence number, split path) and, once routed, the greatest event time
among its valid readings (``max_event_us``): from those the stateful stages judge
lateness in the order the source wrote the readings, whatever order SQS delivers them
in (docs/WINDOWS.md).

Body format: JSON (orjson), optionally gzip-compressed and base64-encoded when the
``content-encoding`` attribute says ``gzip``. The gzip stream is real gzip (RFC 1952, no
timestamp, so bytes are reproducible); decoding also accepts a bare zlib stream, and it
refuses to inflate a body beyond :data:`MAX_DECODED_BYTES` (a compression bomb is poison).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired

import orjson
from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from sensorpipe.errors import SensorPipeError

ENVELOPE_VERSION = 1
ATTR_BATCH_ID = "batch-id"
ATTR_SCENARIO = "scenario"
ATTR_CONFIG_VERSION = "config-version"
ATTR_RECORD_COUNT = "record-count"
ATTR_ENCODING = "content-encoding"
ATTR_VERSION = "envelope-version"
# 256 KiB of deflate can inflate to ~250 MiB; no honest batch comes near this.
MAX_DECODED_BYTES = 64 * 1024 * 1024
_GZIP_WBITS = 31  # zlib's gzip container (header without a timestamp)
_PART = re.compile(r"^[01]{0,64}$")
_MAX_STREAM_CHARS = 200
_AUTO_WBITS = 47  # inflate either a gzip or a zlib container
ENCODINGS = ("gzip", "identity")
# orjson reads 1,024 levels of nesting but writes only 254: a deeper body could be read
# and never sent on or stored, so it is refused when read.
MAX_NESTING = 254
# Batch ids become S3 key parts and message attributes: the uploader's
# ``{source}-{token}-g{generation}-{first}-{last}``, replay's ``replay-<hex>``, split
# parts ``.0``/``.1`` and router shards ``.sN`` all use these characters only.
BATCH_ID_PATTERN = r"^[A-Za-z0-9_.:~-]{1,512}$"
MAX_BATCH_ID_CHARS = 512

Record = dict[str, Any]


class EnvelopeError(SensorPipeError):
    """A message body or its attributes cannot be read as an envelope (poison)."""


class AttributeMismatchError(EnvelopeError):
    """The message attributes say something else than the body they travel with."""


class RecordTooLargeError(EnvelopeError):
    """One record alone exceeds the body limit; it cannot be sent in any batch."""

    def __init__(self, batch_id: str, size: int, limit: int) -> None:
        self.batch_id = batch_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"batch {batch_id}: a single record encodes to {size} bytes, over the "
            f"{limit}-byte message limit",
            hint="raise queues.max_body_bytes (AWS allows 1 MiB) or shrink the record",
        )


@dataclass(frozen=True, slots=True)
class Position:
    """Where a batch part stands in its source's sequence.

    ``stream`` names one source's sequence (an edge database generation), ``seq``
    numbers its batches 0, 1, 2, ... in the order the source wrote them, and ``part`` is
    the split path of this piece of the batch: "" for the whole batch, "0" and "1" for
    its halves, "10" for the first half of the second half, ... Pieces of a batch are
    complete when their paths cover it; a stage that splits a part extends its path.
    """

    stream: str
    seq: int
    part: str = ""

    def child(self, index: int) -> Position:
        return Position(self.stream, self.seq, f"{self.part}{index}")

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "seq": self.seq, "part": self.part}

    @classmethod
    def from_dict(cls, data: Any) -> Position:
        """The position in a body; EnvelopeError if it is not a valid one."""
        if not isinstance(data, dict):
            raise EnvelopeError(f"'position' is {type(data).__name__}, expected an object")
        stream, seq, part = data.get("stream"), data.get("seq"), data.get("part", "")
        if not isinstance(stream, str) or not 0 < len(stream) <= _MAX_STREAM_CHARS:
            raise EnvelopeError(
                f"'position.stream' must be a string of 1-{_MAX_STREAM_CHARS} characters"
            )
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise EnvelopeError(f"'position.seq' must be an integer >= 0, not {seq!r}")
        if not isinstance(part, str) or not _PART.match(part):
            raise EnvelopeError(f"'position.part' must be a split path of 0s and 1s, not {part!r}")
        return cls(stream, seq, part)


class _Hop(TypedDict):
    __pydantic_config__ = ConfigDict(strict=True, extra="forbid")  # type: ignore[misc]
    stage: str
    at: str


class _Header(TypedDict):
    """The envelope as its JSON body must look (records: a list; each one is checked to
    be an object, and kept as it is)."""

    __pydantic_config__ = ConfigDict(strict=True, extra="forbid")  # type: ignore[misc]
    v: int  # the value is checked first, with its own message
    batch_id: Annotated[str, StringConstraints(pattern=BATCH_ID_PATTERN)]
    scenario: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    config_version: Annotated[int, Field(ge=0)]
    source: NotRequired[str]
    created_at: NotRequired[str]
    hops: NotRequired[list[_Hop]]
    meta: NotRequired[dict[str, Any]]
    position: NotRequired[Any]  # Position.from_dict says what is wrong with it
    max_event_us: NotRequired[int | None]
    records: list[Any]


_HEADER = TypeAdapter(_Header)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class Envelope:
    """A batch of records plus the ids that say how to process it."""

    batch_id: str
    scenario: str
    config_version: int
    records: list[Record]
    source: str = ""
    created_at: str = field(default_factory=utc_now_iso)
    hops: list[dict[str, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    position: Position | None = None  # None: not from a sequenced source (e.g. a replay)
    # The greatest event time (integer microseconds since the epoch) among the valid
    # readings of the part this envelope came from; stamped by the router. None: no
    # valid reading, or not routed yet.
    max_event_us: int | None = None

    def with_records(
        self,
        records: list[Record],
        batch_id: str | None = None,
        position: Position | None = None,
    ) -> Envelope:
        """A copy carrying other records (same ids, hops, metadata and position, unless
        a split gives it the position of its piece)."""
        return Envelope(
            batch_id=batch_id or self.batch_id,
            scenario=self.scenario,
            config_version=self.config_version,
            records=records,
            source=self.source,
            created_at=self.created_at,
            hops=list(self.hops),
            meta=dict(self.meta),
            position=position or self.position,
            max_event_us=self.max_event_us,
        )

    def add_hop(self, stage: str) -> None:
        self.hops.append({"stage": stage, "at": utc_now_iso()})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "batch_id": self.batch_id,
            "scenario": self.scenario,
            "config_version": self.config_version,
            "source": self.source,
            "created_at": self.created_at,
            "hops": self.hops,
            "meta": self.meta,
            "records": self.records,
        }
        if self.position is not None:
            out["position"] = self.position.to_dict()
        if self.max_event_us is not None:
            out["max_event_us"] = self.max_event_us
        return out


@dataclass(frozen=True, slots=True)
class Encoded:
    body: str
    attributes: dict[str, str]
    batch_id: str
    record_count: int


def encode(envelope: Envelope, *, compress: bool) -> Encoded:
    raw = orjson.dumps(envelope.to_dict())
    if compress:
        packer = zlib.compressobj(1, zlib.DEFLATED, _GZIP_WBITS)
        body = base64.b64encode(packer.compress(raw) + packer.flush()).decode("ascii")
        encoding = "gzip"
    else:
        body = raw.decode("utf-8")
        encoding = "identity"
    attributes = {
        ATTR_BATCH_ID: envelope.batch_id,
        ATTR_SCENARIO: envelope.scenario,
        ATTR_CONFIG_VERSION: str(envelope.config_version),
        ATTR_RECORD_COUNT: str(len(envelope.records)),
        ATTR_ENCODING: encoding,
        ATTR_VERSION: str(ENVELOPE_VERSION),
    }
    return Encoded(body, attributes, envelope.batch_id, len(envelope.records))


def encoded_size(encoded: Encoded) -> int:
    """Bytes SQS counts against its limit: body plus attribute names and values."""
    attrs = sum(len(k) + len(v) + len("String") for k, v in encoded.attributes.items())
    return len(encoded.body.encode("utf-8")) + attrs


def encode_to_fit(envelope: Envelope, *, max_bytes: int, compress: bool) -> list[Encoded]:
    """Encode, splitting the batch in halves until every part fits ``max_bytes``.

    Splits are deterministic (same records, same limit, same part ids), so a resent
    batch produces the same batch ids and downstream keys.
    """
    encoded = encode(envelope, compress=compress)
    if encoded_size(encoded) <= max_bytes:
        return [encoded]
    if len(envelope.records) <= 1:
        raise RecordTooLargeError(envelope.batch_id, encoded_size(encoded), max_bytes)
    mid = len(envelope.records) // 2
    halves = (envelope.records[:mid], envelope.records[mid:])
    out: list[Encoded] = []
    for index, part in enumerate(halves):
        position = envelope.position.child(index) if envelope.position is not None else None
        child = envelope.with_records(
            part, batch_id=f"{envelope.batch_id}.{index}", position=position
        )
        out.extend(encode_to_fit(child, max_bytes=max_bytes, compress=compress))
    return out


def decode(body: str, attributes: dict[str, str]) -> Envelope:
    """Read a message body into an envelope; raise EnvelopeError if it is not one.

    Strict about everything but the records (which stay the dicts they are): the
    ``content-encoding`` and ``envelope-version`` attributes, the JSON (at most
    :data:`MAX_NESTING` levels deep), every header field's type and the batch id's
    characters, and that the attributes repeating body fields (``batch-id``,
    ``scenario``, ``config-version``, ``record-count``) say what the body says: the body
    is the one source of truth, and a message whose attributes contradict it is poison
    (:class:`AttributeMismatchError`), whichever stage reads it.
    """
    encoding = _encoding(attributes)
    try:
        if encoding == "gzip":
            raw: bytes | str = _inflate(base64.b64decode(body, validate=True))
        else:
            raw = body
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # a ValueError: caught first
        raise EnvelopeError(f"body is not valid JSON: {exc}") from exc
    except (binascii.Error, zlib.error, ValueError) as exc:  # ValueError: non-ASCII base64
        raise EnvelopeError(f"body is not valid base64+gzip: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvelopeError(f"body is JSON {type(data).__name__}, expected an envelope object")
    _check_nesting(data)
    envelope = _envelope_of(data)
    _check_attributes_agree(attributes, envelope)
    return envelope


def _encoding(attributes: dict[str, str]) -> str:
    version = attributes.get(ATTR_VERSION)
    if version is not None and version != str(ENVELOPE_VERSION):
        raise EnvelopeError(
            f"attribute {ATTR_VERSION!r} is {version[:40]!r}; this reader knows only "
            f"version {ENVELOPE_VERSION}",
            hint="upgrade this stage, or replay the message through one that knows it",
        )
    encoding = attributes.get(ATTR_ENCODING)
    if encoding is None:
        raise EnvelopeError(
            f"attribute {ATTR_ENCODING!r} is missing; expected one of {', '.join(ENCODINGS)}"
        )
    if encoding not in ENCODINGS:
        raise EnvelopeError(
            f"unknown content-encoding {encoding[:40]!r}; expected one of {', '.join(ENCODINGS)}"
        )
    return encoding


def _check_nesting(data: dict[str, Any]) -> None:
    """Refuse a body no stage could encode again: orjson writes at most
    :data:`MAX_NESTING` levels (it reads deeper ones). Encoding is the cheapest exact
    depth check there is (C speed, a fraction of the parse)."""
    try:
        orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        raise EnvelopeError(
            f"body nests deeper than {MAX_NESTING} levels of objects and arrays ({exc}); "
            "no stage could write it again"
        ) from exc


def _envelope_of(data: dict[str, Any]) -> Envelope:
    version = data.get("v")
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise EnvelopeError(
            f"envelope version 'v' is {_kind(version)}, expected "
            f"{ENVELOPE_VERSION} (the only version this reader knows)"
        )
    try:
        header = _HEADER.validate_python(data)
    except ValidationError as exc:
        raise EnvelopeError(_problems(exc)) from exc
    records = header["records"]
    for index, record in enumerate(records):
        if type(record) is not dict:
            raise EnvelopeError(f"'records[{index}]' is {_kind(record)}, expected an object")
    position = Position.from_dict(header["position"]) if "position" in header else None
    return Envelope(
        batch_id=header["batch_id"],
        scenario=header["scenario"],
        config_version=header["config_version"],
        records=records,
        source=header.get("source", ""),
        created_at=header.get("created_at", ""),
        hops=[{"stage": hop["stage"], "at": hop["at"]} for hop in header.get("hops", [])],
        meta=header.get("meta", {}),
        position=position,
        max_event_us=header.get("max_event_us"),
    )


def _check_attributes_agree(attributes: dict[str, str], envelope: Envelope) -> None:
    stated_by_body = (
        (ATTR_BATCH_ID, envelope.batch_id),
        (ATTR_SCENARIO, envelope.scenario),
        (ATTR_CONFIG_VERSION, str(envelope.config_version)),
        (ATTR_RECORD_COUNT, str(len(envelope.records))),
    )
    contradictions = [
        f"body says {name} {value[:80]!r}, attributes say {attributes[name][:80]!r}"
        for name, value in stated_by_body
        if name in attributes and attributes[name] != value
    ]
    if contradictions:
        raise AttributeMismatchError(
            f"batch {envelope.batch_id}: attributes contradict the body: "
            + "; ".join(contradictions),
            hint="the body is the truth; resend the batch with attributes from encode()",
        )


def _problems(exc: ValidationError) -> str:
    """One line per header problem: field, what it is, what is expected."""
    lines = []
    for error in exc.errors(include_url=False)[:5]:
        where = _field_path(error["loc"])
        if error["type"] == "missing":
            lines.append(f"{where} is missing")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{where} is not an envelope field")
        elif error["type"] == "string_pattern_mismatch":  # the batch id
            lines.append(
                f"{where} is {_kind(error['input'])}, expected 1-{MAX_BATCH_ID_CHARS} "
                "letters, digits or '-_.:~'"
            )
        else:
            msg = error["msg"].replace("dictionary", "object")
            lines.append(f"{where} is {_kind(error['input'])}: {msg[:1].lower()}{msg[1:]}")
    return "; ".join(lines)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return f"'{path}'"


def _kind(value: Any) -> str:
    """What a JSON value is, for an error message (bounded: never the whole value)."""
    if value is None or isinstance(value, bool):
        return f"{orjson.dumps(value).decode()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"[:60]
    if isinstance(value, str):
        shown = value if len(value) <= 40 else f"{value[:40]}..."
        return f"a string of {len(value)} character(s) ({shown!r})"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(_AUTO_WBITS)
    raw = inflater.decompress(data, MAX_DECODED_BYTES)
    if inflater.unconsumed_tail:
        raise EnvelopeError(f"body inflates beyond {MAX_DECODED_BYTES} bytes (refused)")
    if not inflater.eof:
        raise EnvelopeError("compressed body is truncated")
    return raw
