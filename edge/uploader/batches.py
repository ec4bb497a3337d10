"""Deterministic batch ids and the envelopes the uploader sends.

A batch id is built from the source name, the source generation and the first and last
row id, so resending the same rows after a crash yields the same id (and the same
downstream S3 keys), while a recreated database (a new generation) never reuses the ids
of the old one. The generation token is a digest of the generation's first row, so it is
the same on every restart and differs between edge nodes sharing a source name.

The generation is also the envelope's *stream* (``stream_id``): its batches are numbered
0, 1, 2, ... in row order and carry that number as their position.

An envelope carries its records as the batch was made (``blocks.Sendable``): as dicts,
or as an Arrow table built from the columns, never converted from one to the other here.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from edge.uploader.blocks import Sendable
from edge.uploader.source import RowFingerprint
from sensorpipe.envelope import Envelope, Position, utc_now_iso

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
HOP_STAGE = "uploader"


def source_label(source_name: str) -> str:
    """The source name made safe for batch ids and S3 keys."""
    return _UNSAFE.sub("-", source_name).strip("-")[:40] or "edge"


def generation_token(table: str, anchor: RowFingerprint) -> str:
    text = f"{table}|{anchor.id}|{anchor.timestamp}|{anchor.sensor_id}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=4).hexdigest()


def stream_id(source_name: str, generation: int, token: str) -> str:
    """The sequence a generation's batches are numbered in."""
    return f"{source_label(source_name)}-{token}-g{generation}"


def batch_id(source_name: str, generation: int, token: str, first_id: int, last_id: int) -> str:
    return f"{stream_id(source_name, generation, token)}-{first_id:012d}-{last_id:012d}"


def build_envelope(
    *,
    batch: str,
    scenario: str,
    config_version: int,
    rows: Sendable,
    source_name: str,
    table: str,
    generation: int,
    position: Position | None = None,
) -> Envelope:
    meta: dict[str, Any] = {
        "table": table,
        "source_generation": generation,
        "first_id": rows.ids[0],
        "last_id": rows.ids[-1],
    }
    return Envelope(
        batch_id=batch,
        scenario=scenario,
        config_version=config_version,
        records=None if rows.table is not None else rows.records(),
        source=source_name,
        hops=[{"stage": HOP_STAGE, "at": utc_now_iso()}],
        meta=meta,
        position=position,
        table=rows.table,
    )
