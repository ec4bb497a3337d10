"""Chaos: nothing is lost when every process is killed and every network fails.

A fleet's database of 100,000 rows (20 sensors at 5 locations, invalid rows, duplicates,
rows written up to 8 s out of order, anomaly bursts, then a quiet tail) is written into
the edge node's live database over a few minutes, and the uploader follows it into the
whole ``notification`` pipeline: two replicas of the enricher, validator and router, two
aggregator and two notifier shards. Meanwhile, every 10-20 s (seeded), one process
chosen at random among all of them, the uploader included, is killed with SIGKILL and
started again, as a supervisor would; and every stage, the stateful ones and the
uploader included, reaches LocalStack through its own TCP fault proxy that keeps
switching between healthy, flaky (connections reset, requests and responses cut in the
middle) and slow periods.

Then the faults stop, the pipeline drains, whatever a dead-letter queue holds (every
message must say why, in ``failure-reason``) is replayed with ``sensorpipe-replay dlq``,
and the result must be exact: every valid reading in the archive once, every invalid one
in ``rejected/`` once, the windows equal to the independent expectation
(tests/e2e/order.py) to 1e-9, nothing in ``late/``, and the same bursts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.aws import s3_client
from sensorpipe.devstack.processes import ServiceProcess
from sensorpipe.objects import read_jsonl
from sensorpipe.replay.cli import main as replay
from tests.conftest import Pipeline, make_pipeline
from tests.e2e.chaos import (
    DeadLetter,
    FaultPlan,
    Feeder,
    Network,
    Probe,
    Supervisor,
    describe,
    dlq_names,
    peek,
)
from tests.e2e.order import (
    Expectation,
    Outcome,
    _keys,
    depth,
    expectation,
    metric,
    outcome,
    settled,
    stateful_queues,
    utc,
    wait_for,
    window_problems,
)
from tests.e2e.stack import SERVICES, Dataset, Stack
from tests.services.notifier.reference import to_us

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

SEED = 11
ROWS, TAIL_ROWS = 95_200, 4_800  # the tail: four quiet minutes close every decision
SENSORS, LOCATIONS, RATE = 20, 5, 20.0  # one reading a second per sensor
START = "2026-11-03T06:00:00+00:00"
BATCH = 2000  # rows per upload batch (the default): 100 s of event time
FEED_S = 120.0  # the live database grows to its 100,000 rows over this long
CHAOS_MIN_S = 150.0  # a round of kills (one per service) at the least
KILL_EVERY_S = (10.0, 20.0)
DRAIN_S = 180.0  # after the chaos: idle flush, replays, the last windows and bursts
STAGES = ("uploader", *SERVICES, "aggregator", "notifier")
NOTIFICATION = {"min_anomalies": 3, "window_seconds": 60.0, "cooldown_seconds": 120.0}
OVERRIDES: dict[str, Any] = {
    "windowing": {"grace_seconds": 10, "idle_flush_seconds": 20},
    "notification": NOTIFICATION,
    "queues": {"visibility_timeout_seconds": 10, "aggregate_shards": 2, "notify_shards": 2},
    "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1, "retry_max_seconds": 8},
}


def build_fleet(stack: Stack) -> Dataset:
    extra = ("--late-fraction", "0.03", "--late-delay", "1", "8", "--duplicate-fraction", "0.01")
    main = stack.simulate(
        "fleet", SEED, ROWS, START, sensors=SENSORS, locations=LOCATIONS, rate=RATE,
        invalid=0.02, anomalies=0.002, extra=extra,
    )  # fmt: skip
    end_us = max(to_us(main.rows[i]["timestamp"]) for i in main.valid)
    tail_start = utc(end_us + 1_000_000)
    tail = stack.simulate(
        "fleet", SEED, TAIL_ROWS, tail_start, sensors=SENSORS, locations=LOCATIONS, rate=RATE,
        invalid=0, anomalies=0,
    )  # fmt: skip
    return Dataset(main.db, main.manifest, tail.rows)  # one file: the tail was appended


def enlist(supervisor: Supervisor, pipeline: Pipeline, network: Network, tmp: Path) -> None:
    """Every process of the pipeline, each reaching LocalStack through its stage's proxy."""
    logs = tmp / "logs"

    def env(stage: str) -> dict[str, str]:
        return {**pipeline.env, **network.env(stage)}

    for service in SERVICES:
        for replica in range(2):
            name = f"{service}-{replica}"
            process = partial(ServiceProcess, f"services.{service}", env(service), logs / name)
            supervisor.add(name, service, process)
    for service in ("aggregator", "notifier"):
        for shard in range(2):
            supervisor.add(
                f"{service}-{shard}",
                service,
                partial(
                    ServiceProcess,
                    f"services.{service}",
                    env(service),
                    logs / "stateful",
                    ["--shard", str(shard)],
                ),
            )
    uploader_args = ["--db", str(tmp / "edge" / "live.db"), "--state-dir", str(tmp / "edge")]
    supervisor.add(
        "uploader",
        "uploader",
        partial(
            ServiceProcess,
            "edge.uploader",
            env("uploader"),
            logs / "uploader",
            [*uploader_args, "--batch-size", str(BATCH)],
        ),
    )


