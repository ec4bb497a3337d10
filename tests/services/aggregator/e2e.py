"""Running real aggregator processes against LocalStack and reading what they wrote."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.objects import read_jsonl
from sensorpipe.runtime import EnvelopeProducer
from tests.conftest import Pipeline, make_pipeline
from tests.services.aggregator.dataset import Expected, Stream, instant_us, window_problems
from tests.window_pages import documents_of, is_page

# Short grace and idle flush keep the run fast; timestamps lie in the past, so the
# watermark moves with the data and a final idle flush closes the rest. Rows written
# 3 minutes late (conftest) are beyond the 2 minutes allowed: most go to late/, the
# others revise their windows.
GRACE_S, ALLOWED_S = 20.0, 120.0
E2E_WINDOWING = {
    "window_seconds": 60,
    "grace_seconds": GRACE_S,
    "idle_flush_seconds": 5,
    "allowed_lateness_seconds": ALLOWED_S,
    "output_prefix": "1-minute",
}


def e2e_pipeline(tmp_path: Path, endpoint: str, shards: int) -> Pipeline:
    return make_pipeline(
        tmp_path,
        endpoint,
        {
            "windowing": E2E_WINDOWING,
            "queues": {"visibility_timeout_seconds": 5, "aggregate_shards": shards},
            "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1},
        },
    )


def start_aggregator(pipeline: Pipeline, shard: int, log_dir: Path) -> ServiceProcess:
    return ServiceProcess(
        "services.aggregator", pipeline.env, log_dir, ["--shard", str(shard)]
    ).start()


def metric_sum(metrics: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def windows_closed(process: ServiceProcess) -> float:
    return metric_sum(process.metrics_text(), "sensorpipe_aggregator_windows_total", what="closed")


@dataclass
class Feeder:
    """Sends the stream to the shard queues at a steady pace, like a live router."""

    pipeline: Pipeline
    stream: Stream
    shards: int
    pause_s: float = 0.3
    sent: int = 0
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Feeder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            sqs = sqs_client()
            producers = []
            for name in self.pipeline.config.queues.aggregate_shard_names():
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                producers.append(
                    EnvelopeProducer(
                        sqs, url, name, max_body_bytes=256 * 1024, compress=True, service="test"
                    )
                )
            per_shard = self.stream.envelopes(self.shards)
            longest = max(len(p) for p in per_shard)
            for start in range(0, longest, 10):
                for shard, envelopes in enumerate(per_shard):
                    chunk = envelopes[start : start + 10]
                    if chunk:
                        producers[shard].send(chunk)
                        self.sent += len(chunk)
                time.sleep(self.pause_s)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout_s: float = 120) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "feeder did not finish"
        if self.error is not None:
            raise self.error


def wait_until_drained(pipeline: Pipeline, timeout_s: float = 120) -> None:
    """Every message of every shard queue deleted: all windows and late lines written."""
    sqs = sqs_client()
    urls = [pipeline.queue_url(n) for n in pipeline.config.queues.aggregate_shard_names()]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = 0
        for url in urls:
            attrs = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            left += int(attrs["ApproximateNumberOfMessages"])
            left += int(attrs["ApproximateNumberOfMessagesNotVisible"])
        if left == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{left} message(s) still in the shard queues after {timeout_s} s")


def wait_until_written(processes: list[ServiceProcess], timeout_s: float = 60) -> None:
    """Messages are acknowledged once checkpointed, windows may still be open: wait
    until every source went idle and each process wrote its last windows."""
    deadline = time.monotonic() + timeout_s
    while True:
        texts = [p.metrics_text() for p in processes]
        if all(metric_sum(t, "sensorpipe_aggregator_open_windows") == 0 for t in texts):
            return
        assert time.monotonic() < deadline, "windows still open after the sources went idle"
        time.sleep(0.3)


def _list_keys(bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix``, walking '/' levels: LocalStack 4.9's listing stops
    after the first 1,000 keys of a long flat listing (its continuation is empty), while
    each level here stays far below that."""
    s3 = s3_client()
    keys: list[str] = []
    pending = [prefix]
    while pending:
        current = pending.pop()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=current, Delimiter="/"
        )
        for page in pages:
            keys.extend(o["Key"] for o in page.get("Contents", []))
            pending.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return keys


