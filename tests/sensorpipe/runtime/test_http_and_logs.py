"""/metrics and /healthz, metric naming, and JSON log lines with service and batch ids."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import REGISTRY

from sensorpipe.runtime import Consumer, Message, Retry
from sensorpipe.runtime.http import serve_http
from sensorpipe.runtime.logs import JsonFormatter, configure_logging, log_context
from tests.sensorpipe.runtime.conftest import (
    WORK_DLQ,
    WORK_QUEUE,
    LoopRunner,
    ScriptedHandler,
    metric,
    send_batches,
    service_name,
    unit_settings,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_metrics_and_health_endpoints() -> None:
    state = {"status": "ok", "in_flight": 3}
    server = serve_http("127.0.0.1", 0, lambda: dict(state))
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        code, content_type, body = _get(f"{base}/metrics")
        assert code == 200
        assert content_type.startswith("text/plain")
        assert "sensorpipe_messages_received_total" in body

        code, content_type, body = _get(f"{base}/healthz")
        assert (code, content_type) == (200, "application/json")
        assert json.loads(body) == {"status": "ok", "in_flight": 3}

        state["status"] = "stopping"
        code, _, body = _get(f"{base}/healthz")
        assert code == 503
        assert json.loads(body)["status"] == "stopping"

        assert _get(f"{base}/elsewhere")[0] == 404
    finally:
        server.shutdown()


def test_metric_names_follow_the_conventions() -> None:
    names = {m.name for m in REGISTRY.collect() if m.name.startswith("sensorpipe")}
    assert names, "no sensorpipe metrics registered"
    for family in REGISTRY.collect():
        if not family.name.startswith("sensorpipe"):
            continue
        assert re.fullmatch(r"sensorpipe_[a-z0-9_]+", family.name)
        if family.type == "counter":
            # prometheus_client strips the _total suffix from the family name.
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.name.endswith(("duration", "latency", "lag")):
            raise AssertionError(f"{family.name}: name the base unit (_seconds)")
        for sample in family.samples:
            assert "sensor_id" not in sample.labels


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_service_and_batch_ids(
    moto_sqs: SQSClient,
    work_queue: str,
    run_loop: Callable[[Consumer], LoopRunner],
    restore_logging: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    service = service_name()
    configure_logging(service, json_lines=True)
    handler_log = logging.getLogger("tests.handler")

    def decide(message: Message) -> Any:
        handler_log.info("working on it")
        return Retry("not yet")

    send_batches(moto_sqs, work_queue, ["batch-A"])
    consumer = Consumer(
        moto_sqs,
        WORK_QUEUE,
        ScriptedHandler(decide),
        unit_settings(),
        service=service,
        dlq_name=WORK_DLQ,
    )
    runner = run_loop(consumer)
    runner.wait_for(
        lambda: (
            metric(
                "sensorpipe_messages_processed_total",
                service=service,
                queue=WORK_QUEUE,
                outcome="retry",
            )
            == 1
        )
    )
    runner.stop()

    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    assert lines, "nothing was logged"
    assert all(line["service"] == service for line in lines)
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in lines
    )
    own = next(line for line in lines if line["message"] == "working on it")
    assert own["batch_ids"] == ["batch-A"]
    assert own["level"] == "info"
    retry = next(line for line in lines if line["message"].startswith("retrying message"))
    assert retry["batch_id"] == "batch-A"
    assert retry["level"] == "warning"


def test_log_context_nests_and_is_restored() -> None:
    formatter = JsonFormatter("svc")

    def render(message: str) -> dict[str, Any]:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, message, None, None)
        return dict(json.loads(formatter.format(record)))

    with log_context(batch_ids=["a"]):
        with log_context(shard=2):
            inner = render("inner")
        outer = render("outer")
    after = render("after")
    assert inner["batch_ids"] == ["a"] and inner["shard"] == 2
    assert outer["batch_ids"] == ["a"] and "shard" not in outer
    assert "batch_ids" not in after
