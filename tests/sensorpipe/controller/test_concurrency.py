"""Many real processes writing and reading one database at once, and a lock that never frees."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import random
import sqlite3
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from sensorpipe.controller import DatabaseLockedError, PipelineController
from sensorpipe.scenarios import BUILTIN_SCENARIOS
from tests.sensorpipe.controller.conftest import RunCli, fingerprint

WRITERS, SETS_PER_WRITER, READERS = 8, 50, 4


def _writer(db: str, index: int, start: Event, out: str) -> None:
    rng = random.Random(index)
    controller = PipelineController(db, lock_timeout_s=30)
    results, errors = [], []
    start.wait(30)
    for attempt in range(SETS_PER_WRITER):
        scenario = rng.choice(BUILTIN_SCENARIOS)
        reason = f"writer {index} set {attempt}"
        try:
            result = controller.set(scenario, f"writer-{index}", reason)
        except Exception as exc:  # recorded, asserted on by the test
            errors.append(repr(exc))
            continue
        results.append(
            {
                "scenario": scenario,
                "reason": reason,
                "changed": result.changed,
                "version": result.current.config_version,
                "current": result.current.scenario,
            }
        )
    Path(out).write_text(json.dumps({"results": results, "errors": errors}))


def _reader(db: str, start: Event, stop: Event, out: str) -> None:
    controller = PipelineController(db, lock_timeout_s=30)
    seen, errors = [], []
    start.wait(30)
    while not stop.is_set():
        try:
            active = controller.active()
        except Exception as exc:
            errors.append(repr(exc))
            continue
        seen.append((active.config_version, active.scenario, active.reason))
    Path(out).write_text(json.dumps({"seen": seen, "errors": errors}))


def test_eight_writers_and_four_readers_in_real_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "pipeline_config.db")
    PipelineController(db)  # the seed row: version 1, raw
    context = multiprocessing.get_context("spawn")
    start, stop = context.Event(), context.Event()
    writers = [
        context.Process(target=_writer, args=(db, i, start, str(tmp_path / f"w{i}.json")))
        for i in range(WRITERS)
    ]
    readers = [
        context.Process(target=_reader, args=(db, start, stop, str(tmp_path / f"r{i}.json")))
        for i in range(READERS)
    ]
    for process in writers + readers:
        process.start()
    start.set()
    for process in writers:
        process.join(timeout=120)
    stop.set()
    for process in readers:
        process.join(timeout=30)

    assert [p.exitcode for p in writers + readers] == [0] * (WRITERS + READERS)
    written = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(WRITERS)]
    read = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(READERS)]
    assert [w["errors"] for w in written] == [[]] * WRITERS  # no "database is locked" escaped
    assert [r["errors"] for r in read] == [[]] * READERS
    results = [result for w in written for result in w["results"]]
    assert len(results) == WRITERS * SETS_PER_WRITER

    # Every set that reported a change is in history exactly once, and no other row is.
    history = PipelineController(db).history(10_000)
    rows = {row.config_version: (row.scenario, row.reason) for row in history}
    changed = {r["version"]: (r["scenario"], r["reason"]) for r in results if r["changed"]}
    assert len(changed) == sum(r["changed"] for r in results)  # versions are unique
    assert rows == {1: ("raw", "initial default scenario"), **changed}
    assert len(history) == len(rows)
    # A set that changed nothing found its scenario already active and recorded nothing.
    unchanged = [r for r in results if not r["changed"]]
    assert all(r["current"] == r["scenario"] for r in unchanged)
    assert not {r["reason"] for r in unchanged} & {reason for _, reason in rows.values()}
    # Consecutive rows never repeat a scenario (a repeat would have been a no-op).
    ordered = [rows[version][0] for version in sorted(rows)]
    assert all(a != b for a, b in itertools.pairwise(ordered))

    # Readers only ever saw whole, committed rows, and never went back in time.
    for reader in read:
        seen = [tuple(entry) for entry in reader["seen"]]
        assert seen, "a reader never got to read"
        assert all(rows[version] == (scenario, reason) for version, scenario, reason in seen)
        versions = [version for version, _, _ in seen]
        assert versions == sorted(versions)


def _hold_write_lock(db: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_lock_that_never_frees_gives_a_clear_error(db_with_history: Path) -> None:
    before = fingerprint(db_with_history)
    controller = PipelineController(db_with_history, lock_timeout_s=0.5)
    holder = _hold_write_lock(db_with_history)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseLockedError) as caught:
            controller.set("raw", "ops", "while locked")
        waited = time.monotonic() - started
        # WAL: readers are not blocked by the writer that holds the lock.
        assert controller.active().scenario == "aggregated"
    finally:
        holder.rollback()
        holder.close()

    assert 0.5 <= waited < 5
    assert caught.value.attempts > 1
    assert "database is locked: gave up after" in str(caught.value)
    assert str(db_with_history) in str(caught.value)
    assert fingerprint(db_with_history) == before


def test_a_lock_that_frees_in_time_is_waited_for(db_with_history: Path) -> None:
    holder = _hold_write_lock(db_with_history)
    context = multiprocessing.get_context("spawn")
    result_file = db_with_history.with_suffix(".json")
    writer = context.Process(target=_set_and_report, args=(str(db_with_history), str(result_file)))
    writer.start()
    time.sleep(0.8)  # the writer is now retrying
    holder.rollback()
    holder.close()
    writer.join(timeout=30)

    assert writer.exitcode == 0
    assert json.loads(result_file.read_text()) == {"changed": True, "version": 4}


def _set_and_report(db: str, out: str) -> None:
    result = PipelineController(db, lock_timeout_s=20).set("lineage", "ops", "after waiting")
    Path(out).write_text(
        json.dumps({"changed": result.changed, "version": result.current.config_version})
    )


def test_cli_reports_a_stuck_lock_and_exits_1(db_with_history: Path, run_cli: RunCli) -> None:
    holder = _hold_write_lock(db_with_history)
    try:
        done = run_cli(
            ["--db", str(db_with_history), "--lock-timeout", "0.3", "set", "raw", "--by", "ops"]
        )
    finally:
        holder.rollback()
        holder.close()

    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "database is locked: gave up after" in done.stderr
