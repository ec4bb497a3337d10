"""The dashboard's JSON API, served by the real process over LocalStack."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from sensorpipe.devstack.processes import ServiceProcess
from tests.services.dashboard.conftest import MINUTES, SENSORS, Seeded

pytestmark = pytest.mark.integration


def get(process: ServiceProcess, path: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{process.port}{path}", timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_overview_shows_every_section(seeded: Seeded, dashboard: ServiceProcess) -> None:
    status, headers, body = get(dashboard, "/api/overview")
    assert status == 200 and headers["Content-Type"] == "application/json"
    data = json.loads(body)

    assert data["scenario"]["active"]["scenario"] == "aggregated"
    assert data["scenario"]["active"]["updated_by"] == "bob"
    assert [h["scenario"] for h in data["scenario"]["history"]][:2] == ["aggregated", "raw"]

    queues = {q["name"]: q for q in data["queues"]["queues"]}
    config = seeded.pipeline.config
    assert queues[f"{config.queues.validated}-dlq"]["visible"] == 1
    assert data["queues"]["dlq_messages"] == 1
    assert all(q["exists"] for q in queues.values())

    assert data["throughput"]["configured"] is False
    assert "SENSORPIPE_DASHBOARD_PROMETHEUS_URL" in data["throughput"]["hint"]

    [rejected] = data["rejected"]["records"]
    assert rejected["sensor_id"] == "DASH_A" and rejected["batch_id"] == "dash-bad"
    assert any("temperature" in e for e in rejected["errors"]), rejected

    [note] = data["notifications"]["notifications"]
    assert note["location"] == "plant-b" and note["anomaly_count"] == 3


def test_windows_newest_first_and_per_sensor(seeded: Seeded, dashboard: ServiceProcess) -> None:
    _, _, body = get(dashboard, "/api/windows")
    windows = json.loads(body)["windows"]
    assert len(windows) == seeded.windows == len(SENSORS) * MINUTES
    starts = [w["window_start"] for w in windows]
    assert starts == sorted(starts, reverse=True)
    newest = windows[0]
    assert newest["record_count"] == 2
    assert newest["metrics"]["temperature"]["count"] == 2
    assert newest["metrics"]["temperature"]["mean"] == pytest.approx(20.0 + MINUTES - 1 + 0.20)

    _, _, body = get(dashboard, "/api/windows?sensor_id=DASH_B")
    only_b = json.loads(body)["windows"]
    assert {w["sensor_id"] for w in only_b} == {"DASH_B"} and len(only_b) == MINUTES
    _, _, body = get(dashboard, "/api/windows?sensor_id=NOBODY")
    assert json.loads(body)["windows"] == []


def test_headers_errors_and_health(dashboard: ServiceProcess) -> None:
    status, headers, body = get(dashboard, "/")
    assert status == 200 and b"<title>sensorpipe dashboard</title>" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(dashboard, "/nope")[0] == 404
    status, _, body = get(dashboard, "/api/windows?sensor_id=" + "x" * 200)
    assert status == 400 and "longer than 128" in json.loads(body)["error"]
    assert json.loads(get(dashboard, "/healthz")[2])["status"] == "ok"
