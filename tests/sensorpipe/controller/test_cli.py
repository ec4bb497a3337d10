"""The command line, in-process: output formats, defaults, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sensorpipe.controller import PipelineController
from sensorpipe.controller.cli import main
from tests.sensorpipe.controller.conftest import clean_env


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_get_prints_a_readable_table(
    db_with_history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["--db", str(db_with_history), "get"], capsys)

    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["scenario", "aggregated"]
    assert "config version  3" in out
    assert "updated by      k8s_admin" in out
    assert "reason          Enable aggregation pipeline" in out


def test_get_json(db_with_history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--db", str(db_with_history), "get", "--format", "json"], capsys)

    payload = json.loads(out)
    assert code == 0
    assert payload["scenario"] == "aggregated"
    assert payload["config_version"] == 3
    assert payload["updated_by"] == "k8s_admin"
    assert payload["reason"] == "Enable aggregation pipeline"
    assert payload["updated_at"].endswith("+00:00")


def test_history_table_marks_the_active_row(
    db_with_history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["--db", str(db_with_history), "history", "--limit", "2"], capsys)

    lines = out.splitlines()
    assert code == 0
    assert lines[0].split()[:2] == ["VERSION", "SCENARIO"]
    assert lines[1].split()[:3] == ["*", "3", "aggregated"]
    assert lines[2].split()[:2] == ["2", "filtered"]
    assert len(lines) == 4  # header, two rows, legend


def test_history_json_is_newest_first(
    db_with_history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["--db", str(db_with_history), "history", "--format", "json"], capsys)

    assert code == 0
    assert [row["scenario"] for row in json.loads(out)] == ["aggregated", "filtered", "raw"]


def test_set_reports_the_change_and_the_no_op(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--db", str(db_path), "set", "lineage", "--by", "ops", "--reason", "audit trail"]

    code, out, _ = run(argv, capsys)
    assert code == 0
    assert out.strip() == "Scenario changed: raw -> lineage (config version 2, by ops: audit trail)"

    code, out, _ = run(argv, capsys)
    assert code == 0
    assert out.startswith("Scenario is already 'lineage' (config version 2")
    assert out.strip().endswith("nothing recorded.")
    assert len(PipelineController(db_path).history(10)) == 2


def test_db_defaults_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIPELINE_CONTROLLER_DB", str(tmp_path / "from-env.db"))
    assert run(["get"], capsys)[0] == 0
    assert (tmp_path / "from-env.db").exists()


def test_db_defaults_to_the_uploader_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UPLOADER_STATE_DIR", str(tmp_path))
    assert run(["set", "filtered", "--by", "ops"], capsys)[0] == 0
    assert PipelineController(tmp_path / "pipeline_config.db").active().scenario == "filtered"


def test_db_last_resort_is_state_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["get"], capsys)
    assert code == 1
    assert "state/pipeline_config.db: directory state does not exist" in err
    (tmp_path / "state").mkdir()
    assert run(["get"], capsys)[0] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["get", "--format", "xml"], "invalid choice: 'xml'"),
        (["history", "--limit", "many"], "invalid int value: 'many'"),
        (["history", "--limit", "0"], "history limit 0 is outside"),
        (["set", "filtered"], "the following arguments are required: --by"),
        (["monitor", "--interval", "0"], "poll interval 0.0 s is outside"),
        (["--lock-timeout", "-1", "get"], "lock timeout -1.0 s is outside"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    db_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(["--db", str(db_path), *argv], capsys)

    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("pipeline-controller: error: ")
    assert message in err


def _config_with_extra_scenario(tmp_path: Path) -> Path:
    import sensorpipe.config  # noqa: F401 - the scenarios come from the pipeline config
    from sensorpipe.config import default_file

    text = default_file("pipeline-config-v2.yaml").read_text()
    extra = (
        "scenarios:\n  cold-archive:\n    description: test only\n    destinations: [archival]\n"
    )
    path = tmp_path / "pipeline-config-v2.yaml"
    path.write_text(text.replace("scenarios:\n", extra, 1))
    return path


def test_scenarios_of_the_pipeline_config_can_be_set(
    db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config_with_extra_scenario(tmp_path)
    argv = ["--db", str(db_path), "set", "cold-archive", "--by", "ops"]

    code, _, err = run(argv, capsys)
    assert (code, "valid scenarios:" in err) == (2, True)

    code, out, err = run(["--config", str(config), *argv], capsys)
    assert (code, err) == (0, "")
    assert "raw -> cold-archive" in out


def test_config_from_the_environment(
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SENSORPIPE_PIPELINE_CONFIG", str(_config_with_extra_scenario(tmp_path)))
    assert run(["--db", str(db_path), "set", "cold-archive", "--by", "ops"], capsys)[0] == 0


def test_a_broken_pipeline_config_is_a_clear_usage_error(
    db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sensorpipe.config  # noqa: F401 - the scenarios come from the pipeline config

    missing = tmp_path / "nope.yaml"
    code, _, err = run(
        ["--db", str(db_path), "--config", str(missing), "set", "raw", "--by", "a"], capsys
    )

    assert code == 2
    assert err.count("\n") == 1
    assert "nope.yaml" in err
    assert not db_path.exists()  # nothing was created for a request that could not be checked


def test_python_dash_m_runs_the_same_command(db_with_history: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sensorpipe.controller", "--db", str(db_with_history), "get"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["scenario", "aggregated"]
