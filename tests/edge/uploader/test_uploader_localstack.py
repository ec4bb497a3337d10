"""The uploader as a real process against LocalStack: scenario switches, recreated
databases, a simulator writing at the same time, the CLI (kill -9: test_uploader_crash)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from sensorpipe.controller import PipelineController
from sensorpipe.devstack.processes import free_port
from tests.edge.uploader.conftest import Edge, rows_exactly_once, simulate, stop

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_a_scenario_switch_applies_from_the_next_batch(edge: Edge) -> None:
    controller = PipelineController(edge.pipeline.config.pipeline.controller_db)
    before = controller.active()
    simulate(edge.db, 100)
    port = free_port()
    process = edge.uploader("--batch-size", "50", "--metrics-port", str(port))
    edge.wait_for_checkpoint(100, process)
    switch = controller.set("schematized", by="test", reason="switch between batches")
    simulate(edge.db, 100, seed=2)
    edge.wait_for_checkpoint(200, process)
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:  # noqa: S310
        health = json.loads(response.read())
    assert (health["status"], health["checkpoint_row_id"], health["records"]) == ("ok", 200, 200)
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    assert "sensorpipe_uploader_checkpoint_row_id 200.0" in text
    assert 'sensorpipe_records_processed_total{outcome="sent",service="uploader"} 200.0' in text
    assert 'sensorpipe_scenario_info{scenario="schematized",service="uploader"} 1.0' in text
    assert 'sensorpipe_scenario_info{scenario="raw",service="uploader"} 0.0' in text
    assert stop(process) == 0, edge.log()
    received = edge.received()
    rows_exactly_once(received, range(1, 201))
    for envelope in received.envelopes:
        ids = [r["sensor_data"]["id"] for r in envelope.records]
        expected = (
            (before.scenario, before.config_version)
            if max(ids) <= 100
            else ("schematized", switch.current.config_version)
        )
        assert (envelope.scenario, envelope.config_version) == expected, ids


def test_a_recreated_database_is_detected_and_all_its_rows_sent(edge: Edge) -> None:
    simulate(edge.db, 300)
    edge.run_once("--batch-size", "100")
    first = edge.received()
    simulate(edge.db, 120, seed=9, recreate=True)
    log = edge.run_once("--batch-size", "100")
    assert "SOURCE DATABASE RECREATED" in log
    second = edge.received()
    rows_exactly_once(second, range(1, 121))
    assert not {e.batch_id for e in first.envelopes} & {e.batch_id for e in second.envelopes}
    assert json.loads(edge.checkpoint.read_text())["generation"] == 1


def test_reads_while_the_simulator_writes(edge: Edge) -> None:
    total = 3000
    manifest = edge.tmp / "manifest.json"
    uploader = edge.uploader("--batch-size", "200")
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.simulator",
            "--db",
            str(edge.db),
            "--count",
            str(total),
            "--rate",
            "600",
            "--speed",
            "1",
            "--seed",
            "5",
            "--commit-every",
            "20",
            "--replay-start",
            "2025-08-18T00:00:00+00:00",
            "--invalid-fraction",
            "0.02",
            "--late-fraction",
            "0.02",
            "--duplicate-fraction",
            "0.02",
            "--manifest",
            str(manifest),
        ],
        stderr=subprocess.PIPE,
    )
    progress_while_writing = set()
    while simulator.poll() is None:
        progress_while_writing.add(edge.last_id())
        time.sleep(0.05)
    assert simulator.returncode == 0, simulator.stderr.read() if simulator.stderr else ""
    assert any(0 < at < total for at in progress_while_writing), "sent while being written"
    edge.wait_for_checkpoint(total, uploader)
    assert stop(uploader) == 0, edge.log()
    received = edge.received()
    rows_exactly_once(received, range(1, total + 1))
    data: dict[str, Any] = json.loads(manifest.read_text())
    invalid_ids = {i["id"] for i in data["invalid"]}
    by_id = {
        r["sensor_data"]["id"]: r["sensor_data"] for e in received.envelopes for r in e.records
    }
    assert invalid_ids and invalid_ids <= set(by_id), "invalid rows are sent too"


def test_cli_dry_run_and_bad_arguments(edge: Edge) -> None:
    simulate(edge.db, 120)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.uploader",
            "--db",
            str(edge.db),
            "--once",
            "--dry-run",
            "--batch-size",
            "50",
            "--checkpoint",
            str(edge.checkpoint),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **edge.pipeline.env},
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["records"] for line in lines] == [50, 50, 20]
    assert "would send 120 records in 3 batches" in done.stderr
    assert not edge.checkpoint.exists()
    assert edge.received().envelopes == []
    bad = subprocess.run(
        [sys.executable, "-m", "edge.uploader", "--db", str(edge.db), "--table", "x; DROP"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
