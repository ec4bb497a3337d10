"""The aggregator's batch handler: fold readings into windows, ack only what is written.

Durability: every message whose readings were folded is answered HOLD (the runtime's
heartbeat keeps it invisible) and acked only once every window it feeds is written or
proven written, and its late readings are in the side output. A crash loses nothing:
the unacked messages come back and rebuild their windows. Nothing is counted twice:
windows are written only if absent, with their member reading ids, so a rebuilt window
that was written before is recognised (its readings are members: a replay) and any
reading it lacks goes to the late side output.

After a start, windows close only once messages held by a previous process are back and
folded (recovery.py). Meanwhile a first delivery behind the watermark whose window is
not written yet is not called late at once: a redelivered message may still bring the
same reading into that window, so the decision waits until the window is written.

On shutdown open windows are not flushed early: their messages are handed back by the
runtime and the next process rebuilds them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Gauge

from sensorpipe.config import PipelineConfig
from sensorpipe.config.pipeline import BucketKind
from sensorpipe.envelope import EnvelopeError
from sensorpipe.errors import SensorPipeError
from sensorpipe.objects import ObjectWriter
from sensorpipe.runtime import (
    ACK,
    HOLD,
    BatchHandler,
    Message,
    Outcome,
    Reject,
    Retry,
    ServiceContext,
)
from sensorpipe.runtime.metrics import PREFIX, RECORDS_PROCESSED
from services.aggregator.config import AggregatorSettings, shard_queue
from services.aggregator.intake import Sorted, parse_readings, sort_readings, unusable_lines
from services.aggregator.output import (
    LateLines,
    LateStore,
    OutputReadError,
    WindowStore,
    late_key,
    render_window,
)
from services.aggregator.recovery import BacklogProbe, RecoveryGate, queue_backlog
from services.aggregator.windows import (
    AFTER_WATERMARK,
    WINDOW_ALREADY_WRITTEN,
    OpenWindow,
    Reading,
    WindowBook,
    WindowId,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

SERVICE = "aggregator"
_RECOVERY_MARGIN_S = 5.0
_STORAGE_ERRORS = (SensorPipeError, BotoCoreError, ClientError)

WINDOWS_CLOSED = Counter(
    f"{PREFIX}_aggregator_windows_closed_total",
    "Windows closed, by what closed them (watermark, idle) and result (written, replay)",
    ["cause", "result"],
)
LATE_RECORDS = Counter(
    f"{PREFIX}_aggregator_late_records_total",
    "Readings sent to the late side output, by reason",
    ["reason"],
)
OPEN_WINDOWS = Gauge(f"{PREFIX}_aggregator_open_windows", "Windows collecting readings")
HELD_MESSAGES = Gauge(
    f"{PREFIX}_aggregator_held_messages", "Messages waiting for their windows to be written"
)


@dataclass(slots=True)
class HeldMessage:
    """A taken message: acked when no window it feeds is open, no late decision of it
    is pending and its late lines are stored."""

    message: Message
    pending: set[WindowId]
    late_key: str
    late_lines: list[dict[str, Any]]
    ids: dict[str, Any]
    deferred: list[tuple[Reading, WindowId]] = field(default_factory=list)
    late_dirty: bool = False


@dataclass(frozen=True, slots=True)
class _Stored:
    """A closed window's members: ours (written) or the earlier writer's."""

    members: frozenset[str]
    written: bool


class AggregatorHandler(BatchHandler):
    name = SERVICE

    def __init__(
        self,
        config: PipelineConfig,
        windows: WindowStore,
        late: LateStore,
        settings: AggregatorSettings,
        *,
        recovery_s: float,
        backlog: BacklogProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        windowing = config.windowing
        self.tick_interval_s = settings.tick_interval_seconds
        self.max_in_flight = settings.max_in_flight
        self._windows = windows
        self._late = late
        self._clock = clock
        self._book = WindowBook(
            size=windowing.window_seconds,
            grace_s=windowing.grace_seconds,
            idle_flush_s=windowing.idle_flush_seconds,
            remembered=settings.remembered_windows,
        )
        self._lines = LateLines(
            window_seconds=windowing.window_seconds, grace_s=windowing.grace_seconds
        )
        self._held: dict[str, HeldMessage] = {}
        self._unsettled: set[str] = set()  # held messages to look at again
        self._recovery = RecoveryGate(clock=clock, recovery_s=recovery_s, backlog=backlog)
        # Window writes run in parallel: each S3 round trip is tens of milliseconds.
        self._writers = ThreadPoolExecutor(
            max_workers=settings.writer_threads, thread_name_prefix="window-writer"
        )

    @classmethod
    def from_context(cls, context: ServiceContext) -> AggregatorHandler:
        config, sqs = context.config, context.sqs
        queue = shard_queue(config, context.settings.shard, context.settings.pipeline_config)
        backlog = queue_backlog(sqs, sqs.get_queue_url(QueueName=queue)["QueueUrl"])
        return cls.build(config, context.s3, AggregatorSettings(), backlog=backlog)

    @classmethod
    def build(
        cls,
        config: PipelineConfig,
        s3: S3Client,
        settings: AggregatorSettings,
        *,
        backlog: BacklogProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> AggregatorHandler:
        writer = ObjectWriter(s3, service=SERVICE)
        aggregated = config.buckets.name(BucketKind.AGGREGATED)
        windows = WindowStore(s3, writer, aggregated, config.windowing.output_prefix)
        late = LateStore(s3, writer, config.buckets.name(BucketKind.ERROR))
        recovery = settings.recovery_seconds
        if recovery is None:
            recovery = config.queues.visibility_timeout_seconds + _RECOVERY_MARGIN_S
        return cls(
            config, windows, late, settings, recovery_s=recovery, backlog=backlog, clock=clock
        )

    # -- the runtime's calls ---------------------------------------------------------------

    def handle(self, messages: list[Message]) -> list[Outcome]:
        now = self._clock()
        outcomes = [self._take(message, now) for message in messages]
        self._close_due(now)
        return outcomes

    def on_tick(self) -> None:
        self._close_due(self._clock())

    def on_shutdown(self) -> None:
        # Deliberately no early flush: a window written now would miss the readings still
        # on their way, and first-writer-wins would make that final.
        log.info(
            "stopping with %d open window(s); %d held message(s) go back to the queue",
            len(self._book.open),
            len(self._held),
        )
        self._writers.shutdown(wait=True)

    @property
    def open_windows(self) -> dict[WindowId, OpenWindow]:
        return self._book.open

    # -- taking a message in ---------------------------------------------------------------

    def _take(self, message: Message, now: float) -> Outcome:
        try:
            envelope = message.envelope()
        except EnvelopeError as exc:
            return Reject(f"not a batch envelope: {exc}")
        ids = {
            "batch_id": envelope.batch_id,
            "scenario": envelope.scenario,
            "config_version": envelope.config_version,
        }
        readings, unusable = parse_readings(envelope.records)
        key = late_key(envelope.batch_id, min((r.at for r in readings), default=None))
        try:
            sorted_ = sort_readings(
                self._book,
                readings,
                ids=ids,
                lines=self._lines,
                lookup=self._windows.members,
                late_store=self._late,
                late_key=key,
                redelivered=message.receive_count > 1,
                recovering=self._recovery.recovering,
            )
            sorted_.late.extend(unusable_lines(unusable, ids, self._lines))
            if sorted_.late:
                self._late.write(key, sorted_.late, _late_metadata(ids))
        except _STORAGE_ERRORS as exc:
            return Retry(f"batch {envelope.batch_id}: {exc}")
        handle = message.receipt_handle
        for window, group in sorted_.folds.items():
            rebuild = window in sorted_.rebuilds
            self._book.open_window(window, rebuild=rebuild, now=now).fold(
                handle,
                list(group.values()),
                scenario=envelope.scenario,
                config_version=envelope.config_version,
                batch_id=envelope.batch_id,
                now=now,
            )
        # A duplicate of a reading in an open window is safe to drop only once that
        # window is written: until then the message (e.g. a copy redelivered after its
        # visibility lapsed) is the reading's only durable source, so it waits too.
        covered = sorted_.covered - sorted_.folds.keys()
        for window in covered:
            self._book.open[window].contributors.setdefault(handle, [])
        self._book.advance(readings)
        self._count(sorted_)
        if not sorted_.folds and not sorted_.deferred and not covered:
            return ACK
        self._held[handle] = HeldMessage(
            message, set(sorted_.folds) | covered, key, sorted_.late, ids, sorted_.deferred
        )
        if sorted_.deferred:
            self._unsettled.add(handle)
        HELD_MESSAGES.set(len(self._held))
        OPEN_WINDOWS.set(len(self._book.open))
        return HOLD

    def _count(self, sorted_: Sorted) -> None:
        if sorted_.duplicates:
            RECORDS_PROCESSED.labels(SERVICE, "duplicate").inc(sorted_.duplicates)
        for line in sorted_.late:
            LATE_RECORDS.labels(line["reason"]).inc()
        if sorted_.late:
            RECORDS_PROCESSED.labels(SERVICE, "late").inc(len(sorted_.late))

    def _mark_late(
        self, held: HeldMessage, reading: Reading, reason: str, window: WindowId
    ) -> None:
        watermark = self._book.watermark(reading.sensor_id)
        held.late_lines.append(self._lines.line(reading, reason, held.ids, window, watermark))
        held.late_dirty = True
        LATE_RECORDS.labels(reason).inc()
        RECORDS_PROCESSED.labels(SERVICE, "late").inc()

    # -- closing windows -------------------------------------------------------------------

    def _close_due(self, now: float) -> None:
        if not self._recovery.open(now, self.deliveries):
            return
        due = self._book.due(now)
        touched = set(self._unsettled)
        # Storage calls run in parallel; state changes here, on the handler's thread.
        for window, stored in zip(due, self._writers.map(self._store, due), strict=True):
            if stored is None:
                continue  # storage failed: the window stays open and is retried
            cause = "watermark" if self._book.behind_watermark(window.id) else "idle"
            self._closed(window, stored, cause)
            touched.update(window.contributors)
        self._settle(touched)
        OPEN_WINDOWS.set(len(self._book.open))

    def _store(self, window: OpenWindow) -> _Stored | None:
        """Write the window if absent, else read the members of the one written; None
        if storage failed (logged)."""
        rendered = render_window(self._windows.prefix, window)
        try:
            if self._windows.write_if_absent(rendered):
                return _Stored(rendered.members, written=True)
            existing = self._windows.members(window.id)
            if existing is None:
                raise OutputReadError(f"{rendered.key}: write refused, yet no object found")
            return _Stored(existing, written=False)
        except _STORAGE_ERRORS as exc:
            log.warning("closing window %s failed, retrying on the next tick: %s", window.id, exc)
            return None

    def _closed(self, window: OpenWindow, stored: _Stored, cause: str) -> None:
        if stored.written:
            RECORDS_PROCESSED.labels(SERVICE, "windowed").inc(len(stored.members))
        WINDOWS_CLOSED.labels(cause, "written" if stored.written else "replay").inc()
        self._book.closed(window.id, stored.members)
        replayed = 0
        for handle, readings in window.contributors.items():
            held = self._held[handle]  # held until every window it feeds is closed
            held.pending.discard(window.id)
            if stored.written:
                continue
            # Another writer came first: what it holds is a replay; the rest arrived
            # after that window was final, so it is late.
            for reading in readings:
                if reading.key in stored.members:
                    replayed += 1
                else:
                    self._mark_late(held, reading, WINDOW_ALREADY_WRITTEN, window.id)
        if replayed:
            RECORDS_PROCESSED.labels(SERVICE, "duplicate").inc(replayed)

    def _resolve_deferred(self, held: HeldMessage) -> None:
        """Late-or-duplicate decisions that waited for windows being rebuilt."""
        waiting: list[tuple[Reading, WindowId]] = []
        for reading, window in held.deferred:
            if window in self._book.open:
                waiting.append((reading, window))
                continue
            try:
                members = self._book.written_members(window, self._windows.members)
            except _STORAGE_ERRORS as exc:
                log.warning("reading window %s failed, retrying: %s", window, exc)
                waiting.append((reading, window))
                continue
            if members is not None and reading.key in members:
                RECORDS_PROCESSED.labels(SERVICE, "duplicate").inc()
            else:
                self._mark_late(held, reading, AFTER_WATERMARK, window)
        held.deferred = waiting

    def _settle(self, handles: set[str]) -> None:
        """Ack every message that is complete: windows written, decisions made, late
        lines stored."""
        done: list[Message] = []
        for handle in handles:
            held = self._held.get(handle)
            if held is None:
                self._unsettled.discard(handle)
                continue
            if held.deferred:
                self._resolve_deferred(held)
            if held.deferred:
                self._unsettled.add(handle)  # look again on the next pass
                continue
            if held.pending:
                continue
            if held.late_dirty:
                try:
                    self._late.write(held.late_key, held.late_lines, _late_metadata(held.ids))
                except _STORAGE_ERRORS as exc:
                    log.warning("late output %s failed, retrying: %s", held.late_key, exc)
                    self._unsettled.add(handle)
                    continue
                held.late_dirty = False
            self._unsettled.discard(handle)
            done.append(held.message)
            del self._held[handle]
        if done and self.acknowledger is not None:
            self.acknowledger.ack(done)
        HELD_MESSAGES.set(len(self._held))


def _late_metadata(ids: dict[str, Any]) -> dict[str, str]:
    return {
        "kind": "late",
        "batch-id": str(ids["batch_id"]),
        "scenario": str(ids["scenario"]),
        "config-version": str(ids["config_version"]),
    }
