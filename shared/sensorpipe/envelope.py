"""Batch envelopes: one SQS message carries many records.

SQS calls are the scarce resource, so a record never travels alone. The envelope's ids
(batch id, scenario, config version) also travel as message attributes, so a stage with
nothing to do for a scenario forwards the body untouched without decoding it.

Every part of a source's batch also carries its **position** in the source's sequence
(stream, batch sequence number, split path) and, once routed, the greatest event time
among its valid readings (``max_event_us``): from those the stateful stages judge
lateness in the order the source wrote the readings, whatever order SQS delivers them
in (docs/WINDOWS.md).

Body formats, named by the ``content-encoding`` attribute:

- ``arrow``: the records as one Arrow table (:mod:`sensorpipe.columns`) in an Arrow IPC
  stream with zstd-compressed buffers, base64-encoded; the header (everything but the
  records) is JSON in the stream's schema metadata, with the layout version. A stage
  that works on columns reads ``Envelope.table`` and never builds a dict per record.
- ``gzip``: JSON (orjson), gzip-compressed and base64-encoded. The gzip stream is real
  gzip (RFC 1952, no timestamp, so bytes are reproducible); decoding also accepts a
  bare zlib stream.
- ``identity``: the JSON as it is.

Decoding refuses to inflate a body beyond :data:`MAX_DECODED_BYTES` (a compression bomb
is poison).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired

import orjson
import pyarrow as pa
from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from sensorpipe.columns import problems, rows_of, table_of
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
ARROW = "arrow"  # an Arrow IPC stream, zstd buffers, base64 (sensorpipe.columns)
ENCODINGS = ("gzip", "identity", ARROW)
COLUMNS_LAYOUT = b"1"  # the rules of sensorpipe.columns a columnar body follows
_HEADER_KEY = b"sensorpipe.envelope"
_LAYOUT_KEY = b"sensorpipe.columns"
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")
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
_HEAD_FIELDS = (
    "v",
    "batch_id",
    "scenario",
    "config_version",
    "source",
    "created_at",
    "hops",
    "meta",
)
_TAIL_FIELDS = ("position", "max_event_us")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Envelope:
    """A batch of records plus the ids that say how to process it.

    The records are held either as a list of dicts (``records``) or as one Arrow table
    (``table``, rules in :mod:`sensorpipe.columns`), whichever the envelope was made
    or decoded with. Reading ``table`` never changes which one is the truth; reading
    ``records`` from a columnar envelope turns it into a list for good (a stage may
    then change the dicts in place, and the encoder writes what they say).

    Args:
        batch_id: the batch's id (:data:`BATCH_ID_PATTERN`), deterministic per source batch
            and split part.
        scenario: the scenario the batch is processed under (stamped by the uploader).
        config_version: the controller's version of that scenario.
        records: the records as dicts (or ``table=``).
        source: the edge source name.
        created_at: when the batch was made (ISO-8601).
        hops: ``{stage, at}`` of every stage that handled it.
        meta: batch-wide values (the enricher's lineage ids, ...).
        position: where the part stands in its source's sequence; None when not from a
            sequenced source (a replay).
        max_event_us: the greatest event time (integer µs since the epoch) of the part's
            valid readings, stamped by the router; None before, or with no valid reading.
        table: the records as an Arrow table instead of ``records``.
    """

    __slots__ = (
        "_records",
        "_table",
        "batch_id",
        "config_version",
        "created_at",
        "hops",
        "max_event_us",
        "meta",
        "position",
        "scenario",
        "source",
    )

    def __init__(
        self,
        batch_id: str,
        scenario: str,
        config_version: int,
        records: list[Record] | None = None,
        source: str = "",
        created_at: str | None = None,
        hops: list[dict[str, str]] | None = None,
        meta: dict[str, Any] | None = None,
        position: Position | None = None,
        max_event_us: int | None = None,
        *,
        table: pa.Table | None = None,
    ) -> None:
        if (records is None) == (table is None):
            raise TypeError("an envelope holds either records or a table")
        self.batch_id = batch_id
        self.scenario = scenario
        self.config_version = config_version
        self._records = records
        self._table = table
        self.source = source
        self.created_at = utc_now_iso() if created_at is None else created_at
        self.hops = [] if hops is None else hops
        self.meta = {} if meta is None else meta
        self.position = position
        self.max_event_us = max_event_us

    @property
    def records(self) -> list[Record]:
        """The records as dicts (a columnar envelope becomes a list of dicts for good)."""
        if self._records is None:
            assert self._table is not None
            self._records = rows_of(self._table)
            self._table = None
        return self._records

    @records.setter
    def records(self, records: list[Record]) -> None:
        self._records, self._table = records, None

    @property
    def table(self) -> pa.Table:
        """The records as an Arrow table (built from the dicts when they are the truth)."""
        if self._table is not None:
            return self._table
        assert self._records is not None
        return table_of(self._records)

    @property
    def columnar(self) -> bool:
        """Whether the records are held as a table (no dict made yet)."""
        return self._table is not None

    @property
    def record_count(self) -> int:
        if self._table is not None:
            return int(self._table.num_rows)
        assert self._records is not None
        return len(self._records)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        return (
            f"Envelope(batch_id={self.batch_id!r}, scenario={self.scenario!r}, "
            f"config_version={self.config_version}, records={self.record_count}, "
            f"position={self.position!r})"
        )

    def _copy(
        self,
        batch_id: str | None,
        position: Position | None,
        records: list[Record] | None = None,
        table: pa.Table | None = None,
    ) -> Envelope:
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
            table=table,
        )

    def with_records(
        self,
        records: list[Record],
        batch_id: str | None = None,
        position: Position | None = None,
    ) -> Envelope:
        """A copy carrying other records (same ids, hops, metadata and position, unless
        a split gives it the position of its piece)."""
        return self._copy(batch_id, position, records=records)

    def with_table(
        self, table: pa.Table, batch_id: str | None = None, position: Position | None = None
    ) -> Envelope:
        """A copy carrying other records as a table (see :meth:`with_records`)."""
        return self._copy(batch_id, position, table=table)

    def halves(self) -> tuple[Envelope, Envelope]:
        """The first and second half of the records as two envelopes of the split's
        ids and positions (``<batch_id>.0`` / ``.1``)."""
        mid = self.record_count // 2
        ids = (f"{self.batch_id}.0", f"{self.batch_id}.1")
        positions = (
            (self.position.child(0), self.position.child(1))
            if self.position is not None
            else (None, None)
        )
        if self._table is not None:
            parts = (self._table.slice(0, mid), self._table.slice(mid))
            return (
                self.with_table(parts[0], ids[0], positions[0]),
                self.with_table(parts[1], ids[1], positions[1]),
            )
        records = self.records
        return (
            self.with_records(records[:mid], ids[0], positions[0]),
            self.with_records(records[mid:], ids[1], positions[1]),
        )

    def add_hop(self, stage: str) -> None:
        self.hops.append({"stage": stage, "at": utc_now_iso()})

    def header(self) -> dict[str, Any]:
        """Everything but the records, as the body writes it."""
        out: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "batch_id": self.batch_id,
            "scenario": self.scenario,
            "config_version": self.config_version,
            "source": self.source,
            "created_at": self.created_at,
            "hops": self.hops,
            "meta": self.meta,
        }
        if self.position is not None:
            out["position"] = self.position.to_dict()
        if self.max_event_us is not None:
            out["max_event_us"] = self.max_event_us
        return out

    def to_dict(self) -> dict[str, Any]:
        """The envelope as the JSON body writes it (a columnar one is not turned into
        dicts for good by this)."""
        header = self.header()
        out = {key: header[key] for key in _HEAD_FIELDS}
        out["records"] = self._records if self._records is not None else rows_of(self.table)
        out.update((key, header[key]) for key in _TAIL_FIELDS if key in header)
        return out


@dataclass(frozen=True, slots=True)
class Encoded:
    body: str
    attributes: dict[str, str]
    batch_id: str
    record_count: int


def encode(envelope: Envelope, *, compress: bool, columnar: bool = False) -> Encoded:
    """The message body and attributes of an envelope.

    Args:
        envelope: what to send.
        compress: JSON bodies only: gzip + base64 (``gzip``) instead of plain JSON
            (``identity``).
        columnar: write the records as an Arrow IPC stream with zstd-compressed
            buffers, base64-encoded (``arrow``), the header as JSON in the stream's
            schema metadata. Records that no table holds exactly (no keys at all, text
            Arrow refuses) fall back to JSON, so every envelope can be sent.
    """
    body = _arrow_body(envelope) if columnar else None
    if body is not None:
        encoding = ARROW
    elif compress:
        raw = orjson.dumps(envelope.to_dict())
        packer = zlib.compressobj(1, zlib.DEFLATED, _GZIP_WBITS)
        body = base64.b64encode(packer.compress(raw) + packer.flush()).decode("ascii")
        encoding = "gzip"
    else:
        body = orjson.dumps(envelope.to_dict()).decode("utf-8")
        encoding = "identity"
    count = envelope.record_count
    attributes = {
        ATTR_BATCH_ID: envelope.batch_id,
        ATTR_SCENARIO: envelope.scenario,
        ATTR_CONFIG_VERSION: str(envelope.config_version),
        ATTR_RECORD_COUNT: str(count),
        ATTR_ENCODING: encoding,
        ATTR_VERSION: str(ENVELOPE_VERSION),
    }
    return Encoded(body, attributes, envelope.batch_id, count)


_NOT_COLUMNAR = (pa.ArrowException, orjson.JSONEncodeError, OverflowError, UnicodeError)


def _as_columnar(envelope: Envelope) -> Envelope:
    """The envelope holding its records as a table, or as it is if no table holds them."""
    try:
        table = envelope.table
    except _NOT_COLUMNAR:
        return envelope
    if table.num_rows != envelope.record_count:
        return envelope
    return envelope.with_table(table)


def _arrow_body(envelope: Envelope) -> str | None:
    try:
        table = envelope.table
    except _NOT_COLUMNAR:
        return None
    if table.num_rows != envelope.record_count:  # records without a single key
        return None
    if table.num_columns and table.column(0).num_chunks > 1:
        table = table.combine_chunks()  # one batch: the same records, the same bytes
    metadata = {_HEADER_KEY: orjson.dumps(envelope.header()), _LAYOUT_KEY: COLUMNS_LAYOUT}
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def encoded_size(encoded: Encoded) -> int:
    """Bytes SQS counts against its limit: body plus attribute names and values."""
    attrs = sum(len(k) + len(v) + len("String") for k, v in encoded.attributes.items())
    return len(encoded.body.encode("utf-8")) + attrs


def encode_to_fit(
    envelope: Envelope, *, max_bytes: int, compress: bool, columnar: bool = False
) -> list[Encoded]:
    """Encode, splitting the batch in halves until every part fits ``max_bytes``.

    Splits are deterministic (same records, same limit, same part ids), so a resent
    batch produces the same batch ids and downstream keys.
    """
    if columnar and not envelope.columnar:  # the table once, not once per split
        envelope = _as_columnar(envelope)
    encoded = encode(envelope, compress=compress, columnar=columnar)
    if encoded_size(encoded) <= max_bytes:
        return [encoded]
    if envelope.record_count <= 1:
        raise RecordTooLargeError(envelope.batch_id, encoded_size(encoded), max_bytes)
    out: list[Encoded] = []
    for half in envelope.halves():
        out.extend(encode_to_fit(half, max_bytes=max_bytes, compress=compress, columnar=columnar))
    return out


def decode(body: str, attributes: dict[str, str]) -> Envelope:
    """Read a message body into an envelope; raise EnvelopeError if it is not one.

    Strict about everything but the records' values (which stay what they are): the
    ``content-encoding`` and ``envelope-version`` attributes, the JSON (at most
    :data:`MAX_NESTING` levels deep), every header field's type and the batch id's
    characters, a columnar body's layout (:func:`sensorpipe.columns.problems`), and
    that the attributes repeating body fields (``batch-id``, ``scenario``,
    ``config-version``, ``record-count``) say what the body says: the body is the one
    source of truth, and a message whose attributes contradict it is poison
    (:class:`AttributeMismatchError`), whichever stage reads it.
    """
    encoding = _encoding(attributes)
    if encoding == ARROW:
        envelope = _arrow_envelope(body)
        _check_attributes_agree(attributes, envelope)
        return envelope
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


def _arrow_envelope(body: str) -> Envelope:
    try:
        reader = pa.ipc.open_stream(base64.b64decode(body, validate=True))
        batches, size = [], 0
        for batch in reader:
            size += batch.nbytes
            if size > MAX_DECODED_BYTES:
                raise EnvelopeError(f"body inflates beyond {MAX_DECODED_BYTES} bytes (refused)")
            batches.append(batch)
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except (binascii.Error, ValueError, OSError, pa.ArrowException, MemoryError) as exc:
        raise EnvelopeError(f"body is not a base64 Arrow IPC stream: {exc}") from exc
    metadata = table.schema.metadata or {}
    if metadata.get(_LAYOUT_KEY) != COLUMNS_LAYOUT:
        raise EnvelopeError(
            f"columnar body has layout {metadata.get(_LAYOUT_KEY, b'(none)')[:40]!r}; this "
            f"reader knows only {COLUMNS_LAYOUT.decode()}",
            hint="upgrade this stage, or replay the message through one that knows it",
        )
    try:
        data = orjson.loads(metadata.get(_HEADER_KEY, b""))
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"columnar body's header is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvelopeError(f"columnar body's header is {_kind(data)}, expected an object")
    if "records" in data:
        raise EnvelopeError("'records' is not a header field of a columnar body")
    _check_nesting(data)
    problem = problems(table)
    if problem is not None:
        raise EnvelopeError(f"columnar body: {problem}")
    return _envelope_of({**data, "records": []}, table=table.replace_schema_metadata(None))


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


def _envelope_of(data: dict[str, Any], table: pa.Table | None = None) -> Envelope:
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
        records=records if table is None else None,
        table=table,
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
        (ATTR_RECORD_COUNT, str(envelope.record_count)),
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
