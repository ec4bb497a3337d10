"""The uploader against moto's SQS: checkpointing, batch ids, stamps, recreated databases."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edge.uploader import (
    CheckpointError,
    SensorSource,
    SourceError,
    StampError,
    UnknownTableError,
)
from sensorpipe.envelope import Encoded, Envelope
from sensorpipe.runtime.errors import SendError
from sensorpipe.runtime.producer import EnvelopeProducer
from sensorpipe.scenarios import BUILTIN_SCENARIOS
from tests.edge.uploader.conftest import Env, db_rows, received, saved, simulate

if TYPE_CHECKING:
    pass


def test_every_row_once_in_order_then_checkpointed(env: Env) -> None:
    simulate(env.db, 1050, invalid_fraction=0.05, anomaly_probability=0.05)
    totals = env.uploader().drain()
    assert (totals.batches, totals.records) == (11, 1050)
    got = received(env)
    assert got.row_ids() == list(range(1, 1051))
    rows = db_rows(env.db)
    for envelope in got.envelopes:
        assert (envelope.scenario, envelope.config_version) == ("raw", 1)
        assert envelope.source == "node-a"
        assert [h["stage"] for h in envelope.hops] == ["uploader"]
        for record in envelope.records:
            assert record == {"sensor_data": rows[record["sensor_data"]["id"]]}
    state = saved(env)
    assert (state["last_id"], state["pending"], state["generation"]) == (1050, None, 0)
    assert env.uploader().drain().records == 0, "a restart sends nothing twice"
    assert received(env).envelopes == []


class FailingSender:
    def __init__(self, inner: EnvelopeProducer | None = None) -> None:
        self.inner = inner

    def send(self, envelopes: list[Envelope]) -> list[Encoded]:
        if self.inner is not None:
            self.inner.send(envelopes)  # accepted by SQS, then the process dies
            raise KeyboardInterrupt("crash between send and checkpoint")
        raise SendError("ingest", ["m0: throttled"])


def test_refused_send_leaves_the_checkpoint_and_is_resent_under_the_same_id(env: Env) -> None:
    simulate(env.db, 250)
    uploader = env.uploader(sender=FailingSender())
    with pytest.raises(SendError):
        uploader.step()
    state = saved(env)
    assert state["last_id"] == 0
    pending_id = state["pending"]["batch_id"]
    assert received(env).envelopes == []
    env.uploader().drain()
    got = received(env)
    assert got.envelopes[0].batch_id == pending_id
    assert got.row_ids() == list(range(1, 251))


def test_crash_after_send_resends_the_identical_batch_despite_new_rows(env: Env) -> None:
    simulate(env.db, 60)
    with pytest.raises(KeyboardInterrupt):
        env.uploader(sender=FailingSender(env.producer())).step()
    assert saved(env)["pending"]["last_id"] == 60
    simulate(env.db, 100, seed=9)  # the writer goes on while the uploader is down
    env.uploader().drain()
    got = received(env)
    copies = got.by_batch()
    resent = [batch for batch, envelopes in copies.items() if len(envelopes) == 2]
    assert len(resent) == 1 and resent[0].endswith("-000000000001-000000000060")
    assert len(got.row_ids()) == 160 + 60
    unique = got.deduplicated()
    assert sorted(r["sensor_data"]["id"] for e in unique for r in e.records) == list(range(1, 161))


def test_batch_ids_are_deterministic_and_name_the_source(env: Env, tmp_path: Path) -> None:
    simulate(env.db, 300)
    first = env.uploader(dry_run=True, out=io.StringIO())
    second = env.uploader(dry_run=True, checkpoint=tmp_path / "other.json")
    ids = [r.batch_id for r in iter(first.step, None)]
    assert ids == [r.batch_id for r in iter(second.step, None)]
    assert ids[0].startswith("node-a-") and ids[0].endswith("-g0-000000000001-000000000100")
    other_db = tmp_path / "other.db"
    simulate(other_db, 300, seed=5)
    other = env.uploader(db=other_db, dry_run=True, checkpoint=tmp_path / "x.json")
    assert other.step().batch_id != ids[0]  # type: ignore[union-attr]


def test_the_scenario_is_read_at_the_start_of_every_batch(env: Env) -> None:
    simulate(env.db, 300)
    uploader = env.uploader()
    assert uploader.step() is not None
    switch = env.controller.set("schematized", by="test", reason="between batches")
    uploader.step()
    uploader.step()
    stamps = [(e.scenario, e.config_version) for e in received(env).envelopes]
    version = switch.current.config_version
    assert stamps == [("raw", 1), ("schematized", version), ("schematized", version)]


def test_a_scenario_without_route_holds_rows_at_the_edge(env: Env) -> None:
    simulate(env.db, 50)
    env.controller.set("custom", by="test")
    with pytest.raises(StampError, match="no route"):
        env.uploader().step()
    assert received(env).envelopes == []
    assert not (env.tmp / "state" / "ckpt.json").exists()
    assert env.uploader(known=[*BUILTIN_SCENARIOS, "custom"]).drain().records == 50


@pytest.mark.parametrize(("old", "new"), [(300, 120), (100, 400)])
def test_a_recreated_database_is_detected_and_sent_whole(
    env: Env, caplog: pytest.LogCaptureFixture, old: int, new: int
) -> None:
    simulate(env.db, old)
    env.uploader().drain()
    first = received(env)
    simulate(env.db, new, seed=77, recreate=True)
    with caplog.at_level(logging.WARNING, logger="edge.uploader"):
        env.uploader().drain()
    assert "SOURCE DATABASE RECREATED" in caplog.text
    second = received(env)
    assert second.row_ids() == list(range(1, new + 1))
    assert all("-g1-" in e.batch_id for e in second.envelopes)
    assert not {e.batch_id for e in first.envelopes} & {e.batch_id for e in second.envelopes}
    state = saved(env)
    assert (state["generation"], state["last_id"]) == (1, new)


def test_a_running_uploader_follows_the_file_being_replaced(env: Env) -> None:
    uploader = env.uploader()
    simulate(env.db, 150)
    uploader.drain()
    simulate(env.db, 80, seed=8, recreate=True)  # deleted and recreated under the open handle
    uploader.drain()
    got = received(env)
    assert got.row_ids() == [*range(1, 151), *range(1, 81)]
    assert uploader.state.generation == 1


def test_pruned_old_rows_are_not_mistaken_for_a_new_database(env: Env) -> None:
    simulate(env.db, 300)
    env.uploader().drain()
    received(env)
    with sqlite3.connect(env.db) as conn:
        conn.execute("DELETE FROM sensor_readings WHERE id <= 300")
    simulate(env.db, 40, seed=3)
    env.uploader().drain()
    assert received(env).row_ids() == list(range(301, 341))
    assert saved(env)["generation"] == 0


def test_sensor_data_table_and_size_split(env: Env) -> None:
    simulate(env.db, 400, table="sensor_data")
    env.uploader(table="sensor_data", batch_size=400, max_bytes=16 * 1024).drain()
    got = received(env)
    assert len(got.envelopes) > 1, "a batch over max bytes is split"
    bases = {e.batch_id.split(".")[0] for e in got.envelopes}
    assert len(bases) == 1 and bases.pop().endswith("-g0-000000000001-000000000400")
    assert all(e.batch_id.count(".") >= 1 for e in got.envelopes), "parts are .0/.1 children"
    assert sorted(got.row_ids()) == list(range(1, 401))
    assert "synced" in got.envelopes[0].records[0]["sensor_data"]


def test_a_blob_in_a_column_is_sent_visibly_not_dropped(env: Env) -> None:
    simulate(env.db, 3)
    with sqlite3.connect(env.db) as conn:
        conn.execute("UPDATE sensor_readings SET serial_number = ? WHERE id = 2", (b"\x00\xff",))
    env.uploader().drain()
    records = {
        r["sensor_data"]["id"]: r["sensor_data"] for e in received(env).envelopes for r in e.records
    }
    assert records[2]["serial_number"] == "base64:AP8="
    assert sorted(records) == [1, 2, 3]


def test_dry_run_sends_and_saves_nothing(env: Env) -> None:
    simulate(env.db, 250)
    out = io.StringIO()
    totals = env.uploader(dry_run=True, out=out).drain()
    assert totals.records == 250
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["first_id"], x["last_id"]) for x in lines] == [(1, 100), (101, 200), (201, 250)]
    assert received(env).envelopes == []
    assert not (env.tmp / "state").exists()


def test_table_names_come_from_an_allow_list(env: Env) -> None:
    for name in ("users", "sensor_readings; DROP TABLE sensor_readings", "SENSOR_READINGS"):
        with pytest.raises(UnknownTableError):
            SensorSource(env.db, name)


def test_missing_database_and_table_are_clear_errors(env: Env) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        env.uploader().step()
    sqlite3.connect(env.db).close()
    with pytest.raises(SourceError, match="no table 'sensor_readings'"):
        env.uploader().step()


def test_checkpoint_is_replaced_atomically_and_checked_on_load(env: Env) -> None:
    simulate(env.db, 120)
    env.uploader().drain()
    state_dir = env.tmp / "state"
    names = sorted(p.name for p in state_dir.iterdir())
    assert names == ["ckpt.json", "ckpt.scenario.json"], "no temporary file left"
    state = saved(env)
    assert state["last"] == {
        "id": 120,
        "timestamp": db_rows(env.db)[120]["timestamp"],
        "sensor_id": db_rows(env.db)[120]["sensor_id"],
    }
    (state_dir / "ckpt.json").write_text('{"version": 1, "last_id": ')
    with pytest.raises(CheckpointError, match="unreadable"):
        env.uploader()


def test_batches_are_numbered_in_row_order_per_generation(env: Env) -> None:
    """Position (stream, seq): 0, 1, 2, ... per generation; a resent batch keeps its
    number; a recreated database starts a new stream at 0."""
    simulate(env.db, 250)
    with pytest.raises(SendError):
        env.uploader(sender=FailingSender()).step()  # batch 0 written down, not sent
    env.uploader().drain()
    first = received(env).envelopes
    positions = [e.position for e in first]
    assert all(p is not None for p in positions)
    streams = {p.stream for p in positions if p is not None}
    assert len(streams) == 1 and next(iter(streams)).startswith("node-a-")
    assert [p.seq for p in positions if p is not None] == [0, 1, 2]
    assert [p.part for p in positions if p is not None] == ["", "", ""]
    # Each batch id names its stream.
    named = zip(first, positions, strict=True)
    assert all(e.batch_id.startswith(f"{p.stream}-") for e, p in named if p)
    simulate(env.db, 120, seed=4)  # more rows: numbering goes on
    env.uploader().drain()
    assert [e.position.seq for e in received(env).envelopes if e.position] == [3, 4]
    env.db.unlink()
    simulate(env.db, 50, seed=5)  # a new file: a new generation, a new stream
    env.uploader().drain()
    (again,) = received(env).envelopes
    assert again.position is not None and again.position.seq == 0
    assert again.position.stream not in streams


def test_split_batches_carry_split_paths_that_cover_the_batch(env: Env) -> None:
    simulate(env.db, 400)
    env.uploader(batch_size=400, max_bytes=9_000).drain()
    parts = [e.position for e in received(env).envelopes]
    assert len(parts) > 2
    assert {p.seq for p in parts if p} == {0}
    paths = [p.part for p in parts if p]
    # The pieces are halves of halves: their sizes 2^-len(path) add up to the batch.
    assert sum(2.0 ** -len(path) for path in paths) == 1.0
    assert not any(a != b and b.startswith(a) for a in paths for b in paths)
