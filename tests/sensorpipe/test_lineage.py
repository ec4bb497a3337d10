"""Lineage inside Bacalhau (its variables set) and outside it (identity file, local id)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sensorpipe.columns import rows_of, table_of
from sensorpipe.envelope import Envelope
from sensorpipe.lineage import (
    LineageError,
    enrich_envelope,
    hash_job_id,
    local_node_id,
    process_lineage,
    resolve_node_id,
)

BACALHAU = {
    "BACALHAU_NODE_ID": "n-7f3a",
    "BACALHAU_JOB_ID": "j-2b9c0e11-4d2f",
    "BACALHAU_EXECUTION_ID": "e-5d1c",
}


@pytest.fixture(autouse=True)
def _in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default identity file is relative to the working directory.
    monkeypatch.chdir(tmp_path)


def _lineage(env: dict[str, str]) -> dict[str, object]:
    return process_lineage(
        stage="enricher", pipeline_name="sensorpipe", pipeline_version="2.0.0", env=env
    ).as_dict()


def test_inside_bacalhau_the_task_variables_are_used() -> None:
    lineage = _lineage(BACALHAU)
    assert lineage["node_id"] == "n-7f3a"
    assert lineage["node_id_source"] == "bacalhau"
    expected_hash = hashlib.sha256(b"j-2b9c0e11-4d2f").hexdigest()[:16]
    assert lineage["job_id_hash"] == expected_hash
    assert "j-2b9c0e11" not in json.dumps(lineage)  # the job id itself is not published
    assert lineage["execution_id"] == "e-5d1c"
    assert lineage["execution_id_source"] == "bacalhau"
    assert lineage["pipeline_version"] == "2.0.0"


def test_outside_bacalhau_there_is_no_job_and_one_execution_per_run() -> None:
    first, second = _lineage({}), _lineage({})
    assert first["job_id_hash"] is None
    assert first["execution_id_source"] == "local-run"
    assert first["execution_id"] == second["execution_id"]  # same process, same run
    assert first["node_id_source"] == "local"


def test_each_local_process_run_gets_its_own_execution_id(tmp_path: Path) -> None:
    code = (
        "from sensorpipe.lineage import process_lineage;"
        "print(process_lineage(stage='s', pipeline_name='p', pipeline_version='1', env={})"
        ".execution_id)"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(runs) == 2


def test_local_node_id_is_stable_and_derived_from_host_and_machine() -> None:
    assert local_node_id() == local_node_id()
    assert local_node_id("host-a", "m1") == local_node_id("host-a", "m1")
    assert local_node_id("host-a", "m1") != local_node_id("host-b", "m1")
    assert local_node_id("host-a", "m1") != local_node_id("host-a", "m2")
    assert local_node_id("host-a", "m1").startswith("local-")


def test_local_node_id_is_the_same_in_another_process() -> None:
    code = "from sensorpipe.lineage import local_node_id; print(local_node_id())"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == local_node_id()


def test_default_identity_file_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "node-identity.json").write_text(json.dumps({"node_id": "edge-chi-01"}))
    assert resolve_node_id({}) == ("edge-chi-01", "identity-file")


def test_configured_identity_file_with_id_field(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "identity.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"id": "SENSOR_CHI_01", "location": "Chicago"}))
    env = {"SENSORPIPE_NODE_IDENTITY_FILE": str(path)}
    assert resolve_node_id(env) == ("SENSOR_CHI_01", "identity-file")


def test_bacalhau_node_id_wins_over_the_identity_file(tmp_path: Path) -> None:
    (tmp_path / "node-identity.json").write_text(json.dumps({"node_id": "edge-chi-01"}))
    assert resolve_node_id({"BACALHAU_NODE_ID": "n-1"}) == ("n-1", "bacalhau")


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not valid JSON"), ('{"name": "x"}', "no 'node_id' or 'id'"), ("[1]", "no")],
)
def test_a_bad_identity_file_is_a_clear_error(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "identity.json"
    path.write_text(content)
    with pytest.raises(LineageError, match=problem):
        resolve_node_id({"SENSORPIPE_NODE_IDENTITY_FILE": str(path)})


def test_a_configured_identity_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LineageError, match="cannot read"):
        resolve_node_id({"SENSORPIPE_NODE_IDENTITY_FILE": str(tmp_path / "absent.json")})


def test_hash_job_id_of_nothing_is_none() -> None:
    assert hash_job_id(None) is None
    assert hash_job_id("") is None
    assert hash_job_id("abc") == hashlib.sha256(b"abc").hexdigest()[:16]


def test_enrich_envelope_keeps_the_reading_and_adds_the_batch_context() -> None:
    process = process_lineage(
        stage="enricher", pipeline_name="sensorpipe", pipeline_version="2.0.0", env=BACALHAU
    )
    readings = [{"id": 7, "sensor_id": "S1", "temperature": 21.5}, {"id": 8, "sensor_id": "S2"}]
    envelope = Envelope(
        batch_id="edge-1-000042",
        scenario="lineage",
        config_version=3,
        records=[{"sensor_data": dict(r)} for r in readings],
        source="edge-1",
        hops=[{"stage": "uploader", "at": "2025-08-18T10:00:00.000+00:00"}],
    )
    out = enrich_envelope(envelope, process, processed_at="2025-08-18T10:00:01.000+00:00")
    assert [r["sensor_data"] for r in out.records] == readings
    lineage = out.records[1]["lineage"]
    assert lineage["source_row_id"] == 8
    assert out.records[0]["lineage"]["source_row_id"] == 7
    assert lineage["batch_id"] == "edge-1-000042"
    assert lineage["scenario"] == "lineage"
    assert lineage["config_version"] == 3
    assert lineage["source"] == "edge-1"
    assert lineage["processed_at"] == "2025-08-18T10:00:01.000+00:00"
    assert lineage["node_id"] == "n-7f3a"
    assert [h["stage"] for h in lineage["hops"]] == ["uploader", "enricher"]
    assert all(h["at"] for h in lineage["hops"])
    assert [h["stage"] for h in out.hops] == ["uploader", "enricher"]
    assert envelope.hops == [{"stage": "uploader", "at": "2025-08-18T10:00:00.000+00:00"}]
    assert "lineage" not in envelope.records[0]  # the input is not modified


def test_a_record_without_sensor_data_gets_lineage_without_row_id() -> None:
    process = process_lineage(stage="e", pipeline_name="p", pipeline_version="1", env={})
    envelope = Envelope(batch_id="b", scenario="lineage", config_version=1, records=[{"x": 1}])
    out = enrich_envelope(envelope, process)
    assert out.records[0]["lineage"]["source_row_id"] is None
    assert out.records[0]["x"] == 1


@pytest.mark.parametrize(
    "records",
    [
        [{"sensor_data": {"id": i, "t": 1.5}} for i in range(1, 6)],
        [{"sensor_data": {"id": 1}}, {"sensor_data": {"t": 2.0}}, {"sensor_data": None}],
        [{"sensor_data": {"id": 1}}, {"sensor_data": {"id": "7"}}],  # ids of mixed types
        [{"sensor_data": {"id": 1}}, {"other": 1}],  # a record without sensor_data
        [{"sensor_data": {"id": 1}, "lineage": {"old": True}}],  # replaced, not merged
        [{"sensor_data": [1, 2]}, {"sensor_data": {"id": 3}}],
    ],
)
def test_a_columnar_batch_gets_the_lineage_the_dict_path_gives(
    records: list[dict[str, Any]],
) -> None:
    lineage = process_lineage(stage="enricher", pipeline_name="p", pipeline_version="1", env={})
    oracle = [
        {**r, "lineage": {**lineage.as_dict(), "source_row_id": None}} for r in records
    ]  # shape only; the dict path below fills the batch's values
    by_dicts = enrich_envelope(
        Envelope("b-1", "lineage", 2, [dict(r) for r in records], source="e"),
        lineage,
        processed_at="2026-12-01T00:00:00.000+00:00",
    )
    by_columns = enrich_envelope(
        Envelope("b-1", "lineage", 2, table=table_of(records), source="e"),
        lineage,
        processed_at="2026-12-01T00:00:00.000+00:00",
    )
    assert rows_of(by_columns.table) == by_dicts.records
    assert [set(r) for r in by_dicts.records] == [set(r) for r in oracle]
    assert [r["lineage"]["source_row_id"] for r in by_dicts.records] == [
        r["sensor_data"].get("id") if isinstance(r.get("sensor_data"), dict) else None
        for r in records
    ]
    assert by_columns.meta == by_dicts.meta and by_columns.hops == by_dicts.hops


def test_a_batch_of_sensor_rows_is_stamped_without_leaving_columns() -> None:
    lineage = process_lineage(stage="enricher", pipeline_name="p", pipeline_version="1", env={})
    rows = [{"sensor_data": {"id": i}} for i in range(1, 4)]
    out = enrich_envelope(Envelope("b-1", "lineage", 2, table=table_of(rows)), lineage)
    assert out.columnar
    assert out.table.schema.field("lineage").type.field("source_row_id").type == pa.int64()
    assert [r["lineage"]["source_row_id"] for r in rows_of(out.table)] == [
        1,
        2,
        3,
    ]
