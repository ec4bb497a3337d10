"""What the benchmarks that run a live pipeline share: the tools they start and stop by
pid, /metrics samples, queue depths, and the receiver of the notifications FIFO queue.

``bench_window_latency`` and ``bench_e2e`` start services (``ServiceProcess``) and tools
(``Command``: simulator, uploader, forwarders) through :class:`Started`, which stops
everything in reverse order whatever happens; ``bench_notifier`` and ``bench_e2e``
receive notifications with :class:`Inbox`.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

import orjson

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.devstack.localstack import LocalStackHost, aws_environment
from sensorpipe.devstack.processes import ServiceProcess, ServiceStartError

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from mypy_boto3_sqs import SQSClient


# -- /metrics ----------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def begin_run() -> LocalStackHost | None:
    """How every live benchmark starts: a SIGTERM unwinds through the caller's
    ``finally`` (which stops everything it started), the command line is printed, and
    unless ``AWS_ENDPOINT_URL`` is set the AWS variables point at LocalStack on this
    host: started here (returned, the caller stops it) or one already answering (None:
    reused, not ours to stop)."""

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)
    if "AWS_ENDPOINT_URL" in os.environ:
        return None
    local = LocalStackHost(port=int(os.environ.get("LOCALSTACK_PORT", "4566")))
    started = local.start()
    os.environ.update(aws_environment(local.endpoint))
    return local if started else None


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format: (name, labels, value) of every sample line."""
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group(2) or ""))
            out.append((match.group(1), labels, float(match.group(3))))
    return out


def metric_total(text: str, name: str, **labels: str) -> float:
    return sum(
        value
        for sample, have, value in metric_samples(text)
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


class Stoppable(Protocol):
    """A thread of the run that ends once its ``stop`` event is set."""

    stop: threading.Event

    def join(self, timeout: float | None = None) -> None: ...


# -- processes -------------------------------------------------------------------------


@dataclass
class Command:
    """A tool started here (simulator, uploader), stopped by its pid."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Command:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    return Command(name, process, log)


@dataclass
class Started:
    """Everything this run started, to stop in reverse order whatever happens."""

    services: dict[str, ServiceProcess] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)
    watcher: Stoppable | None = None  # a thread of the run (a bucket watcher, an inbox)

    def start_services(self, services: list[ServiceProcess]) -> None:
        # Registered before starting: a start that times out kills its own process, and
        # one that raises still leaves the others to be stopped.
        for service in services:
            self.services[service.name] = service
        with ThreadPoolExecutor(len(services)) as pool:
            for done in [pool.submit(s.start) for s in services]:
                done.result()

    def stop_all(self) -> list[str]:
        problems = []
        if self.watcher is not None:
            self.watcher.stop.set()
            self.watcher.join(timeout=10)
        for name, command in reversed(list(self.commands.items())):
            try:
                command.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                problems.append(f"{name}: {exc}")
        running = [(n, s) for n, s in reversed(self.services.items()) if s.process is not None]
        for _, service in running:  # all at once: each takes up to its shutdown timeout
            with suppress(ServiceStartError):  # terminate() below says so again
                service.send_signal(signal.SIGTERM)  # the service, not a launcher
        for name, service in running:
            try:
                service.terminate()  # waits for the exit (by pid), kills after 45 s
            except Exception as exc:  # stop the others whatever happened
                problems.append(f"{name}: {exc}")
                service.kill()
        return problems


# -- queues ------------------------------------------------------------------------------


def depth(sqs: SQSClient, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def delete_pipeline(prefix: str, rounds: int = 200) -> None:
    """Remove a pipeline's queues and buckets (every object version) from LocalStack.
    Versions are deleted 1,000 a call, listing again until none is left: LocalStack does
    not paginate some listings past 1,000 keys."""
    sqs, s3 = sqs_client(), s3_client()
    for url in sqs.list_queues(QueueNamePrefix=f"{prefix}-").get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=url)
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        if not name.startswith(f"{prefix}-"):
            continue
        for _ in range(rounds):
            page = s3.list_object_versions(Bucket=name, MaxKeys=1000)
            items: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            if not items:
                break
            s3.delete_objects(Bucket=name, Delete={"Objects": items, "Quiet": True})
        s3.delete_bucket(Bucket=name)


# -- notifications -----------------------------------------------------------------------


@dataclass
class Note:
    location: str
    reading_keys: list[str]
    arrived: float  # wall clock
    accepted: float  # SQS SentTimestamp


class Inbox(threading.Thread):
    """Long-polls the notifications FIFO queue and deletes what it received."""

    def __init__(self, url: str) -> None:
        super().__init__(name="inbox", daemon=True)
        self.url = url
        self.notes: list[Note] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the caller
            self.error = exc

    def _run(self) -> None:
        sqs = sqs_client()
        while not self.stop.is_set():
            got = sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                AttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            arrived = time.time()
            if not got:
                continue
            for message in got:
                body = orjson.loads(message["Body"])
                accepted = int(message["Attributes"]["SentTimestamp"]) / 1000
                self.notes.append(
                    Note(str(body["location"]), list(body["reading_keys"]), arrived, accepted)
                )
            sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
