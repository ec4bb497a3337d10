"""DLQ replay against LocalStack: filters, preserved attributes, dry run, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorpipe.config import default_file
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.replay.cli import main
from tests.conftest import Pipeline
from tests.sensorpipe.replay.conftest import dead_letter, drain

pytestmark = pytest.mark.integration


def argv(pipeline: Pipeline, *args: str) -> list[str]:
    return ["dlq", "--config", str(pipeline.config_path), *args]


def test_filter_moves_only_matching_and_keeps_attributes(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = pipeline.config.queues.enriched
    expected = {
        f"bad-{i}": dead_letter(
            queue, f"bad-{i}", "schema: 'timestamp' is not a string", extra={"x": "1"}
        )
        for i in range(3)
    }
    for i in range(2):
        dead_letter(queue, f"slow-{i}", "S3 timeout writing object")
    dead_letter(queue, "redriven", None)

    assert main(argv(pipeline, "--queue", "enriched", "--filter-reason", "SCHEMA")) == 0

    out = capsys.readouterr().out
    assert "scanned 6 message(s); moved 3" in out
    assert "3  schema: 'timestamp' is not a string" in out
    moved = drain(queue)
    assert sorted(m["envelope"].batch_id for m in moved) == ["bad-0", "bad-1", "bad-2"]
    for message in moved:
        # Body and attributes as before the failure: failure-* gone, the rest intact.
        assert message["attributes"] == expected[message["envelope"].batch_id]
        assert message["envelope"].records[0]["sensor_data"]["sensor_id"] == "s-1"
    kept = drain(QueueSettings.dlq_name(queue))
    assert sorted(m["envelope"].batch_id for m in kept) == ["redriven", "slow-0", "slow-1"]
    assert {m["attributes"].get("failure-reason") for m in kept} == {
        "S3 timeout writing object",
        None,
    }


def test_dry_run_counts_and_moves_nothing(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = pipeline.config.queues.ingest
    for i in range(3):
        dead_letter(queue, f"b-{i}", "not a batch envelope: 'records' missing")
    dead_letter(queue, "r-0", None)

    assert main(argv(pipeline, "--queue", queue, "--dry-run")) == 0

    out = capsys.readouterr().out
    assert "would move 4 to" in out and "dry run: nothing was changed" in out
    assert "3  not a batch envelope: 'records' missing" in out
    assert "1  (none: moved by the redrive policy" in out
    assert drain(queue) == []
    # Released at the end of the scan: visible again at once, all four still there.
    assert len(drain(QueueSettings.dlq_name(queue))) == 4


def test_batch_id_filter_max_and_rate(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = pipeline.config.queues.aggregate_shard_names()[0]
    for i in range(4):
        dead_letter(queue, "wanted" if i < 3 else "other", f"reason {i}")

    code = main(
        argv(
            pipeline,
            "--queue",
            queue,
            "--filter-batch-id",
            "wanted",
            "--max",
            "2",
            "--rate",
            "20/s",
        )
    )

    assert code == 0
    assert "moved 2" in capsys.readouterr().out
    assert [m["envelope"].batch_id for m in drain(queue)] == ["wanted", "wanted"]
    left = drain(QueueSettings.dlq_name(queue))
    assert sorted(m["envelope"].batch_id for m in left) == ["other", "wanted"]


def test_unfiltered_replay_empties_the_dlq(pipeline: Pipeline) -> None:
    queue = pipeline.config.queues.validated
    for i in range(12):  # more than one receive batch
        dead_letter(queue, f"b-{i:02d}", "boom")

    assert main(argv(pipeline, "--queue", queue)) == 0

    assert len(drain(queue)) == 12
    assert drain(QueueSettings.dlq_name(queue)) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--queue", "nope"], "queue 'nope' is not a queue of this pipeline"),
        (["--queue", "ingest-dlq"], "name the source queue"),
        (["--queue", "ingest", "--rate", "fast"], "--rate 'fast': not a number"),
        (["--queue", "ingest", "--max", "0"], "--max '0': must be at least 1"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # Caught before any AWS call: no LocalStack needed.
    config = default_file("pipeline-config-v2.yaml")
    assert main(["dlq", "--config", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("sensorpipe-replay dlq: ") and err.count("\n") == 1


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["dlq", "--config", str(tmp_path / "none.yaml"), "--queue", "ingest"]) == 2
    assert "configuration error" in capsys.readouterr().err
