"""Nothing lost, nothing stuck (issue 11): the bad-input corpus through a live pipeline.

One pipeline and one set of real service processes (enricher, validator, router, one
aggregator and one notifier shard; scenario ``notification``) take the whole corpus of
``tests/e2e/bad_input.py`` at once: every bad message beside a good envelope straight
into ``[ingest]``, every envelope of bad records, then every bad edge database through
the real uploader, then a final good batch. The retry back-off is set to 300 s, longer
than the whole run, so whatever sits in a DLQ by the end was moved there by a Reject
at once, and whatever a stage retried instead is still on its way.

Then each case is judged by name against what the run left: DLQ copies (body,
``failure-reason``), the archival, raw and error buckets, window documents, the
notifier's ledger and side outputs, the uploader's exit codes and quarantine files.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from botocore.exceptions import ClientError

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.envelope import encode
from sensorpipe.objects import read_jsonl
from tests.conftest import make_pipeline
from tests.e2e.bad_input import (
    CASE_ATTRIBUTE,
    CASES,
    MAX_BODY_BYTES,
    ROWS,
    BadText,
    Bursts,
    Case,
    Dead,
    Kept,
    OneReading,
    Pair,
    Rejected,
    Row,
    RowCase,
    Sent,
    SurvivingRejects,
    edge_row,
    envelope,
    reading,
)
from tests.e2e.stack import Stack
from tests.window_pages import page_documents

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

pytestmark = pytest.mark.e2e

SERVICES = ("enricher", "validator", "router")
STATEFUL = ("aggregator", "notifier")
SETTLE_S = 90.0
FINAL_S = 60.0
EDGE_BATCH = 2
COLUMNS = (
    "id INTEGER PRIMARY KEY", "timestamp TEXT", "sensor_id TEXT", "temperature REAL",
    "humidity REAL", "pressure REAL", "vibration REAL", "voltage REAL", "status_code INTEGER",
    "anomaly_flag INTEGER", "anomaly_type TEXT", "firmware_version TEXT", "model TEXT",
    "manufacturer TEXT", "location TEXT", "latitude REAL", "longitude REAL",
    "original_timezone TEXT", "serial_number TEXT",
)  # fmt: skip
FINAL_ROWS = tuple(edge_row(i, -5, i, sensor_id="corpus-final") for i in range(1, 4))
FINAL_TAG = "final/good#0"


# -- what the run left ---------------------------------------------------------------


@dataclass
class DeadCopy:
    queue: str  # role: ingest, enriched, validated, aggregate, notify
    body: str
    attributes: dict[str, str]


@dataclass
class EdgeRun:
    codes: list[int]
    stderr: str
    state: Path


@dataclass
class Outcome:
    dead: list[DeadCopy] = field(default_factory=list)
    archived: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raw: set[str] = field(default_factory=set)
    rejected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    set_aside: list[dict[str, Any]] = field(default_factory=list)  # notifier side outputs
    windows: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    edge: dict[str, EdgeRun] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # case -> SQS's refusal
    alive: dict[str, str | None] = field(default_factory=dict)  # service -> problem
    depths: dict[str, int] = field(default_factory=dict)
    final_window: bool = False
    ingest_url: str = ""

    def dead_of(self, case: Case) -> list[DeadCopy]:
        bodies = {m.body for m in case.messages}
        return [
            d
            for d in self.dead
            if d.attributes.get(CASE_ATTRIBUTE) == case.name
            or d.body in bodies
            or d.attributes.get("batch-id") in case.batch_ids
        ]


def tag_of(data: Any) -> str | None:
    return data.get("serial_number") if isinstance(data, dict) else None


class Reader:
    """Reads the buckets and DLQs of the pipeline (objects cached by key and ETag)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.s3, self.sqs = s3_client(), sqs_client()
        self._cache: dict[tuple[str, str, str], bytes] = {}

    def objects(self, kind: str, prefix: str) -> Iterator[tuple[str, bytes]]:
        bucket = self.stack.pipeline.bucket(kind)
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                cache_key = (bucket, obj["Key"], obj["ETag"])
                if cache_key not in self._cache:
                    got = self.s3.get_object(Bucket=bucket, Key=obj["Key"])
                    self._cache[cache_key] = got["Body"].read()
                yield obj["Key"], self._cache[cache_key]

    def lines(self, kind: str, prefix: str) -> list[dict[str, Any]]:
        return [line for _key, body in self.objects(kind, prefix) for line in read_jsonl(body)]

    def drain_dlqs(self, out: Outcome) -> None:
        queues = self.stack.pipeline.config.queues
        roles = {"ingest": queues.ingest, "enriched": queues.enriched}
        roles["validated"] = queues.validated
        roles.update({f"aggregate-{i}": q for i, q in enumerate(queues.aggregate_shard_names())})
        roles.update({f"notify-{i}": q for i, q in enumerate(queues.notify_shard_names())})
        for role, name in roles.items():
            url = self.stack.pipeline.queue_url(QueueSettings.dlq_name(name))
            while got := self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", []):
                for m in got:
                    attrs = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
                    out.dead.append(DeadCopy(role, m["Body"], attrs))
                self.sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(got)
                    ],
                )

    def read_outputs(self, out: Outcome) -> None:
        out.archived = defaultdict(list)
        for line in self.lines("archival", "archival/"):
            out.archived[str(tag_of(line.get("sensor_data")))].append(line["sensor_data"])
        out.raw = {str(tag_of(line)) for line in self.lines("raw", "raw/")}
        out.rejected = defaultdict(list)
        for line in self.lines("error", "rejected/"):
            record = line.get("record")
            out.rejected[str(tag_of(record))].append(line)
        out.set_aside = self.lines("error", "unusable-anomalies/")
        out.set_aside += self.lines("error", "late-anomalies/")
        pages = self.objects("aggregated", "1-minute/")
        out.windows = list(page_documents(pages).values())
        out.ledger = [orjson.loads(b) for _k, b in self.objects("archival", "notifications/")]


