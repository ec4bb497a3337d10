"""SIGTERM in the middle of a batch, with real service processes and the real LocalStack:
the process exits 0 in time, nothing is lost, nothing acknowledged is redone."""

from __future__ import annotations

import collections
import re
import signal
import time
from pathlib import Path

import pytest

from sensorpipe.aws import sqs_client
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.envelope import Envelope
from sensorpipe.runtime import EnvelopeProducer
from tests.conftest import Pipeline, make_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO_ROOT = Path(__file__).resolve().parents[3]
# The child must import this tree's library, not whichever one the venv installed.
CHILD_PYTHONPATH = f"{REPO_ROOT / 'shared'}:{REPO_ROOT}"
SHUTDOWN_TIMEOUT_S = 4
BATCH_DELAY_S = 0.4
MESSAGES = 40
VISIBILITY_S = 20


def _records(path: Path) -> list[tuple[str, str, int]]:
    """(verb, batch id, pid) for every line the sample service wrote."""
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]  # a line being written right now waits
    out = []
    for line in complete.splitlines():
        verb, batch_id, pid = line.split()
        out.append((verb, batch_id, int(pid)))
    return out


def _wait(condition: object, timeout_s: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _depth(pipeline: Pipeline, queue: str) -> int:
    attrs = sqs_client().get_queue_attributes(
        QueueUrl=pipeline.queue_url(queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def test_sigterm_mid_batch_loses_nothing_and_redoes_nothing_acknowledged(
    localstack: str, tmp_path: Path
) -> None:
    pipeline = make_pipeline(
        tmp_path,
        localstack,
        {
            # Long enough that a message not handed back could not be redone in time.
            "queues": {"visibility_timeout_seconds": VISIBILITY_S, "max_receive_count": 5},
            "runtime": {
                "wait_time_seconds": 1,
                "max_messages": 4,
                "shutdown_timeout_seconds": SHUTDOWN_TIMEOUT_S,
            },
        },
    )
    queue = pipeline.config.queues.ingest
    ids = [f"m{i:03d}" for i in range(MESSAGES)]
    EnvelopeProducer(sqs_client(), pipeline.queue_url(queue), queue, service="test").send(
        [Envelope(batch_id=b, scenario="raw", config_version=1, records=[{"id": b}]) for b in ids]
    )
    record_file = tmp_path / "records.log"
    env = {
        **pipeline.env,
        "PYTHONPATH": CHILD_PYTHONPATH,
        "SAMPLE_RECORD_FILE": str(record_file),
        "SAMPLE_BATCH_DELAY_S": str(BATCH_DELAY_S),
        "SENSORPIPE_LOG_FORMAT": "json",
    }
    module = "tests.sensorpipe.runtime.sample_service"

    first = ServiceProcess(module, env, tmp_path / "logs").start()
    try:
        # SIGTERM once some batches are done and another one is being worked on.
        in_hand: set[str] = set()

        def mid_batch() -> bool:
            lines = _records(record_file)
            acked = sum(1 for verb, _, _ in lines if verb == "acked")
            if acked < 8 or not lines or lines[-1][0] != "processing":
                return False
            in_hand.update(b for verb, b, _ in lines[-4:] if verb == "processing")
            return True

        _wait(mid_batch, 30, "the first process to be in the middle of a batch")
        # The real process serves its health and Prometheus metrics.
        health = first.health()
        assert health is not None
        assert (health["status"], health["service"], health["queue"]) == ("ok", "sample", queue)
        labels = f'queue="{queue}",service="sample"'
        assert re.search(
            rf"sensorpipe_messages_received_total\{{{labels}\}} [1-9]", first.metrics_text()
        )
        started = time.monotonic()
        code = first.terminate(timeout_s=BATCH_DELAY_S + SHUTDOWN_TIMEOUT_S + 5)
        elapsed = time.monotonic() - started
    finally:
        first.kill()
    assert code == 0, first.log_tail()
    assert elapsed < BATCH_DELAY_S + SHUTDOWN_TIMEOUT_S + 2, f"took {elapsed:.1f} s"
    after_first = _records(record_file)
    first_acked = {b for verb, b, _ in after_first if verb == "acked"}
    # The batch in hand was finished and acknowledged, not abandoned.
    assert in_hand <= first_acked
    assert len(first_acked) < MESSAGES, "the first process should not have drained the queue"

    # Messages the first process had received but not started were handed back
    # (visibility 0), so the second one gets them at once, not a visibility timeout later.
    assert "handed back" in first.log_file.read_text()
    second = ServiceProcess(module, env, tmp_path / "logs", args=["--log-format", "json"])
    second.start()
    try:
        _wait(
            lambda: {b for verb, b, _ in _records(record_file) if verb == "acked"} == set(ids),
            VISIBILITY_S - 5,
            "the second process to drain the queue",
        )
    finally:
        assert second.terminate(timeout_s=SHUTDOWN_TIMEOUT_S + 10) == 0, second.log_tail()

    lines = _records(record_file)
    acked = collections.Counter(b for verb, b, _ in lines if verb == "acked")
    processing = collections.Counter(b for verb, b, _ in lines if verb == "processing")
    assert first.process is not None and second.process is not None
    assert {pid for _, _, pid in lines} == {first.process.pid, second.process.pid}
    # Nothing lost: every message was processed and acknowledged.
    assert set(processing) == set(ids)
    # Nothing acknowledged was redone: each id was acknowledged exactly once, and the
    # second process never even started work on an id the first had acknowledged.
    assert acked == collections.Counter(ids)
    second_work = {
        b for verb, b, pid in lines if verb == "processing" and pid == second.process.pid
    }
    assert not (second_work & first_acked)
    assert _depth(pipeline, queue) == 0
    assert _depth(pipeline, QueueSettings.dlq_name(queue)) == 0


def test_sigint_while_idle_in_a_long_poll_exits_0_within_the_stated_time(
    localstack: str, tmp_path: Path
) -> None:
    # A 20 s long poll is open when the signal comes; shutdown must not wait for it.
    pipeline = make_pipeline(
        tmp_path,
        localstack,
        {"runtime": {"wait_time_seconds": 20, "shutdown_timeout_seconds": SHUTDOWN_TIMEOUT_S}},
    )
    env = {**pipeline.env, "PYTHONPATH": CHILD_PYTHONPATH, "SAMPLE_RECORD_FILE": "/dev/null"}
    service = ServiceProcess("tests.sensorpipe.runtime.sample_service", env, tmp_path / "logs")
    service.start()
    assert service.process is not None
    try:
        time.sleep(1.0)  # let the receiver enter its long poll
        started = time.monotonic()
        service.process.send_signal(signal.SIGINT)
        code = service.process.wait(timeout=SHUTDOWN_TIMEOUT_S + 10)
        elapsed = time.monotonic() - started
    finally:
        service.kill()
    assert code == 0, service.log_tail()
    assert elapsed < SHUTDOWN_TIMEOUT_S + 2, f"took {elapsed:.1f} s"
    assert "received SIGINT: stopping" in service.log_file.read_text()
