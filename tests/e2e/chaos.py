"""The chaos suite's rig: what kills, what breaks the network, and what watches.

- ``Feeder`` writes a pre-built fleet database into the edge node's live one, in row
  order at a steady pace, as the node's sensors would: the uploader follows it live, so
  a kill of the uploader always lands in the middle of work.
- ``Network`` puts one TCP fault proxy (tests/fault_proxy.py) between each stage and
  LocalStack, and switches each on its own seeded schedule between healthy, flaky
  (resets of open connections, messages cut in the middle of a request or a response)
  and slow periods.
- ``Supervisor`` keeps every process running as a process supervisor would: every
  10-20 s (seeded) it kill -9s one process chosen at random among all of them (dealt
  so that every service is hit once per round) and starts it again; a process that dies
  on its own is restarted too, and recorded.
- ``Probe`` samples the stateful processes while their network is faulty, as evidence
  that faults hit them while they held messages and their heartbeat renewed leases.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.simulator.schema import open_database
from sensorpipe.aws import sqs_client
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.devstack.localstack import aws_environment
from sensorpipe.devstack.processes import ServiceProcess, ServiceStartError
from tests.conftest import Pipeline
from tests.e2e.order import metric
from tests.fault_proxy import FaultProxy

MODES = ("healthy", "flaky", "slow")
HELD = "sensorpipe_sequencer_held_parts"
EXTENSIONS = "sensorpipe_visibility_extensions_total"


# -- the edge node's database -----------------------------------------------------------


class Feeder:
    """Copies the rows of ``built`` into ``live`` in id order, ``rows_per_s`` on average.

    Ids, columns and order are the built database's, so the live one ends identical
    to it (late rows stay where the simulator wrote them: after later readings)."""

    def __init__(self, built: Path, live: Path, rows_per_s: float, step_s: float = 0.5) -> None:
        self.built = built
        self.live = live
        self.written = 0
        self._chunk = max(1, round(rows_per_s * step_s))
        self._step_s = step_s
        self._stop = threading.Event()
        with closing(self._connect()) as conn:
            self.last_id: int = conn.execute(
                "SELECT MAX(id) FROM built.sensor_readings"
            ).fetchone()[0]
            self._copy(conn)  # the file has rows before anyone opens it
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    @property
    def done(self) -> bool:
        return self.written >= self.last_id

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _connect(self) -> sqlite3.Connection:
        conn = open_database(self.live, "sensor_readings")
        conn.execute("ATTACH DATABASE ? AS built", (str(self.built),))
        return conn

    def _run(self) -> None:
        with closing(self._connect()) as conn:  # a connection belongs to its thread
            while not self.done and not self._stop.wait(self._step_s):
                self._copy(conn)

    def _copy(self, conn: sqlite3.Connection) -> None:
        upto = min(self.written + self._chunk, self.last_id)
        conn.execute(
            "INSERT INTO sensor_readings SELECT * FROM built.sensor_readings"
            " WHERE id > ? AND id <= ? ORDER BY id",
            (self.written, upto),
        )
        self.written = upto


# -- the network --------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultPlan:
    """How each stage's network behaves: periods of ``phase_s`` seconds, each healthy,
    flaky or slow with the given weights."""

    weights: tuple[float, float, float] = (0.4, 0.35, 0.25)
    phase_s: tuple[float, float] = (3.0, 9.0)
    reset_probability: float = 0.08  # per open connection, every 0.2 s of a flaky period
    cut_probability: float = 0.02  # per chunk forwarded in a flaky period
    latency_s: float = 0.02  # per chunk, flaky
    slow_latency_s: float = 0.25  # per chunk, slow


class Network:
    """One fault proxy per stage in front of LocalStack, each on its own schedule."""

    def __init__(self, upstream_port: int, stages: Iterable[str], seed: int, plan: FaultPlan):
        self.plan = plan
        self.proxies = {
            stage: FaultProxy(
                upstream_port,
                reset_probability=plan.reset_probability,
                latency_s=plan.latency_s,
                slow_latency_s=plan.slow_latency_s,
                cut_probability=plan.cut_probability,
                seed=seed + i,
            )
            for i, stage in enumerate(stages)
        }
        self.periods: Counter[tuple[str, str]] = Counter()  # (stage, mode) -> periods
        self.seconds: dict[str, float] = dict.fromkeys(MODES, 0.0)  # mode -> s, all stages
        self._seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def env(self, stage: str) -> dict[str, str]:
        """The AWS variables that send ``stage``'s calls through its proxy."""
        return aws_environment(self.proxies[stage].endpoint)

    def mode(self, stage: str) -> str:
        return self.proxies[stage].mode

    def start(self) -> None:
        for i, stage in enumerate(self.proxies):
            rng = random.Random(self._seed * 1000 + i)
            thread = threading.Thread(
                target=self._schedule, args=(stage, rng), name=f"faults-{stage}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def calm(self) -> None:
        """End the faults: every proxy healthy from now on."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        for proxy in self.proxies.values():
            proxy.set_mode("healthy")

    def close(self) -> None:
        self.calm()
        for proxy in self.proxies.values():
            proxy.close()

    def injected(self) -> dict[str, int]:
        """Faults injected, summed over every stage's proxy."""
        proxies = self.proxies.values()
        return {
            "connection resets": sum(p.resets for p in proxies),
            "resets awaiting a response": sum(p.resets_mid_request for p in proxies),
            "requests cut in the middle": sum(p.cuts_request for p in proxies),
            "responses cut in the middle": sum(p.cuts_response for p in proxies),
            "flaky periods": sum(n for (_, m), n in self.periods.items() if m == "flaky"),
            "slow periods": sum(n for (_, m), n in self.periods.items() if m == "slow"),
            "flaky seconds": round(self.seconds["flaky"]),
            "slow seconds": round(self.seconds["slow"]),
        }

    def _schedule(self, stage: str, rng: random.Random) -> None:
        proxy = self.proxies[stage]
        while not self._stop.is_set():
            mode = rng.choices(MODES, weights=self.plan.weights)[0]
            length = rng.uniform(*self.plan.phase_s)
            proxy.set_mode(mode)
            self.periods[(stage, mode)] += 1
            started = time.monotonic()
            self._stop.wait(length)
            self.seconds[mode] += time.monotonic() - started
        proxy.set_mode("healthy")


# -- the processes ------------------------------------------------------------------------


@dataclass
class Member:
    """One supervised process: ``make`` builds a fresh (not started) process for it."""

    name: str  # e.g. "router-1", "aggregator-0", "uploader"
    service: str  # e.g. "router"
    make: Callable[[], ServiceProcess]
    process: ServiceProcess | None = None


@dataclass
class Supervisor:
    seed: int
    every_s: tuple[float, float] = (10.0, 20.0)
    members: dict[str, Member] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)  # service -> kill -9s
    start_failures: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)  # died on its own while running
    errors: list[str] = field(default_factory=list)  # the supervisor's own failures

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.RLock()
        self._stop_chaos = threading.Event()
        self._stop_watch = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, name: str, service: str, make: Callable[[], ServiceProcess]) -> None:
        self.members[name] = Member(name, service, make)

    def processes(self, service: str) -> list[ServiceProcess]:
        with self._lock:
            found = [m.process for m in self.members.values() if m.service == service]
        return [p for p in found if p is not None]

    def process(self, name: str) -> ServiceProcess | None:
        with self._lock:
            return self.members[name].process

    def start_all(self) -> None:
        threads = [
            threading.Thread(target=self._launch, args=(m,), daemon=True)
            for m in self.members.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        missing = [m.name for m in self.members.values() if m.process is None]
        assert not missing, f"could not start {missing}"
        self._spawn(self._watch, "supervisor-watch")

    def start_chaos(self) -> None:
        self._spawn(self._chaos, "supervisor-chaos")

    def end_chaos(self) -> None:
        self._stop_chaos.set()
        for thread in self._threads:
            if thread.name == "supervisor-chaos":
                thread.join(timeout=120)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every process; returns each one's exit code."""
        self._stop_chaos.set()
        self._stop_watch.set()
        for thread in self._threads:
            thread.join(timeout=120)
        codes: dict[str, int] = {}

        def terminate(member: Member) -> None:
            if member.process is not None and member.process.process is not None:
                try:
                    codes[member.name] = member.process.terminate()
                except ServiceStartError:  # ignored SIGTERM: killed
                    codes[member.name] = -9

        with ThreadPoolExecutor(len(self.members)) as pool:
            list(pool.map(terminate, self.members.values()))
        return codes

    def kill_all(self) -> None:
        """Last resort after a failure: nothing may outlive the test."""
        for member in self.members.values():
            if member.process is not None:
                member.process.kill()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        def guarded() -> None:
            try:
                target()
            except Exception as exc:  # reported by the test, not lost with the thread
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _launch(self, member: Member) -> None:
        """Start the member, as often as a supervisor would (its network may be down)."""
        for _ in range(10):
            try:
                member.process = member.make().start(timeout_s=60)
                return
            except ServiceStartError as exc:
                self.start_failures[member.service] += 1
                last = str(exc)
                time.sleep(1)
        raise AssertionError(f"{member.name} would not start:\n{last}")

    def _chaos(self) -> None:
        victims = self._victims()
        while not self._stop_chaos.wait(self._rng.uniform(*self.every_s)):
            with self._lock:
                member = next(victims)
                assert member.process is not None
                member.process.kill()
                self.kills[member.service] += 1
                self._launch(member)

    def _victims(self) -> Iterator[Member]:
        """Random processes, dealt like cards: the services in a shuffled order, one
        random process of each, then reshuffled; so every service is hit within a
        round, and no process is safe."""
        services = sorted({m.service for m in self.members.values()})
        while True:
            self._rng.shuffle(services)
            for service in services:
                yield self._rng.choice(
                    [m for name, m in sorted(self.members.items()) if m.service == service]
                )

    def _watch(self) -> None:
        while not self._stop_watch.wait(0.5):
            with self._lock:
                for member in self.members.values():
                    running = member.process.process if member.process else None
                    if running is None or running.poll() is None:
                        continue
                    assert member.process is not None
                    self.crashes.append(
                        f"{member.name} exited with {running.returncode}:\n"
                        f"{member.process.log_tail(20)}"
                    )
                    self._launch(member)


# -- what the chaos hit -------------------------------------------------------------------


@dataclass
class Probe:
    """Samples the stateful processes once a second while their network is faulty."""

    supervisor: Supervisor
    network: Network
    services: tuple[str, ...] = ("aggregator", "notifier")
    held_under_faults: int = 0  # samples: messages held while the network was faulty
    extensions_under_faults: float = 0  # heartbeat extensions made in faulty periods
    _last: dict[int, tuple[float, str]] = field(default_factory=dict)  # port -> (ext, mode)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for service in self.services:
                mode = self.network.mode(service)
                for process in self.supervisor.processes(service):
                    self._sample(process, mode)

    def _sample(self, process: ServiceProcess, mode: str) -> None:
        try:
            held = metric(process, HELD)
            extensions = metric(process, EXTENSIONS)
        except OSError:  # just killed
            return
        faulty = mode != "healthy"
        if faulty and held > 0:
            self.held_under_faults += 1
        before = self._last.get(process.port)
        if faulty and before is not None and before[1] != "healthy":
            self.extensions_under_faults += max(0.0, extensions - before[0])
        self._last[process.port] = (extensions, mode)


# -- dead-letter queues -------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    batch_id: str
    receive_count: int
    attributes: dict[str, str]


def dlq_names(pipeline: Pipeline) -> dict[str, str]:
    """source queue -> its DLQ, for every consumer queue of the pipeline."""
    return {q: QueueSettings.dlq_name(q) for q in pipeline.config.queues.consumer_queues()}


def peek(pipeline: Pipeline, dlq: str) -> list[DeadLetter]:
    """Every message of a DLQ with its attributes, left in place (visible again)."""
    sqs = sqs_client()
    url = pipeline.queue_url(dlq)
    seen: dict[str, DeadLetter] = {}
    receipts: list[str] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,  # LocalStack answers a short poll with all it has
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not got:
            break
        for m in got:
            attributes = {k: v.get("StringValue", "") for k, v in m["MessageAttributes"].items()}
            seen[m["MessageId"]] = DeadLetter(
                dlq,
                attributes.get("batch-id", "?"),
                int(m["Attributes"]["ApproximateReceiveCount"]),
                attributes,
            )
            receipts.append(m["ReceiptHandle"])
    for receipt in receipts:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
    return list(seen.values())


def describe(letters: list[DeadLetter]) -> list[dict[str, Any]]:
    return [
        {
            "dlq": d.queue,
            "batch": d.batch_id,
            "receives": d.receive_count,
            "reason": d.attributes.get("failure-reason"),
        }
        for d in letters
    ]