# -- driving the run ---------------------------------------------------------------


def send_case(stack: Stack, case: Case, out: Outcome) -> None:
    """The case's messages in one SendMessageBatch when they fit one, else one by one."""
    sqs, url = sqs_client(), stack.pipeline.queue_url(stack.pipeline.config.queues.ingest)

    def entry(i: int, m: Sent) -> SendMessageBatchRequestEntryTypeDef:
        attrs: dict[str, MessageAttributeValueTypeDef] = {
            k: {"DataType": "String", "StringValue": v} for k, v in m.attributes.items()
        }
        return {"Id": str(i), "MessageBody": m.body, "MessageAttributes": attrs}

    entries = [entry(i, m) for i, m in enumerate(case.messages)]
    total = sum(len(m.body.encode()) + 400 for m in case.messages)
    try:
        if total <= MAX_BODY_BYTES:
            failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
            if failed:
                out.refused[case.name] = str(failed)
        else:
            for e in entries:
                sqs.send_message(
                    QueueUrl=url,
                    MessageBody=e["MessageBody"],
                    MessageAttributes=e["MessageAttributes"],
                )
    except ClientError as exc:
        out.refused[case.name] = str(exc)


def write_edge_db(path: Path, rows: tuple[Row, ...]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS sensor_readings ({', '.join(COLUMNS)})")
        for row in rows:
            names = list(row)
            marks = ["CAST(? AS TEXT)" if isinstance(row[n], BadText) else "?" for n in names]
            values = [bytes(v) if isinstance(v, BadText) else v for v in row.values()]
            conn.execute(
                f"INSERT INTO sensor_readings ({', '.join(names)}) VALUES ({', '.join(marks)})",
                values,
            )


def upload(stack: Stack, db: Path, state: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "edge.uploader", "--once", "--db", str(db),
         "--state-dir", str(state), "--batch-size", str(EDGE_BATCH)],
        env=stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stderr[-2000:]


def run_edge_case(stack: Stack, case: RowCase) -> EdgeRun:
    db, state = stack.tmp / f"{case.name}.db", stack.tmp / f"state-{case.name}"
    write_edge_db(db, case.rows)
    code, stderr = upload(stack, db, state)
    codes = [code]
    if case.later:
        write_edge_db(db, case.later)
        code, more = upload(stack, db, state)
        codes.append(code)
        stderr += more
    return EdgeRun(codes, stderr, state)


def expected_in_archive() -> set[str]:
    tags = {t for c in CASES for t in c.good}
    return tags | {str(r["serial_number"]) for c in ROWS for r in (*c.rows, *c.later)
                   if int(r["id"]) in c.good}  # fmt: skip


def settled(reader: Reader, out: Outcome) -> bool:
    reader.drain_dlqs(out)
    reader.read_outputs(out)
    dead = all(out.dead_of(c) for c in CASES if isinstance(c.end, Dead))
    arrived = expected_in_archive() <= set(out.archived)
    spelt = any(w["sensor_id"] == "corpus-spelt" for w in out.windows)
    burst = any(b.get("location") == "corpus-plant-normal" for b in out.ledger)
    return dead and arrived and spelt and burst


def wait(probe: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


def final_batch(stack: Stack, reader: Reader, out: Outcome) -> None:
    """After the corpus: a good edge batch and a good envelope still flow end to end."""
    db, state = stack.tmp / "final.db", stack.tmp / "state-final"
    write_edge_db(db, FINAL_ROWS)
    out.edge["final"] = EdgeRun([upload(stack, db, state)[0]], "", state)
    good = envelope("corpus-final", [{"sensor_data": reading(FINAL_TAG, "corpus-final-env")}])
    encoded = encode(good, compress=True)
    send_case(stack, Case("final", "", "message", (Sent(encoded.body, encoded.attributes),),
                          Rejected({}), (FINAL_TAG,)), out)  # fmt: skip
    wanted = {FINAL_TAG, *(str(r["serial_number"]) for r in FINAL_ROWS)}

    def flowed() -> bool:
        reader.read_outputs(out)
        return wanted <= set(out.archived) and any(
            w["sensor_id"] == "corpus-final" for w in out.windows
        )

    out.final_window = wait(flowed, FINAL_S)


def check_alive(stack: Stack, out: Outcome) -> None:
    for name, process in stack.services.items():
        assert process.process is not None
        if process.process.poll() is not None:
            out.alive[name] = f"exited {process.process.returncode}:\n{process.log_tail()}"
        elif process.health() is None:
            out.alive[name] = f"no /healthz answer:\n{process.log_tail()}"
        else:
            out.alive[name] = None


def queue_depths(stack: Stack) -> dict[str, int]:
    sqs, queues = sqs_client(), stack.pipeline.config.queues
    depths = {}
    for name in (queues.ingest, queues.enriched, queues.validated):
        attrs = sqs.get_queue_attributes(
            QueueUrl=stack.pipeline.queue_url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[name] = sum(int(v) for v in attrs.values())
    return depths


@pytest.fixture(scope="module")
def run(localstack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    tmp = tmp_path_factory.mktemp("corpus")
    overrides = {
        "queues": {"visibility_timeout_seconds": 10},
        "runtime": {"wait_time_seconds": 1, "retry_base_seconds": 300, "retry_max_seconds": 300},
        "windowing": {"grace_seconds": 10, "idle_flush_seconds": 3},
    }
    stack = Stack(make_pipeline(tmp, localstack, overrides), tmp)
    out = Outcome(ingest_url=stack.pipeline.queue_url(stack.pipeline.config.queues.ingest))
    reader = Reader(stack)
    try:
        stack.set_scenario("notification")
        for name in SERVICES:
            stack.start(name)
        for name in STATEFUL:
            stack.start(name, "--shard", "0")
        for case in CASES:
            send_case(stack, case, out)
        for row_case in ROWS:
            out.edge[row_case.name] = run_edge_case(stack, row_case)
        wait(lambda: settled(reader, out), SETTLE_S)
        out.depths = queue_depths(stack)
        final_batch(stack, reader, out)
        check_alive(stack, out)
        reader.drain_dlqs(out)
        reader.read_outputs(out)
        yield out
    finally:
        stack.stop_all()


# -- the corpus itself -------------------------------------------------------------


def test_the_corpus_has_80_kinds_each_named_once() -> None:
    names = [c.name for c in CASES] + [c.name for c in ROWS]
    assert len(names) >= 80
    assert len(set(names)) == len(names)
    bodies = [m.body for c in CASES for m in c.messages]
    assert len(set(bodies)) == len(bodies), "a DLQ copy must name its case"


# -- bad messages --------------------------------------------------------------------


def _where(out: Outcome, case: Case, tags: tuple[str, ...]) -> str:
    """Where a case's input ended up, for a failure message."""
    found = [f"{t} archived" for t in tags if t in out.archived]
    found += [f"{t} rejected" for t in tags if t in out.rejected]
    copies = [f"{d.queue}-dlq: {d.attributes.get('failure-reason')!r}" for d in out.dead_of(case)]
    return "; ".join(found + copies) or f"nowhere (stage queues: {out.depths})"


def _bad_tags(case: Case) -> tuple[str, ...]:
    return tuple(f"{case.name}/bad#{i}" for i in range(3))


DEAD = [c for c in CASES if isinstance(c.end, Dead)]


@pytest.mark.parametrize("case", DEAD, ids=[c.name for c in DEAD])
def test_a_bad_message_goes_to_its_dlq_at_once_with_a_specific_reason(
    run: Outcome, case: Case
) -> None:
    end = case.end
    assert isinstance(end, Dead)
    problems = _dead_problems(run, case, end)
    missing = [t for t in case.good if t not in run.archived]
    if missing:
        problems.append(f"the good envelope sent with it did not arrive: {missing}")
    assert not problems, "; ".join(problems)


def _dead_problems(run: Outcome, case: Case, end: Dead) -> list[str]:
    if case.name in run.refused:
        return [f"SQS refused the send: {run.refused[case.name]}"]
    copies = run.dead_of(case)
    if not copies:
        return [f"{case.why}: not in any DLQ; it is {_where(run, case, _bad_tags(case))}"]
    problems = []
    for copy in copies:
        reason = copy.attributes.get("failure-reason", "")
        if copy.queue not in end.queues:
            problems.append(f"in {copy.queue}-dlq, expected {list(end.queues)}")
        if not copy.attributes.get("failed-service"):
            problems.append("moved by the RedrivePolicy after retries, not by a Reject")
        if not any(k.lower() in reason.lower() for k in end.keywords):
            problems.append(f"failure-reason {reason!r:.300} names none of {end.keywords}")
    if len(copies) != 1:
        problems.append(f"{len(copies)} DLQ copies: {[c.queue for c in copies]}")
    delivered = [t for t in end.undelivered if t in run.archived or t in run.raw]
    if delivered:
        problems.append(f"delivered anyway: {delivered}")
    if end.undelivered and any(w["sensor_id"] == "corpus-mismatch" for w in run.windows):
        problems.append("its readings reached the windows")
    return problems


def test_a_body_over_the_limit_is_refused_at_the_door(run: Outcome) -> None:
    """SQS itself refuses a body past queues.max_body_bytes: no stage ever sees it."""
    sqs = sqs_client()
    attrs = sqs.get_queue_attributes(QueueUrl=run.ingest_url, AttributeNames=["All"])
    assert int(attrs["Attributes"]["MaximumMessageSize"]) == MAX_BODY_BYTES
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=run.ingest_url, MessageBody="x" * (MAX_BODY_BYTES + 1))


# -- bad records in good envelopes ---------------------------------------------------


def _rules(line: dict[str, Any]) -> set[Pair]:
    return {(e.get("field"), e.get("rule")) for e in line.get("errors", [])}


def _assert_rejected(run: Outcome, tag: str, rules: tuple[Pair, ...]) -> None:
    lines = run.rejected.get(tag, [])
    assert tag not in run.archived, f"{tag} was archived: {run.archived[tag][0]!r:.300}"
    assert len(lines) == 1, f"{tag} is in rejected/ {len(lines)} times"
    found = _rules(lines[0])
    assert not rules or found & set(rules), f"{tag} rejected for {found}, expected {rules}"


def _assert_archived_once(run: Outcome, tags: tuple[str, ...]) -> None:
    counts = {t: len(run.archived.get(t, [])) for t in tags}
    wrong = {t: n for t, n in counts.items() if n != 1}
    assert not wrong, f"archived copies (want 1 each): {wrong}"


RECORDS = [c for c in CASES if not isinstance(c.end, Dead)]


@pytest.mark.parametrize("case", RECORDS, ids=[c.name for c in RECORDS])
def test_a_bad_record_goes_to_rejected_with_its_rule_and_the_batch_goes_on(
    run: Outcome, case: Case
) -> None:
    copies = run.dead_of(case)
    end = case.end
    if not isinstance(end, SurvivingRejects):
        assert not copies, f"the envelope went to a DLQ: {_where(run, case, case.good)}"
    if isinstance(end, Rejected):
        for tag, rules in end.rules.items():
            _assert_rejected(run, tag, rules)
        _assert_archived_once(run, case.good)  # in = valid + invalid: each in one place
    elif isinstance(end, Kept):
        for tag, data in end.records.items():
            if tag in run.rejected:
                _assert_rejected(run, tag, end.rules or (("-", "-"),))
            else:
                assert run.archived.get(tag) == [data], f"{tag} not archived intact"
        _assert_archived_once(run, case.good)
    elif isinstance(end, OneReading):
        _assert_archived_once(run, case.good)
        docs = [w for w in run.windows if w["sensor_id"] == end.sensor_id]
        assert len(docs) == 1, f"{len(docs)} windows for one instant"
        assert docs[0]["record_count"] == 1 and len(docs[0]["reading_offsets_us"]) == 1
    elif isinstance(end, Bursts):
        _check_bursts(run, end)
    elif isinstance(end, SurvivingRejects):
        for tag, rules in end.rules.items():
            _assert_rejected(run, tag, rules)
        for tag in case.good:
            assert tag in run.archived or any(c.attributes.get("failure-reason") for c in copies), (
                f"{tag} neither archived nor in a DLQ"
            )


def _check_bursts(run: Outcome, end: Bursts) -> None:
    def notified(location: str, sensor: str) -> bool:
        return any(
            b.get("location") == location and sensor in b.get("sensor_ids", []) for b in run.ledger
        )

    assert notified(*end.normal), "the normal location's burst was not notified"
    if notified(*end.odd):
        return
    aside = [e for e in run.set_aside if any(t in json.dumps(e) for t in end.odd_tags)]
    if not aside:  # the validator may refuse the location itself (control_character)
        rejected = [t for t in end.odd_tags if t in run.rejected]
        assert rejected == list(end.odd_tags), (
            "the NUL location's burst was neither notified nor set aside"
        )
        for tag in rejected:
            _assert_rejected(run, tag, (("location", "control_character"),))
        return
    assert all(e.get("reason") for e in aside), "set aside without a reason"


# -- bad rows in edge databases ------------------------------------------------------


def _quarantined(run: EdgeRun, row_id: int) -> list[dict[str, Any]]:
    found = []
    for path in run.state.rglob("*.jsonl"):
        for text in path.read_text(errors="replace").splitlines():
            line = json.loads(text) if text.strip() else {}
            row = line["row"] if isinstance(line.get("row"), dict) else {}
            if row_id in (line.get("id"), line.get("row_id"), row.get("id")):
                found.append(line)
    return found


def _serial(case: RowCase, row_id: int) -> str:
    rows = {int(r["id"]): r for r in (*case.rows, *case.later)}
    return str(rows[row_id]["serial_number"])


@pytest.mark.parametrize("case", ROWS, ids=[c.name for c in ROWS])
def test_a_bad_edge_row_never_stops_the_upload_and_is_never_lost(
    run: Outcome, case: RowCase
) -> None:
    edge = run.edge[case.name]
    assert edge.codes == [0] * len(edge.codes), f"uploader exit codes {edge.codes}:\n{edge.stderr}"
    missing = sorted(i for i in case.good if _serial(case, i) not in run.archived)
    assert not missing, f"good rows {missing} never arrived"
    for row_id in case.bad:
        tag = _serial(case, row_id)
        quarantined = _quarantined(edge, row_id)
        if quarantined:
            assert all(q.get("reason") for q in quarantined), "quarantined without a reason"
            continue
        assert tag in run.rejected, f"row {row_id} is neither in rejected/ nor quarantined" + (
            f" (archived as {run.archived[tag][0]!r:.200})" if tag in run.archived else ""
        )
        _assert_rejected(run, tag, case.rules)


# -- and the pipeline is still standing ----------------------------------------------


def test_every_service_survives_and_a_final_batch_flows_end_to_end(run: Outcome) -> None:
    down = {name: problem for name, problem in run.alive.items() if problem}
    assert not down, f"services down: {down}"
    assert run.edge["final"].codes == [0]
    assert FINAL_TAG in run.archived, "the final envelope never reached the archive"
    finals = [str(r["serial_number"]) for r in FINAL_ROWS]
    assert all(t in run.archived for t in finals), "the final edge batch never arrived"
    assert run.final_window, "no window written for the final batch"