def _all_objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
    keys = _list_keys(bucket, prefix)

    def fetch(key: str) -> bytes:
        body: bytes = s3_client_for_thread().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(keys, pool.map(fetch, keys), strict=True))


_local = threading.local()


def s3_client_for_thread() -> Any:
    if not hasattr(_local, "s3"):
        _local.s3 = s3_client()
    return _local.s3


@dataclass
class Output:
    windows: dict[tuple[str, int], dict[str, Any]]
    keys: dict[tuple[str, int], str]
    late: list[dict[str, Any]]
    metrics: list[str] = field(default_factory=list)  # of each process, before stopping


def read_output(pipeline: Pipeline) -> Output:
    windows: dict[tuple[str, int], dict[str, Any]] = {}
    keys: dict[tuple[str, int], str] = {}
    for key, body in _all_objects(pipeline.bucket("aggregated"), "1-minute/").items():
        assert is_page(key), key
        for doc in documents_of(body):
            ident = (doc["sensor_id"], instant_us(doc["window_start"]) // 1_000_000)
            assert ident not in windows, f"two pages hold window {ident}"
            windows[ident], keys[ident] = doc, key
    late = [
        line
        for body in _all_objects(pipeline.bucket("error"), "late/").values()
        for line in read_jsonl(body)
    ]
    return Output(windows, keys, late)


def run_to_completion(
    pipeline: Pipeline,
    stream: Stream,
    log_dir: Path,
    *,
    shards: int,
    during: Callable[[list[ServiceProcess]], None] | None = None,
) -> Output:
    """Start one aggregator per shard, feed the stream, optionally disturb them
    (``during``), wait until every message is acked, stop them cleanly, read back."""
    processes = [start_aggregator(pipeline, shard, log_dir) for shard in range(shards)]
    try:
        feeder = Feeder(pipeline, stream, shards).start()
        if during is not None:
            during(processes)
        feeder.join()
        wait_until_drained(pipeline)
        wait_until_written(processes)
        metrics = [process.metrics_text() for process in processes]
    finally:
        codes = []
        for process in processes:
            try:
                codes.append(process.terminate())
            except Exception:
                process.kill()
                raise
    assert codes == [0] * shards, [p.log_tail() for p in processes]
    for process in processes:
        log = process.log_file.read_text(errors="replace")
        assert not re.search(r"Traceback|ERROR", log), process.log_tail(60)
    out = read_output(pipeline)
    out.metrics = metrics
    return out


def assert_exact(out: Output, stream: Stream, expected: Expected) -> None:
    """Windows equal the independent computation (1e-9 relative, revisions included),
    every reading beyond the allowed lateness is in the side output exactly once with
    its reason, and every other reading in exactly one window."""
    problems = window_problems(out.windows, expected.windows)
    assert not problems, f"{len(problems)} problem(s): {problems[:10]}"
    late = Counter(line["reading_key"] for line in out.late)
    assert set(late) == expected.late, (
        f"{len(expected.late - set(late))} late reading(s) missing, "
        f"{len(set(late) - expected.late)} unexpected"
    )
    assert set(late.values()) == {1}, "a late reading is in the side output twice"
    assert {line["reason"] for line in out.late} == {"beyond_allowed_lateness"}
    assert all(line["detail"] for line in out.late)
    windowed = len(stream.rows) - len(expected.late)
    assert sum(doc["record_count"] for doc in out.windows.values()) == windowed
    members = [
        (doc["sensor_id"], doc["window_start"], offset)
        for doc in out.windows.values()
        for offset in doc["reading_offsets_us"]
    ]
    assert len(members) == len(set(members)) == windowed
