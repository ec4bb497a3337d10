"""Poison rows and rows behind the checkpoint (issue 11), against moto's SQS.

A row with text that is not UTF-8, or too large for one message, goes to the quarantine
file beside the checkpoint and the rows before and after it are sent; rows written at or
below the checkpoint (ids 0 and -1, a gap filled later) are found and sent once.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from edge.uploader import quarantine_path
from sensorpipe.envelope import Encoded, Envelope
from tests.edge.uploader.conftest import Env, db_rows, received, saved, simulate

BAD_UTF8 = b"Lab \xc3\x28 \xff"  # an invalid two-byte sequence and a stray 0xff


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def quarantined(env: Env) -> list[dict[str, Any]]:
    path = quarantine_path(env.tmp / "state" / "ckpt.json")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def set_bad_text(db: Path, row_id: int, column: str = "location") -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            f"UPDATE sensor_readings SET {column} = CAST(? AS TEXT) WHERE id = ?",
            (BAD_UTF8, row_id),
        )


def copy_row(db: Path, source_id: int, new_id: int) -> None:
    with sqlite3.connect(db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(sensor_readings)")][1:]
        names = ", ".join(columns)
        conn.execute(
            f"INSERT INTO sensor_readings (id, {names}) "
            f"SELECT ?, {names} FROM sensor_readings WHERE id = ?",
            (new_id, source_id),
        )


def test_an_invalid_utf8_row_mid_batch_is_quarantined_and_the_others_sent(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    simulate(env.db, 10)
    set_bad_text(env.db, 5)
    with sqlite3.connect(env.db) as conn, pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT * FROM sensor_readings").fetchall()  # what used to kill it
    before = metric("sensorpipe_uploader_rows_quarantined_total", reason="invalid_utf8")
    with caplog.at_level(logging.WARNING, logger="edge.uploader"):
        totals = env.uploader().drain()
    assert totals.records == 9
    got = received(env)
    assert got.row_ids() == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    (line,) = quarantined(env)
    assert (line["table"], line["row_id"], line["reason"]) == ("sensor_readings", 5, "invalid_utf8")
    assert "'location'" in line["detail"]
    assert base64.b64decode(line["values"]["location"]["base64"]) == BAD_UTF8
    assert line["values"]["location"]["text"] == BAD_UTF8.decode("utf-8", errors="replace")
    assert line["values"]["sensor_id"] == db_rows_without(env.db, 5)["sensor_id"]
    assert metric("sensorpipe_uploader_rows_quarantined_total", reason="invalid_utf8") == before + 1
    warning = next(r.getMessage() for r in caplog.records if "QUARANTINED" in r.getMessage())
    assert "row id 5" in warning and "invalid_utf8" in warning
    assert str(quarantine_path(env.tmp / "state" / "ckpt.json")) in warning
    state = saved(env)
    assert (state["last_id"], state["pending"]) == (10, None), "the checkpoint moved past it"
    assert env.uploader().drain().records == 0
    assert len(quarantined(env)) == 1, "a restart does not quarantine it again"


def db_rows_without(db: Path, row_id: int) -> dict[str, Any]:
    """A row's other columns, read with a text factory that tolerates the bad one."""
    conn = sqlite3.connect(db)
    conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM sensor_readings WHERE id = ?", (row_id,)).fetchone()
        return dict(row)
    finally:
        conn.close()


def test_a_batch_of_only_poison_moves_on_without_taking_a_number(env: Env) -> None:
    simulate(env.db, 6)
    for row_id in (3, 4):
        set_bad_text(env.db, row_id, "sensor_id")
    env.uploader(batch_size=2).drain()
    got = received(env)
    assert got.row_ids() == [1, 2, 5, 6]
    assert [e.position.seq for e in got.envelopes if e.position] == [0, 1], "no hole in seq"
    assert sorted(line["row_id"] for line in quarantined(env)) == [3, 4]
    assert saved(env)["last_id"] == 6


class CrashAfterSend:
    """Sends, then dies before the checkpoint: the resend must be the same batch."""

    def __init__(self, env: Env) -> None:
        self.inner = env.producer()

    def send(self, envelopes: list[Envelope]) -> list[Encoded]:
        self.inner.send(envelopes)
        raise KeyboardInterrupt("crash between send and checkpoint")


