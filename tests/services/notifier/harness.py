"""The notifier handler of one shard without AWS, driven the way the consumer loop
drives it: ``bind`` an acknowledger, ``handle`` received messages, ``on_tick`` with an
injected clock. Checkpoint, ledger and error outputs live in :class:`MemoryObjectStore`;
the notifications FIFO queue is a fake that keeps every ``SendMessage`` (it does *not*
de-duplicate, so a burst sent twice shows) and refuses what SQS refuses (the rules
test_live_send.py checks against LocalStack): a character outside SQS's set in the body
or an attribute value, a group or de-duplication id that is not 1-128 characters of
ASCII letters, digits and punctuation, a message over 256 KiB."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import Envelope
from sensorpipe.objects import read_jsonl
from sensorpipe.runtime import HOLD, Message
from sensorpipe.stateful import SequencedHandler, checkpoint_key, read_checkpoint
from sensorpipe.store import Expect, MemoryObjectStore, Stored, StoreError
from services.notifier.config import NotifierSettings, resolve
from services.notifier.handler import build_handler
from tests.moto_stack import message_of
from tests.sensorpipe.stateful.acks import RecordingAcks as Acks

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

RULE = {"min_anomalies": 3, "window_seconds": 60, "cooldown_seconds": 120}
GRACE_S = 10.0
VISIBILITY_S = 5  # the restart quiet time is this + 5 s
START_CLOCK = 1_000.0
# Locations the spec allows or raw scenarios carry: every one must be sendable.
ODD_LOCATIONS = [
    "Plant\x00North",
    "Line\nTwo",
    "a/b",
    "..",
    ".",
    "\u202eRTL\u202c",
    "😀" * 128,
    "x" * 1000,
    "tab\there",
    "ends with U+FFFE\ufffe",
]


def config(shards: int = 1, **windowing: Any) -> PipelineConfig:
    return PipelineConfig(
        queues={"visibility_timeout_seconds": VISIBILITY_S, "notify_shards": shards},
        windowing={"grace_seconds": GRACE_S, "idle_flush_seconds": 30, **windowing},
        notification=RULE,
    )


class Clock:
    def __init__(self) -> None:
        self.now = START_CLOCK

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Sent:
    body: str
    group_id: str
    dedup_id: str
    attributes: dict[str, str]

    @property
    def note(self) -> dict[str, Any]:
        return dict(orjson.loads(self.body))


# What SQS takes in a body and in attribute values, and in FIFO ids.
SQS_TEXT = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
FIFO_ID = re.compile(
    "[" + re.escape(string.ascii_letters + string.digits + string.punctuation) + "]{1,128}"
)
MAX_MESSAGE_BYTES = 256 * 1024


def _refused(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "SendMessage")


def sqs_problem(kwargs: dict[str, Any]) -> ClientError | None:
    """What SQS says to a SendMessage with these arguments (None: accepted)."""
    body, attributes = kwargs["MessageBody"], kwargs.get("MessageAttributes", {})
    if not SQS_TEXT.fullmatch(body):
        return _refused("InvalidMessageContents", "Invalid characters found in the body")
    for name in ("MessageGroupId", "MessageDeduplicationId"):
        if not FIFO_ID.fullmatch(kwargs[name]):
            return _refused("InvalidParameterValue", f"{name} {kwargs[name]!r} is invalid")
    size = len(body.encode())
    for name, value in attributes.items():
        text = value["StringValue"]
        if not text or not SQS_TEXT.fullmatch(text):
            return _refused("InvalidParameterValue", f"attribute {name}: invalid characters")
        size += len(name.encode()) + len(value["DataType"].encode()) + len(text.encode())
    if size > MAX_MESSAGE_BYTES:
        return _refused("InvalidParameterValue", f"message of {size} bytes is too long")
    return None


class FakeFifo:
    """What the sender needs of SQS: the queue URL and SendMessage."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.fail_next = 0  # that many sends fail with a ClientError
        self.refused: list[dict[str, Any]] = []  # sends refused for their content
        # Locations whose notifications are refused as SQS refuses bad content.
        self.refuse_locations: set[str] = set()

    def get_queue_url(self, *, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"https://sqs.test/000000000000/{QueueName}"}

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        if self.fail_next:
            self.fail_next -= 1
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "try again"}}, "SendMessage"
            )
        assert kwargs["QueueUrl"].endswith(".fifo"), kwargs["QueueUrl"]
        problem = sqs_problem(kwargs)
        if problem is None and orjson.loads(kwargs["MessageBody"])["location"] in (
            self.refuse_locations
        ):
            problem = _refused("InvalidParameterValue", "refused for the test")
        if problem is not None:
            self.refused.append(kwargs)
            raise problem
        self.sent.append(
            Sent(
                kwargs["MessageBody"],
                kwargs["MessageGroupId"],
                kwargs["MessageDeduplicationId"],
                {k: v["StringValue"] for k, v in kwargs["MessageAttributes"].items()},
            )
        )
        return {"MessageId": f"m{len(self.sent)}"}

    def client(self) -> SQSClient:
        return cast("SQSClient", self)


