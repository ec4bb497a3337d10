"""The AWS call log of ``sensorpipe.aws``: one JSON line per call with the process,
service, operation and resource, appended safely from threads and processes, and no
hook at all when the variable is unset (moto in place of AWS)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensorpipe.aws import (
    CALL_LOG_ENV,
    SERVICE_NAME_ENV,
    CallLog,
    call_resource,
    name_of,
    s3_client,
    sqs_client,
)
from tests.moto_stack import mocked_aws


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with mocked_aws(monkeypatch):
        yield


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_call_is_one_line_with_its_resource(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(CALL_LOG_ENV, str(log))
    monkeypatch.setenv(SERVICE_NAME_ENV, "validator")
    s3, sqs = s3_client(), sqs_client()
    s3.create_bucket(Bucket="b-error")
    s3.put_object(Bucket="b-error", Key="rejected/x.jsonl.gz", Body=b"{}")
    s3.list_objects_v2(Bucket="b-error", Prefix="rejected/")
    url = sqs.create_queue(QueueName="q-validated")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "0", "MessageBody": "x"}])
    got = [{k: v for k, v in e.items() if k != "pid"} for e in lines(log)]
    base = {"process": "validator"}
    assert got == [
        {**base, "service": "s3", "operation": "CreateBucket", "bucket": "b-error"},
        {**base, "service": "s3", "operation": "PutObject", "bucket": "b-error",
         "key": "rejected/x.jsonl.gz"},
        {**base, "service": "s3", "operation": "ListObjectsV2", "bucket": "b-error",
         "prefix": "rejected/"},
        {**base, "service": "sqs", "operation": "CreateQueue", "queue": "q-validated"},
        {**base, "service": "sqs", "operation": "SendMessageBatch", "queue": "q-validated"},
    ]  # fmt: skip


def test_unset_registers_no_hook(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooked: list[str] = []
    real = CallLog.hook

    def spy(self: CallLog, service: str) -> object:
        hooked.append(service)
        return real(self, service)

    monkeypatch.setattr(CallLog, "hook", spy)
    monkeypatch.delenv(CALL_LOG_ENV, raising=False)
    s3_client().list_buckets()
    sqs_client().list_queues()
    assert hooked == []
    monkeypatch.setenv(CALL_LOG_ENV, str(tmp_path / "calls.jsonl"))
    s3_client()
    sqs_client()
    assert hooked == ["s3", "sqs"]


def test_lines_from_threads_are_whole(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(CALL_LOG_ENV, str(log))
    s3 = s3_client()
    s3.create_bucket(Bucket="b-raw")

    def put(worker: int) -> None:
        for i in range(20):
            s3.put_object(Bucket="b-raw", Key=f"raw/{worker}/{'k' * 300}/{i}", Body=b"x")

    threads = [threading.Thread(target=put, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = sorted(str(e["key"]) for e in lines(log) if e["operation"] == "PutObject")
    assert keys == sorted(f"raw/{w}/{'k' * 300}/{i}" for w in range(6) for i in range(20))


def test_processes_append_to_one_file(tmp_path: Path) -> None:
    """Several processes, each with its own name, append whole lines to the same log."""
    log = tmp_path / "calls.jsonl"
    script = (
        "from sensorpipe.aws import CallLog, process_name\n"
        f"log = CallLog({str(log)!r}, process_name())\n"
        "for i in range(200): log.write({'process': log.process, 'i': i, 'pad': 'p' * 500})\n"
    )
    env = {"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env={**env, SERVICE_NAME_ENV: f"p{n}"})
        for n in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    got = lines(log)
    assert sorted((e["process"], e["i"]) for e in got) == sorted(
        (f"p{n}", i) for n in range(4) for i in range(200)
    )


@pytest.mark.parametrize(
    ("main_module", "program", "name"),
    [
        ("services.enricher.__main__", "", "enricher"),
        ("services.aggregator.__main__", "", "aggregator"),
        ("edge.uploader.__main__", "", "uploader"),
        ("sensorpipe.replay.__main__", "", "replay"),
        ("sensorpipe.provisioning.cli", "", "provisioner"),
        (None, "/venv/bin/sensorpipe-replay", "replay"),
        (None, "/venv/bin/sensorpipe-provision", "provisioner"),
    ],
)
def test_process_name_is_the_module_run(main_module: str | None, program: str, name: str) -> None:
    assert name_of(main_module, program) == name


def test_sqs_resource_is_the_queue_name_of_the_url() -> None:
    url = "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/p-notify-1"
    assert call_resource("sqs", {"QueueUrl": url, "Entries": []}) == {"queue": "p-notify-1"}
    assert call_resource("sqs", {"QueueName": "p-ingest-dlq"}) == {"queue": "p-ingest-dlq"}
    assert call_resource("s3", {"Bucket": "b", "Key": "k", "Body": b""}) == {
        "bucket": "b",
        "key": "k",
    }


class _ContinueThenClose:
    """An HTTP server that answers every request's headers with the status line of a
    ``100 Continue`` and then closes the connection cleanly (a response cut after its
    first line, as a failing network does): the fault that made botocore spin forever."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                self.requests.append(head)
                conn.sendall(b"HTTP/1.1 100 Continue\r\n")

    def close(self) -> None:
        self._server.close()


def test_an_upload_whose_connection_closes_after_100_continue_fails_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = _ContinueThenClose()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    outcome: list[BaseException | None] = []

    def upload() -> None:
        try:
            s3_client().put_object(Bucket="b", Key="k", Body=b"x" * 4096)
            outcome.append(None)
        except Exception as exc:  # what botocore raises is the point
            outcome.append(exc)

    worker = threading.Thread(target=upload, daemon=True)
    worker.start()
    worker.join(timeout=60)  # six attempts with back-off take a few seconds
    server.close()
    assert not worker.is_alive(), "put_object hung after '100 Continue' and a closed connection"
    assert outcome and isinstance(outcome[0], Exception), outcome
    assert server.requests, "the client never reached the server"
    assert all(b"expect:" not in r.lower() for r in server.requests), server.requests[0]
