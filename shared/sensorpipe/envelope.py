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
from typing import Any

import orjson

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

Record = dict[str, Any]


class EnvelopeError(SensorPipeError):
    """A message body or its attributes cannot be read as an envelope (poison)."""


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
    """Read a message body into an envelope; raise EnvelopeError if it is not one."""
    encoding = attributes.get(ATTR_ENCODING, "identity")
    try:
        if encoding == "gzip":
            raw: bytes | str = _inflate(base64.b64decode(body, validate=True))
        elif encoding == "identity":
            raw = body
        else:
            raise EnvelopeError(f"unknown content-encoding {encoding!r}")
        data = orjson.loads(raw)
    except (binascii.Error, zlib.error) as exc:
        raise EnvelopeError(f"body is not valid base64+gzip: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvelopeError(f"body is JSON {type(data).__name__}, expected an envelope object")
    problems = _header_problems(data)
    if problems:
        raise EnvelopeError("not a batch envelope: " + "; ".join(problems))
    position = Position.from_dict(data["position"]) if "position" in data else None
    max_event_us = data.get("max_event_us")
    if max_event_us is not None and (
        not isinstance(max_event_us, int) or isinstance(max_event_us, bool)
    ):
        raise EnvelopeError(f"'max_event_us' must be an integer, not {max_event_us!r}")
    return Envelope(
        batch_id=data["batch_id"],
        scenario=data["scenario"],
        config_version=data["config_version"],
        records=data["records"],
        source=data.get("source", ""),
        created_at=data.get("created_at", ""),
        hops=data.get("hops") or [],
        meta=data.get("meta") or {},
        position=position,
        max_event_us=max_event_us,
    )


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(_AUTO_WBITS)
    raw = inflater.decompress(data, MAX_DECODED_BYTES)
    if inflater.unconsumed_tail:
        raise EnvelopeError(f"body inflates beyond {MAX_DECODED_BYTES} bytes (refused)")
    if not inflater.eof:
        raise EnvelopeError("compressed body is truncated")
    return raw


def _header_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    if data.get("v") != ENVELOPE_VERSION:
        problems.append(f"envelope version {data.get('v')!r} is not {ENVELOPE_VERSION}")
    for key, kind in (("batch_id", str), ("scenario", str), ("config_version", int)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            problems.append(f"'{key}' missing or not {kind.__name__}")
    records = data.get("records")
    if not isinstance(records, list):
        problems.append("'records' missing or not a list")
    elif any(not isinstance(r, dict) for r in records):
        problems.append("'records' holds a non-object entry")
    return problems