class FlakyStore(MemoryObjectStore):
    """A MemoryObjectStore whose writes to ``fail_keys`` fail while ``failing`` is set."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.failing = False
        self.fail_keys: set[str] = set()

    def put(
        self,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        gzipped: bool = False,
        expect: Expect | str = Expect.ANY,
    ) -> str:
        if self.failing and key in self.fail_keys:
            raise StoreError(f"writing {self.uri(key)} failed: injected")
        return super().put(
            key,
            body,
            metadata=metadata,
            content_type=content_type,
            gzipped=gzipped,
            expect=expect,
        )


@dataclass
class World:
    """What outlives a notifier process: its buckets and the notifications queue."""

    archival: FlakyStore = field(default_factory=lambda: FlakyStore("archival"))
    errors: MemoryObjectStore = field(default_factory=lambda: MemoryObjectStore("error"))
    fifo: FakeFifo = field(default_factory=FakeFifo)
    clock: Clock = field(default_factory=Clock)

    def shard(
        self, shard: int = 0, *, shards: int = 1, max_in_flight: int = 20_000, **windowing: Any
    ) -> Shard:
        """Start a notifier process for ``shard`` (it loads the shard's checkpoint)."""
        cfg = config(shards, **windowing)
        settings = resolve(cfg, NotifierSettings(max_in_flight=max_in_flight))
        handler = build_handler(
            cfg,
            settings,
            archival=self.archival,
            error=self.errors,
            sqs=self.fifo.client(),
            shard=shard,
            clock=self.clock,
        )
        acks = Acks()
        handler.bind(acks)
        return Shard(self, handler, acks, shard)

    # -- what came out -------------------------------------------------------------------

    def bodies(self) -> dict[str, str]:
        """burst id -> the body sent (fails if any burst was sent twice)."""
        out: dict[str, str] = {}
        for sent in self.fifo.sent:
            assert sent.dedup_id not in out, f"burst {sent.dedup_id} sent twice"
            out[sent.dedup_id] = sent.body
        return out

    def bursts(self) -> dict[str, list[tuple[str, ...]]]:
        got: dict[str, list[tuple[str, ...]]] = {}
        for body in self.bodies().values():
            note = orjson.loads(body)
            got.setdefault(note["location"], []).append(tuple(note["reading_keys"]))
        return {k: sorted(v) for k, v in got.items()}

    def error_lines(self, prefix: str) -> dict[str, list[dict[str, Any]]]:
        return {
            key: read_jsonl(stored.body)
            for key, stored in sorted(self.errors.objects.items())
            if key.startswith(prefix + "/")
        }

    def late_keys(self) -> set[str]:
        lines = self.error_lines("late-anomalies")
        return {entry["reading_key"] for entries in lines.values() for entry in entries}

    def checkpoint(self, shard: int = 0) -> dict[str, Any]:
        stored = self.archival.get(checkpoint_key("notifier", shard))
        assert stored is not None, "no checkpoint written"
        return read_checkpoint(stored.body)

    def ledger(self) -> dict[str, Stored]:
        return {k: v for k, v in self.archival.objects.items() if k.startswith("notifications/")}


@dataclass
class Shard:
    """One notifier process (its handler) and the loop's acknowledgements."""

    world: World
    handler: SequencedHandler
    acks: Acks
    number: int
    delivered: list[Message] = field(default_factory=list)

    def receive(self, messages: list[Message]) -> None:
        """One receive: handle, then the loop's tick (every outcome is a hold)."""
        self.delivered.extend(messages)
        outcomes = self.handler.handle(messages)
        assert outcomes == [HOLD] * len(messages), outcomes
        self.handler.on_tick()

    def feed(self, messages: Iterable[Message], sizes: Iterable[int] | None = None) -> None:
        """Receive ``messages`` in groups (of ``sizes``, else 10, as SQS returns them)."""
        pending = list(messages)
        for size in sizes or iter(lambda: 10, 0):
            if not pending:
                break
            self.receive(pending[:size])
            pending = pending[size:]
        if pending:
            self.receive(pending)

    def finish(self) -> None:
        """Every source goes quiet (idle rule, after the restart quiet time): the last
        decisions are made and committed."""
        for _ in range(2):
            self.world.clock.now += 1_000
            self.handler.on_tick()

    def unsettled(self) -> list[Message]:
        """Messages delivered to this process and never acknowledged: what SQS gives
        the next process after a crash."""
        done = self.acks.settled()
        seen: dict[str, Message] = {}
        for m in self.delivered:
            if m.receipt_handle not in done:
                seen.setdefault(m.receipt_handle, m)
        return list(seen.values())


def messages(envelopes: Iterable[Envelope]) -> list[Message]:
    """Each envelope as received from SQS (its own message id and receipt handle)."""
    return [message_of(e) for e in envelopes]


def counter(name: str, **labels: str) -> float:
    """A Prometheus sample of this process (0 before its first increment)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
