"""Property: whatever SQLite values a row holds, reading never fails and every row is
either sent or quarantined, exactly once (issue 11), with JSON or Arrow bodies (issue 12:
batches are decided by columns).

Columns have no type affinity, so SQLite keeps each value as generated: integers, floats
(NaN is stored as NULL by SQLite itself), text, text that is not UTF-8, blobs, NULL and
huge strings. The oracle is plain Python over the generated rows.
"""

from __future__ import annotations

import base64
import json
import math
import random
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.uploader import (
    CheckpointStore,
    LastKnownStore,
    SensorSource,
    Stamp,
    Uploader,
    UploadOptions,
    quarantine_path,
)
from sensorpipe.controller import ActiveScenario, DatabaseUnavailableError
from sensorpipe.envelope import Encoded, Envelope, encode_to_fit
from sensorpipe.scenarios import BUILTIN_SCENARIOS

COLUMNS = ("timestamp", "sensor_id", "a", "b", "c")
MAX_BYTES = 16 * 1024
# 40 KB that no compression brings under MAX_BYTES (the other huge strings compress).
NOISE = base64.b64encode(random.Random(7).randbytes(30_000)).decode()


class BadText(bytes):
    """Bytes to be stored as TEXT (``CAST(? AS TEXT)``), mostly not valid UTF-8."""


def is_invalid_text(value: Any) -> bool:
    if not isinstance(value, BadText):
        return False
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False  # the random bytes around the bad sequence can repair it


def invalid_utf8() -> st.SearchStrategy[BadText]:
    return st.builds(
        lambda head, bad, tail: BadText(head + bad + tail),
        st.binary(max_size=8),
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\x80"]),
        st.binary(max_size=8),
    )


VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    invalid_utf8(),
    st.sampled_from(["x" * 40_000, "é" * 30_000, NOISE]),  # huge: over MAX_BYTES raw
)
ROWS = st.lists(st.tuples(*(VALUES for _ in COLUMNS)), min_size=1, max_size=25)


class Recorder:
    """A sender that encodes like the producer (splitting to fit) and keeps envelopes."""

    def __init__(self, columnar: bool = False) -> None:
        self.columnar = columnar
        self.envelopes: list[Envelope] = []

    def send(self, envelopes: list[Envelope]) -> list[Encoded]:
        out = [
            p
            for e in envelopes
            for p in encode_to_fit(e, max_bytes=MAX_BYTES, compress=True, columnar=self.columnar)
        ]
        self.envelopes.extend(envelopes)
        return out


class Unreadable:
    """A controller that is gone: every batch goes under the last known scenario."""

    def active(self) -> ActiveScenario:
        raise DatabaseUnavailableError("gone", db_path="/nowhere")


def write(db: Path, rows: list[tuple[Any, ...]]) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE sensor_readings (id INTEGER PRIMARY KEY, {', '.join(COLUMNS)})")
        for row_id, values in enumerate(rows, start=1):
            marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, BadText) else "?" for v in values)
            params = [bytes(v) if isinstance(v, BadText) else v for v in values]
            conn.execute(
                f"INSERT INTO sensor_readings VALUES (?, {marks})",
                [row_id, *params],
            )


def expected(value: Any) -> Any:
    """What the uploader should send for a value, from first principles."""
    if isinstance(value, BadText):
        return value.decode("utf-8")  # only asked for text that is valid after all
    if isinstance(value, bytes):
        return "base64:" + base64.b64encode(value).decode()
    if isinstance(value, float):
        if math.isnan(value):
            return None  # SQLite stores NaN as NULL
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, batch_size=st.integers(min_value=1, max_value=10), columnar=st.booleans())
def test_every_row_is_sent_or_quarantined_exactly_once(
    rows: list[tuple[Any, ...]], batch_size: int, columnar: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root / "s.db", rows)
        checkpoint = root / "state" / "ckpt.json"
        known = LastKnownStore(root / "state" / "ckpt.scenario.json")
        known.save(Stamp("raw", 1), "test")
        sender = Recorder(columnar)
        uploader = Uploader(
            source=SensorSource(root / "s.db", "sensor_readings"),
            store=CheckpointStore(checkpoint),
            controller=Unreadable(),
            sender=sender,
            options=UploadOptions(
                source_name="prop",
                batch_size=batch_size,
                max_batch_bytes=MAX_BYTES,
                columnar=columnar,
            ),
            known_scenarios=BUILTIN_SCENARIOS,
            last_known=known,
        )
        uploader.drain()
        sent = {
            r["sensor_data"]["id"]: r["sensor_data"] for e in sender.envelopes for r in e.records
        }
        q_path = quarantine_path(checkpoint)
        lines = [json.loads(x) for x in q_path.read_text().splitlines()] if q_path.exists() else []
        counts = Counter([*sent, *(line["row_id"] for line in lines)])
        assert counts == Counter(range(1, len(rows) + 1)), "each row exactly once"
        reasons = {line["row_id"]: line["reason"] for line in lines}
        for row_id, values in enumerate(rows, start=1):
            if any(is_invalid_text(v) for v in values):
                assert reasons.get(row_id) == "invalid_utf8"
            elif NOISE in values:
                assert reasons.get(row_id) == "too_large", "incompressible, over the limit"
            elif all(len(str(v)) < 1000 for v in values):
                assert row_id in sent, f"row {row_id} is small and valid"
            if row_id in sent:
                want = {
                    "id": row_id,
                    **{c: expected(v) for c, v in zip(COLUMNS, values, strict=True)},
                }
                assert sent[row_id] == want
        seqs = [e.position.seq for e in sender.envelopes if e.position]
        assert seqs == list(range(len(sender.envelopes))), "numbered 0, 1, 2, ... without holes"
        assert uploader.state.last_id == len(rows) and uploader.state.pending is None