def test_a_resend_after_a_crash_is_identical_around_a_poison_row(env: Env) -> None:
    simulate(env.db, 8)
    set_bad_text(env.db, 4)
    with pytest.raises(KeyboardInterrupt):
        env.uploader(sender=CrashAfterSend(env)).step()
    pending = saved(env)["pending"]
    assert pending["sent"] == [[1, 3], [5, 8]] and pending["read"] == [[1, 8]]
    copy_row(env.db, 2, 100)  # the writer goes on meanwhile
    env.uploader().drain()
    got = received(env)
    first, resent, later = got.envelopes
    assert resent.batch_id == first.batch_id and resent.records == first.records
    assert resent.position == first.position
    assert [r["sensor_data"]["id"] for r in first.records] == [1, 2, 3, 5, 6, 7, 8]
    assert [r["sensor_data"]["id"] for r in later.records] == [100]
    assert later.position is not None and later.position.seq == 1
    assert [line["row_id"] for line in quarantined(env)] == [4], "quarantined once"


def test_a_row_written_into_a_pending_range_is_not_slipped_into_the_resend(env: Env) -> None:
    simulate(env.db, 6)
    with sqlite3.connect(env.db) as conn:
        conn.execute("DELETE FROM sensor_readings WHERE id = 3")
    with pytest.raises(KeyboardInterrupt):
        env.uploader(sender=CrashAfterSend(env)).step()
    copy_row(env.db, 1, 3)  # the gap is filled while the uploader is down
    env.uploader().drain()
    first, resent, behind = received(env).envelopes
    assert resent.batch_id == first.batch_id and resent.records == first.records
    assert [r["sensor_data"]["id"] for r in behind.records] == [3]


def incompressible_text(size: int) -> str:
    return base64.b64encode(os.urandom(size * 3 // 4)).decode("ascii")


def test_an_oversize_row_is_quarantined_not_retried_forever(env: Env) -> None:
    simulate(env.db, 5)
    huge = incompressible_text(413 * 1024)
    with sqlite3.connect(env.db) as conn:
        conn.execute("UPDATE sensor_readings SET firmware_version = ? WHERE id = 3", (huge,))
        conn.execute("UPDATE sensor_readings SET model = ? WHERE id = 4", ("a" * 413 * 1024,))
    before = metric("sensorpipe_uploader_rows_quarantined_total", reason="too_large")
    env.uploader().drain()
    got = received(env)
    assert got.row_ids() == [1, 2, 4, 5], "a large row that compresses under the limit is sent"
    by_id = {r["sensor_data"]["id"]: r["sensor_data"] for e in got.envelopes for r in e.records}
    assert by_id[4]["model"] == "a" * 413 * 1024
    (line,) = quarantined(env)
    assert (line["row_id"], line["reason"]) == (3, "too_large")
    assert line["values"]["firmware_version"] == huge
    assert metric("sensorpipe_uploader_rows_quarantined_total", reason="too_large") == before + 1
    assert saved(env)["last_id"] == 5


def test_ids_zero_and_below_are_sent(env: Env) -> None:
    simulate(env.db, 5)
    copy_row(env.db, 1, 0)
    copy_row(env.db, 2, -1)
    env.uploader().drain()
    got = received(env)
    assert sorted(got.row_ids()) == [-1, 0, 1, 2, 3, 4, 5]
    rows = db_rows(env.db)
    for envelope in got.envelopes:
        for record in envelope.records:
            assert record["sensor_data"] == rows[record["sensor_data"]["id"]]
    assert [e.position.seq for e in got.envelopes if e.position] == [0, 1]


def test_a_gap_filled_later_is_found_counted_and_sent_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    simulate(env.db, 10)
    with sqlite3.connect(env.db) as conn:
        conn.execute("DELETE FROM sensor_readings WHERE id IN (4, 7)")
    uploader = env.uploader()
    uploader.drain()
    assert received(env).row_ids() == [1, 2, 3, 5, 6, 8, 9, 10]
    assert saved(env)["gaps"][-2:] == [[4, 4], [7, 7]]
    copy_row(env.db, 1, 7)
    copy_row(env.db, 2, -5)  # below everything ever read, on a used checkpoint
    before = metric("sensorpipe_uploader_rows_behind_checkpoint_total")
    with caplog.at_level(logging.WARNING, logger="edge.uploader"):
        uploader.drain()
    assert "ROWS BEHIND THE CHECKPOINT" in caplog.text
    (late,) = received(env).envelopes
    assert sorted(r["sensor_data"]["id"] for r in late.records) == [-5, 7]
    assert late.position is not None and late.position.seq == 1
    assert metric("sensorpipe_uploader_rows_behind_checkpoint_total") == before + 2
    assert uploader.health()["rows_behind_checkpoint"] == 2
    assert saved(env)["last_id"] == 10, "the checkpoint stays where it was"
    assert uploader.step() is None and received(env).envelopes == []
    assert env.uploader().drain().records == 0, "a restart does not send them again"
