"""``sensorpipe-replay inspect``: any message body or stored object as JSON Lines.

Columnar bodies (``content-encoding: arrow``) and gzip objects are not for eyes; this
turns each into lines a person or ``jq`` can read: first one line about the thing
itself (``{"envelope": header, "content_encoding": ..., "record_count": n}`` for a
message, ``{"object": key, "lines": n}`` for an object), then one line per record.

Sources: a message body in a file (``--body FILE``, ``-`` for stdin, with the
``--encoding`` it travelled with), the messages of a dead-letter queue (``--dlq QUEUE``:
received with a short visibility timeout and never deleted, so they stay where they
are), or an object of a bucket (``--object s3://bucket/key``). The functions here are
pure: bytes in, lines out; the CLI does the reading.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import orjson

from sensorpipe.envelope import ATTR_ENCODING, decode
from sensorpipe.objects import json_safe


def message_lines(body: str, attributes: dict[str, str]) -> Iterator[str]:
    """A message as JSON Lines: its header, then its records (EnvelopeError if the
    body is not an envelope: the caller says so)."""
    envelope = decode(body, attributes)
    header = {
        "envelope": envelope.header(),
        "content_encoding": attributes.get(ATTR_ENCODING),
        "record_count": envelope.record_count,
    }
    extra = {k: v for k, v in attributes.items() if k in ("failure-reason", "failed-service")}
    if extra:
        header["dead_letter"] = extra
    yield _line(header)
    for record in envelope.records:
        yield _line(record)


def object_lines(key: str, body: bytes) -> Iterator[str]:
    """An object of a bucket as JSON Lines: gzip or plain JSON Lines, or one JSON
    document (a window, a checkpoint); ValueError if it is none of them."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    text = body.decode("utf-8")
    try:
        values: list[Any] = [orjson.loads(text)]
    except orjson.JSONDecodeError:
        values = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    yield _line({"object": key, "lines": len(values)})
    for value in values:
        yield _line(value)


def _line(value: Any) -> str:
    return orjson.dumps(json_safe(value)).decode("utf-8")