def stateless_queues(pipeline: Pipeline) -> list[str]:
    queues = pipeline.config.queues
    return [queues.ingest, queues.enriched, queues.validated]


def uploaded_all(supervisor: Supervisor, feeder: Feeder) -> bool:
    process = supervisor.process("uploader")
    health = process.health() if process is not None else None
    return feeder.done and health is not None and health["checkpoint_row_id"] == feeder.last_id


def dead_letters(pipeline: Pipeline) -> dict[str, list[DeadLetter]]:
    """source queue -> the messages its DLQ holds, for every DLQ that holds some."""
    return {
        source: peek(pipeline, dlq)
        for source, dlq in dlq_names(pipeline).items()
        if depth(pipeline, [dlq])
    }


def drain_and_replay(
    pipeline: Pipeline, supervisor: Supervisor, timeout_s: float
) -> tuple[list[DeadLetter], str | None]:
    """Let everything settle; whenever only dead letters are left to wait for, replay
    them with ``sensorpipe-replay dlq``. Returns every dead letter seen (as found), and
    what was stuck if the pipeline did not settle in time."""
    seen: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s

    def done() -> bool:
        return depth(pipeline, stateless_queues(pipeline)) == 0 and settled(
            pipeline, supervisor.processes("aggregator"), supervisor.processes("notifier")
        )

    while not done():
        if time.monotonic() > deadline:
            return seen, (
                f"not settled {timeout_s:.0f} s after the chaos ended: "
                f"stateless queues {depth(pipeline, stateless_queues(pipeline))}, "
                f"stateful queues {depth(pipeline, stateful_queues(pipeline).values())}, "
                f"dead letters {describe(seen)[:5]}; stateful processes: "
                f"{stateful_figures(supervisor)}"
            )
        if depth(pipeline, stateless_queues(pipeline)) == 0:
            for source, letters in dead_letters(pipeline).items():
                seen.extend(letters)  # as found, before the replay strips the reason
                code = replay(["dlq", "--config", str(pipeline.config_path), "--queue", source])
                assert code == 0, f"sensorpipe-replay dlq --queue {source} exited {code}"
        time.sleep(2)
    return seen, None


def stateful_figures(supervisor: Supervisor) -> dict[str, dict[str, float]]:
    """Where each stateful process stands, from its own metrics."""
    names = (
        "sensorpipe_messages_in_flight",
        "sensorpipe_sequencer_held_parts",
        "sensorpipe_aggregator_open_windows",
        "sensorpipe_notifier_pending_anomalies",
        "sensorpipe_checkpoint_duration_seconds_count",
    )
    out = {}
    for service in ("aggregator", "notifier"):
        for process in supervisor.processes(service):
            key = f"{process.name} (pid {process.process.pid if process.process else '?'})"
            try:
                out[key] = {n.removeprefix("sensorpipe_"): metric(process, n) for n in names}
            except OSError:  # exited meanwhile
                out[key] = {"unreachable": 1.0}
    return out


def ids_in(pipeline: Pipeline, kind: str, prefix: str, *path: str) -> Counter[int]:
    s3, bucket = s3_client(), pipeline.bucket(kind)
    ids: Counter[int] = Counter()
    for key in _keys(bucket, prefix):
        for line in read_jsonl(s3.get_object(Bucket=bucket, Key=key)["Body"].read()):
            value: Any = line
            for step in path:
                value = value[step]
            ids[int(value)] += 1
    return ids


def accounting(
    data: Dataset, archived: Counter[int], rejected: Counter[int], got: Outcome, want: Expectation
) -> dict[str, object]:
    """What the run kept, lost and doubled, in the figures the issue asks to print."""
    stored = archived + rejected
    return {
        "readings": len(data.rows),
        "lost": {
            "valid rows not archived": len(data.valid - set(archived)),
            "invalid rows not in rejected/": len(set(data.invalid) - set(rejected)),
            "windows": len(set(want.windows) - set(got.documents)),
            "bursts": len(want.bursts - got.bursts),
        },
        "duplicated": {
            "rows stored more than once": sum(1 for n in stored.values() if n > 1),
            "notifications beyond one per burst": max(0, got.notifications - len(got.burst_ids)),
        },
        "late": got.late,
        "windows revised": sum(1 for doc in got.windows().values() if doc["revision"] > 0),
    }


