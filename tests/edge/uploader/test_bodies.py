"""The bodies the uploader sends, byte for byte, on a fixed database (issue 12).

Deciding batches by columns must not change a JSON body: the one expected here is written
out in plain Python from the database's values (records in column order, BLOBs as
``base64:``, non-finite floats as text, the poison rows left out, ids and stamps as
``docs/ARCHITECTURE.md`` describes them), with the clock frozen, exactly as the row-by-row
uploader wrote it. Arrow bodies must carry the same records.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.uploader import (
    CheckpointStore,
    LastKnownStore,
    SensorSource,
    Stamp,
    Uploader,
    UploadOptions,
)
from sensorpipe.envelope import (
    ATTR_ENCODING,
    ENVELOPE_VERSION,
    Encoded,
    Envelope,
    decode,
    encode_to_fit,
)
from sensorpipe.scenarios import BUILTIN_SCENARIOS
from tests.edge.uploader.test_row_reader_property import NOISE, BadText, Unreadable, write

FROZEN = "2026-01-01T00:00:00.000+00:00"
MAX_BYTES = 16 * 1024
BATCH = 4
ROWS: list[tuple[Any, ...]] = [
    ("2025-08-18T00:00:00.000+00:00", "DENV_1", 21.5, 45, None),
    ("2025-08-18T00:00:01.000+00:00", "DENV_2", -0.0, 46, "ok"),
    ("2025-08-18T00:00:02.000+00:00", "CHIC_1", 1e300, 2**62, 'é\n"\\\x01'),
    ("2025-08-18T00:00:03.000+00:00", "CHIC_2", 22.25, None, "🙂"),
    ("2025-08-18T00:00:04.000+00:00", "CHIC_3", float("inf"), 1, b"\x00\xffblob"),
    ("2025-08-18T00:00:05.000+00:00", "DENV_1", float("-inf"), 2.5, NOISE),  # too large
    ("2025-08-18T00:00:06.000+00:00", "DENV_2", 3, "text", None),
    ("2025-08-18T00:00:07.000+00:00", BadText(b"DENV_\xff"), 1.0, 1, None),  # not UTF-8
    ("2025-08-18T00:00:08.000+00:00", "DENV_3", 20.0, 7, "y" * 3000),
    ("2025-08-18T00:00:09.000+00:00", "DENV_4", None, None, None),
]
POISON = {6, 8}


def rendered(value: Any) -> Any:
    if isinstance(value, bytes):
        return "base64:" + base64.b64encode(value).decode()
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def expected_bodies() -> list[bytes]:
    token = hashlib.blake2b(
        f"sensor_readings|1|{ROWS[0][0]}|{ROWS[0][1]}".encode(), digest_size=4
    ).hexdigest()
    stream = f"node-a-{token}-g0"
    names = ("timestamp", "sensor_id", "a", "b", "c")
    bodies = []
    for seq, first in enumerate(range(1, len(ROWS) + 1, BATCH)):
        last = min(first + BATCH - 1, len(ROWS))
        sent = [i for i in range(first, last + 1) if i not in POISON]
        records = [
            {"sensor_data": {"id": i, **dict(zip(names, map(rendered, ROWS[i - 1]), strict=True))}}
            for i in sent
        ]
        body = {
            "v": ENVELOPE_VERSION,
            "batch_id": f"{stream}-{first:012d}-{last:012d}",
            "scenario": "raw",
            "config_version": 1,
            "source": "node-a",
            "created_at": FROZEN,
            "hops": [{"stage": "uploader", "at": FROZEN}],
            "meta": {
                "table": "sensor_readings",
                "source_generation": 0,
                "first_id": sent[0],
                "last_id": sent[-1],
            },
            "records": records,
            "position": {"stream": stream, "seq": seq, "part": ""},
        }
        bodies.append(orjson.dumps(body))
    return bodies


class Keeper:
    def __init__(self, columnar: bool) -> None:
        self.columnar = columnar
        self.sent: list[Encoded] = []

    def send(self, envelopes: list[Envelope]) -> list[Encoded]:
        for envelope in envelopes:
            self.sent += encode_to_fit(
                envelope, max_bytes=MAX_BYTES, compress=False, columnar=self.columnar
            )
        return self.sent[-len(envelopes) :]


def upload(columnar: bool) -> list[Encoded]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root / "s.db", ROWS)
        known = LastKnownStore(root / "ckpt.scenario.json")
        known.save(Stamp("raw", 1), "test")
        sender = Keeper(columnar)
        uploader = Uploader(
            source=SensorSource(root / "s.db", "sensor_readings"),
            store=CheckpointStore(root / "ckpt.json"),
            controller=Unreadable(),
            sender=sender,
            options=UploadOptions(
                "node-a",
                batch_size=BATCH,
                max_batch_bytes=MAX_BYTES,
                compress=False,
                columnar=columnar,
            ),
            known_scenarios=BUILTIN_SCENARIOS,
            last_known=known,
        )
        uploader.drain()
        uploader.source.close()
        assert uploader.quarantine.count == len(POISON)
        return sender.sent


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.uploader.batches.utc_now_iso", lambda: FROZEN)
    monkeypatch.setattr("sensorpipe.envelope.utc_now_iso", lambda: FROZEN)


def test_json_bodies_are_byte_for_byte_those_of_the_row_path() -> None:
    sent = upload(columnar=False)
    assert [e.attributes[ATTR_ENCODING] for e in sent] == ["identity"] * 3
    assert [e.body.encode() for e in sent] == expected_bodies()


def test_arrow_bodies_carry_the_same_envelopes() -> None:
    sent = upload(columnar=True)
    assert [e.attributes[ATTR_ENCODING] for e in sent] == ["arrow"] * 3
    got = [orjson.dumps(decode(e.body, e.attributes).to_dict()) for e in sent]
    assert got == expected_bodies()
