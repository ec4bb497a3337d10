"""The IAM policies of ``deploy/iam/`` are least privilege, proven on a real run.

``test_committed_policies_are_rendered``: the committed files are exactly what
``render_policies`` makes of the packaged default config (re-render with
``python -m sensorpipe.provisioning.iam --out deploy/iam``).

``test_policies_grant_what_a_run_uses_and_nothing_more``: a pipeline on LocalStack with
two aggregator and two notifier shards, every service a real process with
``SENSORPIPE_AWS_CALL_LOG`` set, runs the ``notification`` (first), ``raw`` and ``filtered``
scenarios through the uploader and the five stages; then the dashboard's read sources,
``sensorpipe-replay status`` / ``dlq --dry-run`` / ``archive --dry-run`` and the
provisioner run against it. Every recorded call is translated to its IAM action and ARN
(``tests/deploy/iam.py``) and must be allowed by its process's policy, rendered for the
test's own prefix; every (action, resource) a policy grants must be used by some call,
unless it is in ``UNEXERCISED`` with the reason the run cannot reach it.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sensorpipe.aws import CALL_LOG_ENV, s3_client
from sensorpipe.config import load_pipeline_config
from sensorpipe.devstack.processes import ServiceProcess, free_port
from sensorpipe.provisioning.iam import SERVICES, render_files, render_policies
from tests.conftest import make_pipeline
from tests.deploy.iam import Grant, UnknownCall, Unsupported, allowed, grants, request_of
from tests.e2e.stack import Stack, eventually

ROOT = Path(__file__).parents[2]
ROWS, BATCH = 90, 30  # per scenario: three batches, a few hundred calls in all
TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Unexercised:
    """A grant the run does not reach: (service, action glob, resource glob) and why."""

    service: str
    action: str
    resource: str
    reason: str
    sid: str = "*"

    def covers(self, service: str, grant: Grant) -> bool:
        return (
            service == self.service
            and fnmatch.fnmatchcase(grant.sid, self.sid)
            and fnmatch.fnmatchcase(grant.action, self.action)
            and fnmatch.fnmatchcase(grant.resource, self.resource)
        )


_POISON = "a poison message (Reject) goes to the DLQ at once; the run sends none"
_VISIBILITY = (
    "visibility changes only on Retry, a heartbeat of a long-held batch, or the hand-back "
    "of unsettled messages at shutdown; every batch of the run settles in time (the "
    "stateful stages hold messages only until their next checkpoint)"
)
_MISSING = (
    "no listing is made: ListBucket makes a missing key answer 404, not 403 "
    "(a first checkpoint, an unwritten window, an unsent burst's ledger entry)"
)
UNEXERCISED = [
    *(Unexercised(s, "sqs:SendMessage", "*-dlq", _POISON) for s in SERVICES),
    *(Unexercised(s, "sqs:SendMessage", "*-dlq.fifo", _POISON) for s in SERVICES),
    *(
        Unexercised(s, "sqs:ChangeMessageVisibility", "*", _VISIBILITY)
        for s in ("enricher", "validator", "router", "aggregator", "notifier")
    ),
    Unexercised("aggregator", "s3:ListBucket", "*", _MISSING),
    Unexercised("notifier", "s3:ListBucket", "*", _MISSING),
    Unexercised(
        "aggregator",
        "s3:GetObject",
        "*/1-minute/*",
        "a window is read back only to revise it after it left memory (a late reading)",
    ),
    Unexercised(
        "aggregator", "s3:PutObject", "*-error/late/*", "readings beyond the allowed lateness"
    ),
    Unexercised(
        "notifier",
        "s3:PutObject",
        "*-error/*-anomalies/*",
        "anomalies behind the decided watermark, or that cannot be placed",
    ),
    Unexercised(
        "replay",
        "sqs:*",
        "*",
        "`replay dlq` reads only the ingest DLQ (dry run, empty) and moves nothing; "
        "`replay archive --dry-run` sends nothing",
    ),
    Unexercised("replay", "s3:GetObject", "*", "`replay archive` is driven on the raw bucket only"),
    Unexercised(
        "provisioner",
        "sqs:*",
        "*",
        "only when an existing queue's attributes differ from the config",
        sid="UpdateExisting",
    ),
]
# Grants the run must reach even though an UNEXERCISED entry would cover them.
MUST_REACH = [
    ("replay", "sqs:GetQueueAttributes"),
    ("replay", "s3:ListBucket"),
    ("replay", "sqs:ReceiveMessage"),
]


def test_committed_policies_are_rendered() -> None:
    """deploy/iam/*.json is what the packaged default config renders."""
    config = load_pipeline_config(None, env={})
    rendered = render_files(config, ROOT / "deploy/iam")
    committed = {p for p in (ROOT / "deploy/iam").glob("*.json")}
    assert committed == set(rendered), "a policy file is missing or left over"
    for path, text in rendered.items():
        assert path.read_text() == text, (
            f"{path} differs from the rendered policy: "
            "run python -m sensorpipe.provisioning.iam --out deploy/iam"
        )
    assert {p.stem for p in committed} == set(SERVICES)


# -- the run --------------------------------------------------------------------------


@dataclass
class Run:
    calls: list[dict[str, Any]]
    policies: dict[str, dict[str, Any]]


def _objects(bucket: str, prefix: str) -> list[str]:
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _command(stack: Stack, what: str, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, *args], env=stack.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}"


def _dashboard(stack: Stack) -> None:
    """Start the dashboard and read both API routes (every section it has)."""
    port = free_port()
    env = {**stack.env, "SENSORPIPE_DASHBOARD_PORT": str(port)}
    dashboard = ServiceProcess("services.dashboard", env, stack.tmp / "logs", port=port).start()
    try:
        for route in ("/api/overview", "/api/windows"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{route}", timeout=30) as got:
                body = json.loads(got.read())
            failed = [k for k, v in body.items() if isinstance(v, dict) and "error" in v]
            assert not failed and "error" not in body, (route, body)
    finally:
        dashboard.terminate()


def _scenario(stack: Stack, scenario: str, seed: int) -> None:
    """One dataset through the pipeline, every one in the same two seconds of event time:
    a shard's watermark is the minimum over its sources, so none may lag far behind."""
    acked = stack.router_acked()
    stack.set_scenario(scenario)
    start = "2025-08-18T10:59:57+00:00"
    data = stack.simulate(f"{scenario}-{seed}", seed, ROWS, start, anomalies=0.3)
    stack.upload(data, f"state-{scenario}", BATCH)
    batches = -(-ROWS // BATCH)
    eventually(lambda: stack.router_acked() >= acked + batches, TIMEOUT_S, f"{scenario} routed")


@pytest.fixture(scope="module")
def run(localstack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("iam")
    pipeline = make_pipeline(
        tmp,
        localstack,
        {
            "queues": {"visibility_timeout_seconds": 10, "aggregate_shards": 2, "notify_shards": 2},
            "windowing": {"grace_seconds": 1, "idle_flush_seconds": 2},
            "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 1},
        },
    )
    log = tmp / "aws-calls.jsonl"
    pipeline.env[CALL_LOG_ENV] = str(log)  # the children's environment only
    stack = Stack(pipeline, tmp)
    config = pipeline.config
    try:
        for name in ("enricher", "validator", "router"):
            stack.start(name)
        for shard in range(2):
            stack.start("aggregator", "--shard", str(shard), key=f"aggregator-{shard}")
            stack.start("notifier", "--shard", str(shard), key=f"notifier-{shard}")
        # notification first: its anomalies must not arrive behind a watermark that
        # other sources already moved (they would be set aside as late, not notified).
        _scenario(stack, "notification", seed=31)
        aggregated, archival = pipeline.bucket("aggregated"), pipeline.bucket("archival")
        window_prefix = config.windowing.output_prefix + "/"
        eventually(lambda: _objects(aggregated, window_prefix), TIMEOUT_S, "window documents")
        eventually(lambda: _objects(archival, "notifications/"), TIMEOUT_S, "burst ledger")
        for seed, scenario in enumerate(("raw", "filtered"), start=32):
            _scenario(stack, scenario, seed)
        eventually(
            lambda: len(_objects(archival, "_checkpoints/")) == 2, TIMEOUT_S, "notifier checkpoints"
        )
    finally:
        stack.stop_all()
    _dashboard(stack)
    replay = ("-m", "sensorpipe.replay")
    conf = ("--config", str(pipeline.config_path))
    _command(stack, "replay status", *replay, "status", *conf)
    _command(stack, "replay dlq", *replay, "dlq", "--queue", "ingest", "--dry-run", *conf)
    _command(
        stack, "replay archive", *replay, "archive", "--bucket-kind", "raw", "--dry-run", *conf
    )
    _command(stack, "provisioner", "-m", "sensorpipe.provisioning.cli", *conf)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    yield Run(calls, render_policies(config))


def _table(service: str, counts: Counter[str]) -> str:
    rows = "\n".join(f"  {action:<32} {n:>5}" for action, n in sorted(counts.items()))
    return f"{service}:\n{rows}"


def test_policies_grant_what_a_run_uses_and_nothing_more(run: Run) -> None:
    by_process: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in run.calls:
        by_process[call["process"]].append(call)
    assert set(by_process) == set(SERVICES), f"processes seen: {sorted(by_process)}"
    denied: list[str] = []
    unused: list[str] = []
    reached: set[tuple[str, str]] = set()
    for service, calls in sorted(by_process.items()):
        policy = run.policies[service]
        requests = [request_of(c) for c in calls]
        counts = Counter(r.action for r in requests)
        print(_table(service, counts))
        denied += [f"{service}: {r}" for r in requests if not allowed(policy, r)]
        for grant in grants(policy):
            if any(grant.matches(r) for r in requests):
                reached.add((service, grant.action))
            elif not any(e.covers(service, grant) for e in UNEXERCISED):
                unused.append(f"{service}: {grant.sid} {grant.action} {grant.resource}")
    print(f"{len(run.calls)} calls in all")
    assert not denied, "calls the policies do not allow:\n" + "\n".join(denied)
    assert not unused, "granted but never used (tighten, or document why):\n" + "\n".join(unused)
    missing = [m for m in MUST_REACH if m not in reached]
    assert not missing, f"the run did not reach {missing}"


# -- the evaluator itself -------------------------------------------------------------


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_evaluator_scopes_actions_resources_and_conditions() -> None:
    policy = _policy(
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/raw/*"},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::b"],
            "Condition": {"StringLike": {"s3:prefix": ["raw/*"]}},
        },
        {"Effect": "Allow", "Action": "sqs:Send*", "Resource": "arn:aws:sqs:*:*:q"},
    )
    put = {"service": "s3", "operation": "PutObject", "bucket": "b"}
    assert allowed(policy, request_of({**put, "key": "raw/x"}))
    assert not allowed(policy, request_of({**put, "key": "rawx"}))
    assert not allowed(policy, request_of({**put, "bucket": "b2", "key": "raw/x"}))
    listing = {"service": "s3", "operation": "ListObjectsV2", "bucket": "b"}
    assert allowed(policy, request_of({**listing, "prefix": "raw/year=2025/"}))
    assert not allowed(policy, request_of({**listing, "prefix": "error/"}))
    assert not allowed(policy, request_of(listing))  # no prefix: the condition fails
    send = {"service": "sqs", "operation": "SendMessageBatch", "queue": "q"}
    assert allowed(policy, request_of(send))
    assert not allowed(policy, request_of({**send, "queue": "q-dlq"}))
    assert not allowed(policy, request_of({**send, "operation": "ReceiveMessage"}))


def test_evaluator_deny_wins_and_unknowns_are_refused() -> None:
    policy = _policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret/*"},
    )
    head = {"service": "s3", "operation": "HeadObject", "bucket": "b", "key": "secret/k"}
    assert not allowed(policy, request_of(head))
    assert allowed(policy, request_of({**head, "key": "open/k"}))
    with pytest.raises(UnknownCall):
        request_of({"service": "s3", "operation": "DeleteObject", "bucket": "b", "key": "k"})
    with pytest.raises(Unsupported):
        allowed(
            _policy({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}), request_of(head)
        )
