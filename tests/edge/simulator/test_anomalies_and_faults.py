"""Anomalies are visible against the validation spec; faults are where the manifest says."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge.simulator.readings import PROFILES
from sensorpipe.config import ValidationSpec, load_validation_spec
from tests.edge.simulator.conftest import read_rows, simulate

METRICS = tuple(PROFILES)


@pytest.fixture(scope="module")
def spec() -> ValidationSpec:
    return load_validation_spec()


def beyond_threshold(spec: ValidationSpec, metric: str, value: float) -> bool:
    threshold = spec.anomaly_detection.thresholds[metric]
    return (threshold.low is not None and value < threshold.low) or (
        threshold.high is not None and value > threshold.high
    )


def within_spec_range(spec: ValidationSpec, metric: str, value: float) -> bool:
    field = spec.fields[metric]
    return (field.min is None or value >= field.min) and (field.max is None or value <= field.max)


def test_normal_bands_lie_inside_the_spec_thresholds(spec: ValidationSpec) -> None:
    for metric, profile in PROFILES.items():
        low, high = profile.normal
        assert not beyond_threshold(spec, metric, low)
        assert not beyond_threshold(spec, metric, high)


def test_anomalies_are_visible_and_still_valid(tmp_path: Path, spec: ValidationSpec) -> None:
    manifest = simulate(tmp_path / "s.db", count=6000, anomaly_probability=0.03)
    rows = {r["id"]: r for r in read_rows(tmp_path / "s.db")}
    anomalous = {a["id"]: a for a in manifest.anomalous}
    assert {a["type"] for a in anomalous.values()} == {"spike", "trend", "pattern", "noise"}
    for row_id, row in rows.items():
        for metric in METRICS:
            assert within_spec_range(spec, metric, row[metric]), (row_id, metric)
        entry = anomalous.get(row_id)
        if entry is None:
            assert (row["anomaly_flag"], row["status_code"], row["anomaly_type"]) == (0, 0, None)
            assert not any(beyond_threshold(spec, m, row[m]) for m in METRICS), row
            continue
        assert (row["anomaly_flag"], row["status_code"]) == (1, 1)
        assert row["anomaly_type"] == entry["type"]
        if entry["type"] == "spike":
            (metric,) = entry["metrics"]
            low, high = PROFILES[metric].normal
            assert not low <= row[metric] <= high, "a spike leaves the normal band"
            assert beyond_threshold(spec, metric, row[metric]), "and crosses the threshold"
        if entry["type"] == "trend":
            (metric,) = entry["metrics"]
            low, high = PROFILES[metric].normal
            assert not low < row[metric] < high, "a trend walks out of the normal band"
    spikes = [a for a in anomalous.values() if a["type"] == "spike"]
    assert {a["metrics"][0] for a in spikes} == set(METRICS), "every metric can spike"
    assert any(
        beyond_threshold(spec, a["metrics"][0], rows[i][a["metrics"][0]])
        for i, a in anomalous.items()
        if a["type"] == "trend"
    ), "trends end beyond the threshold"


def _timestamp_problem(text: str) -> str | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return "timestamp_format"
    if value.tzinfo is None:
        return "timestamp_timezone"
    return "timestamp_future" if value.year > 2100 else None


def test_invalid_rows_break_the_rule_the_manifest_names(
    tmp_path: Path, spec: ValidationSpec
) -> None:
    manifest = simulate(tmp_path / "s.db", count=4000, invalid_fraction=0.1)
    rows = {r["id"]: r for r in read_rows(tmp_path / "s.db")}
    assert sorted(manifest.valid + [i["id"] for i in manifest.invalid]) == sorted(rows)
    kinds = {i["kind"] for i in manifest.invalid}
    assert kinds == {
        "missing_field",
        "wrong_type",
        "absurd_value",
        "bad_timestamp",
        "flag_mismatch",
    }
    rules = {i["rule"] for i in manifest.invalid}
    assert {
        "required",
        "type",
        "range",
        "timestamp_format",
        "timestamp_timezone",
        "timestamp_future",
    } <= rules
    for entry in manifest.invalid:
        value = rows[entry["id"]][entry["field"]]
        rule = entry["rule"]
        if rule == "required":
            assert value is None and spec.fields[entry["field"]].required
        elif rule == "type":
            assert isinstance(value, str), "text stored in a numeric column"
        elif rule == "range":
            assert not within_spec_range(spec, entry["field"], value)
        elif rule in ("timestamp_format", "timestamp_timezone", "timestamp_future"):
            assert _timestamp_problem(value) == rule
        else:
            assert rule == "status_code_matches_flag"
            row = rows[entry["id"]]
            assert (row["status_code"], row["anomaly_flag"]) == (1, 0)
    for row_id in manifest.valid:
        row = rows[row_id]
        assert _timestamp_problem(row["timestamp"]) is None
        for metric in METRICS:
            assert isinstance(row[metric], float) and within_spec_range(spec, metric, row[metric])
        assert row["location"] and row["status_code"] == row["anomaly_flag"]


def test_late_rows_and_duplicates_are_where_the_manifest_says(tmp_path: Path) -> None:
    manifest = simulate(
        tmp_path / "s.db",
        count=3000,
        late_fraction=0.05,
        duplicate_fraction=0.05,
        late_delay_s=(20.0, 40.0),
        rate=10.0,
    )
    rows = {r["id"]: r for r in read_rows(tmp_path / "s.db")}
    assert len(rows) == manifest.rows == 3000
    assert len(manifest.late) > 50 and len(manifest.duplicate) > 50
    times = {i: datetime.fromisoformat(r["timestamp"]) for i, r in rows.items()}
    late = {entry["id"]: entry for entry in manifest.late}
    newest_before: datetime | None = None
    for row_id in sorted(rows):
        if row_id in late:
            assert newest_before is not None
            lag = (newest_before - times[row_id]).total_seconds()
            assert lag == pytest.approx(late[row_id]["lag_s"], abs=0.002)
            assert late[row_id]["timestamp"] == rows[row_id]["timestamp"]
        newest_before = max(filter(None, (newest_before, times[row_id])))
    lags = [entry["lag_s"] for entry in manifest.late]
    # Rows still held when the run ends are written then, with a shorter lag.
    assert sum(lag >= 19.9 for lag in lags) >= 0.8 * len(lags)
    assert all(lag > 0 for lag in lags)
    for entry in manifest.duplicate:
        copy, original = dict(rows[entry["id"]]), dict(rows[entry["duplicate_of"]])
        assert copy.pop("id") != original.pop("id")
        assert copy == original


def test_cli_writes_rows_and_manifest(tmp_path: Path) -> None:
    db, manifest_path = tmp_path / "cli.db", tmp_path / "m.json"
    command = [
        sys.executable,
        "-m",
        "edge.simulator",
        "--db",
        str(db),
        "--sensors",
        "10",
        "--locations",
        "3",
        "--count",
        "500",
        "--seed",
        "7",
        "--replay-start",
        "2025-08-18T00:00:00+00:00",
        "--invalid-fraction",
        "0.04",
        "--late-fraction",
        "0.02",
        "--duplicate-fraction",
        "0.02",
        "--anomaly-probability",
        "0.02",
        "--manifest",
        str(manifest_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "wrote 500 rows" in done.stderr
    data: dict[str, Any] = json.loads(manifest_path.read_text())
    assert data["rows"] == 500 and (data["first_id"], data["last_id"]) == (1, 500)
    assert data["counts"]["valid"] + data["counts"]["invalid"] == 500
    assert len(read_rows(db)) == 500
    bad = subprocess.run(
        [sys.executable, "-m", "edge.simulator", "--db", str(db), "--table", "users"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
