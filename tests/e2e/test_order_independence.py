"""The windows and bursts are a function of the data alone (docs/WINDOWS.md).

One fleet's database (30 sensors at 5 locations, 20 minutes, invalid rows, duplicates,
rows written up to 8 s out of order, anomaly bursts, then a quiet tail) goes through
real service processes on LocalStack in every way the issue lists:

(a) delivered to the stateful stages in order, (b) reversed, (c) shuffled, (d) with one
batch held back while everything after it arrives, (e) through 3 aggregator and 3
notifier shards, (f) with two enricher, validator and router replicas, (g) with a
kill -9 of the aggregator and of the notifier mid-run.

For (a)-(d) and (g) the stateless stages run once; what they sent the stateful stages
is taken off the queues and delivered again, in the order of each case, to fresh
aggregator and notifier processes. (e) and (f) run the whole pipeline live.

Every case must write byte-identical window documents and the same bursts, and both
must equal the independent expectation (tests/e2e/order.py): windows to 1e-9, bursts by
the definition in docs/NOTIFICATIONS.md over all anomalous readings.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sensorpipe.devstack.processes import ServiceProcess
from tests.conftest import Pipeline, make_pipeline
from tests.e2e.order import (
    Expectation,
    Outcome,
    Raw,
    capture,
    depth,
    expectation,
    log_problems,
    metric,
    outcome,
    send,
    settled,
    stateful_queues,
    wait_for,
    window_problems,
)
from tests.e2e.stack import SERVICES, Dataset, Stack

pytestmark = pytest.mark.e2e

BATCH = 200  # rows per upload batch: about 33 s of event time each
START = "2026-11-01T10:00:00+00:00"
TAIL_START = "2026-11-01T10:20:01+00:00"  # three quiet minutes close every decision
NOTIFICATION = {"min_anomalies": 3, "window_seconds": 60.0, "cooldown_seconds": 120.0}


def overrides(aggregate_shards: int = 1, notify_shards: int = 1) -> dict[str, object]:
    return {
        "windowing": {"grace_seconds": 10, "idle_flush_seconds": 3},
        "notification": NOTIFICATION,
        "queues": {
            "visibility_timeout_seconds": 5,
            "aggregate_shards": aggregate_shards,
            "notify_shards": notify_shards,
        },
        "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1},
    }


@dataclass
class Fleet:
    tmp: Path
    endpoint: str
    data: Dataset
    expected: Expectation


@pytest.fixture(scope="module")
def fleet(localstack: str, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    tmp = tmp_path_factory.mktemp("order")
    maker = Stack(make_pipeline(tmp / "maker", localstack, overrides()), tmp)
    common = ("--late-fraction", "0.05", "--late-delay", "1", "8")
    first = maker.simulate(
        "fleet", 5, 7200, START, sensors=30, locations=5, rate=6, invalid=0.03,
        anomalies=0.01, extra=(*common, "--duplicate-fraction", "0.02"),
    )  # fmt: skip
    tail = maker.simulate(
        "fleet", 5, 1200, TAIL_START, sensors=30, locations=5, rate=6, invalid=0, anomalies=0
    )
    data = Dataset(first.db, first.manifest, tail.rows)
    return Fleet(tmp, localstack, data, expectation(data, NOTIFICATION))


def live_stack(fleet: Fleet, name: str, replicas: int = 1, **shards: int) -> Stack:
    stack = Stack(
        make_pipeline(fleet.tmp / name, fleet.endpoint, overrides(**shards)), fleet.tmp / name
    )
    stack.set_scenario("notification")
    for service in SERVICES:
        for replica in range(replicas):
            stack.start(service, key=f"{service}-{replica}")
    return stack


@pytest.fixture(scope="module")
def captured(fleet: Fleet) -> list[Raw]:
    """What the stateless stages send the stateful ones for the fleet, in arrival order."""
    stack = live_stack(fleet, "capture")
    try:
        stack.upload(fleet.data, "uploader-state", BATCH)
        pipeline = stack.pipeline
        stateless = [pipeline.config.queues.ingest, pipeline.config.queues.enriched]
        stateless.append(pipeline.config.queues.validated)
        wait_for(lambda: depth(pipeline, stateless) == 0, 120, "the stateless stages")
        wait_for(
            lambda: depth(pipeline, stateful_queues(pipeline).values()) >= 2 * batches(fleet),
            60,
            "the router's messages",
        )
        messages = capture(pipeline)
    finally:
        stack.stop_all()
    assert not log_problems(stack.tmp / "logs")
    return messages


def batches(fleet: Fleet) -> int:
    return -(-len(fleet.data.rows) // BATCH)


class Stateful:
    """Aggregator and notifier processes of a pipeline, one per shard."""

    def __init__(self, pipeline: Pipeline, logs: Path) -> None:
        self.pipeline = pipeline
        self.logs = logs
        queues = pipeline.config.queues
        self.aggregators = [
            self._start("aggregator", i) for i in range(len(queues.aggregate_shard_names()))
        ]
        self.notifiers = [
            self._start("notifier", i) for i in range(len(queues.notify_shard_names()))
        ]

    def _start(self, service: str, shard: int) -> ServiceProcess:
        process = ServiceProcess(
            f"services.{service}", self.pipeline.env, self.logs, ["--shard", str(shard)]
        )
        return process.start()

    def kill_and_restart(self) -> None:
        for group, service in ((self.aggregators, "aggregator"), (self.notifiers, "notifier")):
            group[0].kill()
            group[0] = self._start(service, 0)

    def settle_and_stop(self, timeout_s: float = 120) -> None:
        wait_for(
            lambda: settled(self.pipeline, self.aggregators, self.notifiers),
            timeout_s,
            "every message applied, every window written, every burst decided",
        )
        codes = [p.terminate() for p in (*self.aggregators, *self.notifiers)]
        assert codes == [0] * len(codes)


def replay(
    fleet: Fleet,
    name: str,
    messages: list[Raw],
    during: Callable[[Stateful], None] | None = None,
    pause_s: float = 0.0,
) -> Outcome:
    pipeline = make_pipeline(fleet.tmp / name, fleet.endpoint, overrides())
    stateful = Stateful(pipeline, fleet.tmp / name / "logs")
    try:
        if during is None:
            send(pipeline, messages, pause_s)
        else:
            during_send = messages[: len(messages) // 2], messages[len(messages) // 2 :]
            send(pipeline, during_send[0], pause_s)
            during(stateful)
            send(pipeline, during_send[1], pause_s)
        stateful.settle_and_stop()
    finally:
        for p in (*stateful.aggregators, *stateful.notifiers):
            if p.process is not None and p.process.poll() is None:
                p.kill()
    problems = log_problems(fleet.tmp / name / "logs")
    assert not problems, problems[0]
    return outcome(pipeline)


@pytest.fixture(scope="module")
def in_order(fleet: Fleet, captured: list[Raw]) -> Outcome:
    ordered = sorted(captured, key=lambda m: (m.queue_role, m.stream, m.seq, m.part))
    return replay(fleet, "in-order", ordered)


def assert_same(got: Outcome, reference: Outcome) -> None:
    assert set(got.documents) == set(reference.documents)
    differing = [k for k in reference.documents if got.documents[k] != reference.documents[k]]
    assert not differing, f"{len(differing)} window document(s) differ, e.g. {differing[:3]}"
    assert got.burst_ids == reference.burst_ids
    assert got.notifications == len(got.burst_ids), "a burst notified twice, or not at all"


def test_a_in_order_equals_the_independent_expectation(
    fleet: Fleet, captured: list[Raw], in_order: Outcome
) -> None:
    data = fleet.data
    assert len(data.invalid) > 100 and len(data.manifest["duplicate"]) > 50
    assert len(data.manifest["late"]) > 100
    problems = window_problems(in_order.windows(), fleet.expected.windows)
    assert not problems, problems[:10]
    assert len(fleet.expected.bursts) >= 5
    assert in_order.bursts == fleet.expected.bursts
    assert in_order.notifications == len(in_order.burst_ids)
    assert in_order.late == 0, "nothing the source wrote within the grace is late"
    assert all(doc["revision"] == 0 for doc in in_order.windows().values())


def test_b_reversed(fleet: Fleet, captured: list[Raw], in_order: Outcome) -> None:
    ordered = sorted(captured, key=lambda m: (m.queue_role, m.stream, m.seq, m.part))
    assert_same(replay(fleet, "reversed", ordered[::-1]), in_order)


def test_c_shuffled(fleet: Fleet, captured: list[Raw], in_order: Outcome) -> None:
    shuffled = list(captured)
    random.Random(17).shuffle(shuffled)
    assert_same(replay(fleet, "shuffled", shuffled), in_order)


def test_d_one_batch_held_back_past_several_windows(
    fleet: Fleet, captured: list[Raw], in_order: Outcome
) -> None:
    """A third of the way in, one batch is held back (as by retries at another stage)
    while every later batch arrives; it comes only once both stages were seen waiting."""
    held_seq = batches(fleet) // 3
    held = [m for m in captured if m.seq == held_seq]
    assert held
    others = sorted((m for m in captured if m.seq != held_seq), key=lambda m: (m.seq, m.part))
    assert_same(_replay_with_hold(fleet, others, held), in_order)


def _replay_with_hold(fleet: Fleet, others: list[Raw], held: list[Raw]) -> Outcome:
    pipeline = make_pipeline(fleet.tmp / "held-back", fleet.endpoint, overrides())
    logs = fleet.tmp / "held-back" / "logs"
    stateful = Stateful(pipeline, logs)
    try:
        send(pipeline, others)
        after = sum(1 for m in others if m.seq > held[0].seq)
        processes = (*stateful.aggregators, *stateful.notifiers)
        wait_for(
            lambda: (
                depth(pipeline, stateful_queues(pipeline).values()) == after
                and all(metric(p, "sensorpipe_sequencer_held_parts") > 0 for p in processes)
            ),
            60,
            "everything before the held batch acknowledged, everything after it held",
        )
        written = metric(stateful.aggregators[0], "sensorpipe_aggregator_windows_total")
        assert written < len(fleet.expected.windows) * 0.6, "windows written past the gap"
        send(pipeline, held)
        stateful.settle_and_stop()
    finally:
        for p in (*stateful.aggregators, *stateful.notifiers):
            if p.process is not None and p.process.poll() is None:
                p.kill()
    assert not log_problems(logs)
    return outcome(pipeline)


def test_g_kill_9_of_the_aggregator_and_the_notifier_mid_run(
    fleet: Fleet, captured: list[Raw], in_order: Outcome
) -> None:
    ordered = sorted(captured, key=lambda m: (m.seq, m.queue_role, m.part))

    def crash(stateful: Stateful) -> None:
        wait_for(
            lambda: (
                metric(stateful.aggregators[0], "sensorpipe_checkpoint_duration_seconds_count") > 0
            ),
            30,
            "a first checkpoint",
        )
        stateful.kill_and_restart()

    assert_same(replay(fleet, "kill-9", ordered, during=crash, pause_s=0.05), in_order)


@pytest.mark.parametrize(
    ("name", "replicas", "shards"), [("e-three-shards", 1, 3), ("f-replicas", 2, 1)]
)
def test_e_f_live_runs_with_shards_and_replicas(
    fleet: Fleet, in_order: Outcome, name: str, replicas: int, shards: int
) -> None:
    stack = live_stack(fleet, name, replicas, aggregate_shards=shards, notify_shards=shards)
    stateful = Stateful(stack.pipeline, stack.tmp / "logs" / "stateful")
    try:
        stack.upload(fleet.data, "uploader-state", BATCH)
        stateful.settle_and_stop(timeout_s=180)
    finally:
        stack.stop_all()
        for p in (*stateful.aggregators, *stateful.notifiers):
            if p.process is not None and p.process.poll() is None:
                p.kill()
    assert not log_problems(stack.tmp / "logs")
    assert_same(outcome(stack.pipeline), in_order)