def test_kill_9_of_every_process_and_a_failing_network_lose_nothing(
    localstack: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    pipeline = make_pipeline(tmp_path, localstack, OVERRIDES)
    stack = Stack(pipeline, tmp_path)  # the test's own tools talk to LocalStack directly
    stack.set_scenario("notification")
    data = build_fleet(stack)
    want = expectation(data, NOTIFICATION)
    assert len(data.rows) >= 100_000 and len(data.invalid) > 1000
    assert len(data.manifest["duplicate"]) > 500 and len(data.manifest["late"]) > 1000
    assert len(want.bursts) >= 10

    (tmp_path / "edge").mkdir()
    feeder = Feeder(data.db, tmp_path / "edge" / "live.db", rows_per_s=len(data.rows) / FEED_S)
    network = Network(int(localstack.rsplit(":", 1)[1]), STAGES, SEED, FaultPlan())
    supervisor = Supervisor(SEED, KILL_EVERY_S)
    enlist(supervisor, pipeline, network, tmp_path)
    probe = Probe(supervisor, network)
    problems: list[str] = []
    try:
        supervisor.start_all()
        network.start()
        probe.start()
        supervisor.start_chaos()
        feeder.start()
        chaos_started = time.monotonic()
        wait_for(
            lambda: (
                time.monotonic() - chaos_started >= CHAOS_MIN_S
                and uploaded_all(supervisor, feeder)
                and depth(pipeline, stateless_queues(pipeline)) == 0
            ),
            600,
            "every row uploaded and through the stateless stages under chaos",
        )
        supervisor.end_chaos()
        network.calm()
        probe.stop()
        chaos_s = time.monotonic() - chaos_started
        letters, stuck = drain_and_replay(pipeline, supervisor, DRAIN_S)
        if stuck:
            problems.append(stuck)
        codes = supervisor.stop_all()
    finally:
        feeder.stop()
        probe.stop()
        network.close()
        supervisor.kill_all()

    without_reason = [d for d in letters if not d.attributes.get("failure-reason")]
    if without_reason:
        problems.append(
            f"{len(without_reason)} DLQ message(s) without a failure-reason: "
            f"{describe(without_reason)[:5]}"
        )
    if any(code != 0 for code in codes.values()):
        problems.append(f"exit codes after SIGTERM: {codes}")
    if supervisor.crashes or supervisor.errors:
        problems.append(f"died on their own: {supervisor.crashes[:3]} {supervisor.errors[:3]}")

    archived = ids_in(pipeline, "archival", "archival/", "sensor_data", "id")
    rejected = ids_in(pipeline, "error", "rejected/", "record", "id")
    got = outcome(pipeline)
    injected = network.injected()
    report = {
        **accounting(data, archived, rejected, got, want),
        "kills per service": dict(supervisor.kills),
        "faults injected": injected,
        "restarts that failed to come up": dict(supervisor.start_failures),
        "dead letters replayed": len(letters),
        "samples holding messages under faults": probe.held_under_faults,
        "heartbeat extensions under faults": probe.extensions_under_faults,
        "chaos seconds": round(chaos_s),
        "wall time": str(timedelta(seconds=round(time.monotonic() - started))),
    }
    print("\nchaos:", json.dumps(report, indent=2))

    # The chaos hit what it was meant to hit.
    assert set(supervisor.kills) == set(STAGES), supervisor.kills
    assert injected["connection resets"] > 0 and injected["responses cut in the middle"] > 0
    assert probe.held_under_faults > 0 and probe.extensions_under_faults > 0

    # Nothing lost, nothing doubled.
    if set(archived) != data.valid:
        problems.append(
            f"archive: missing {sorted(data.valid - set(archived))[:10]}, "
            f"unexpected {sorted(set(archived) - data.valid)[:10]}"
        )
    if set(rejected) != set(data.invalid):
        problems.append(
            f"rejected/: missing {sorted(set(data.invalid) - set(rejected))[:10]}, "
            f"unexpected {sorted(set(rejected) - set(data.invalid))[:10]}"
        )
    doubled = [i for i, n in (archived + rejected).items() if n > 1]
    if doubled:
        problems.append(f"{len(doubled)} row(s) stored twice, e.g. {doubled[:10]}")
    wrong = window_problems(got.windows(), want.windows)
    if wrong:
        problems.append(f"{len(wrong)} window problem(s): {wrong[:10]}")
    if got.late:
        problems.append(f"{got.late} object(s) in late/ or late-anomalies/: nothing was late")
    if got.bursts != want.bursts:
        problems.append(
            f"bursts: {len(want.bursts - got.bursts)} missing, {len(got.bursts - want.bursts)} "
            f"extra (of {len(want.bursts)})"
        )
    if got.notifications != len(got.burst_ids):
        problems.append(f"{got.notifications} notifications for {len(got.burst_ids)} bursts")
    assert not problems, "\n".join(problems)
