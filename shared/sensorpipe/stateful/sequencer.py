"""The one restart and recovery mechanism of the stateful stages.

A stateful stage (the aggregator, the notifier) is a :class:`Stage`: state it can
``snapshot`` and ``restore``, a pure ``apply`` of one batch and ``advance`` to a
watermark, and the I/O around them (``prepare`` fetches what ``apply`` needs to know,
``flush`` writes what ``apply`` and ``advance`` produced). :class:`SequencedHandler`
runs it over the consumer loop:

1. Every message is decoded and classified by its position (streams.py). The parts of
   a source's batch are collected until they cover the whole batch; then the batch is
   applied, whole (its parts in split order, so the stage sees the source's rows in the
   source's order) and only once every earlier batch of its source was applied. What
   the stage computes is then the same whatever order SQS delivered the parts in, and
   however stages split them or the router sharded them. A part applied before (a
   redelivery) is recognised and not applied again.
2. After every batch it applies, the stage advances to the new watermark: windows
   close, bursts are decided, exactly where an in-order run would have done it.
3. On every tick (the consumer ticks after every received batch, and every tick
   interval when idle), within a received batch once ``commit_interval_s`` has passed,
   and on shutdown, the handler *commits*: the stage flushes its outputs, then the
   checkpoint (every stream's progress and the stage's state) is written with a
   conditional put, then the messages it includes are acknowledged. A message is held
   only until the commit after its batch was applied, so a restart resumes at once from
   the checkpoint: only what was applied since the last commit, or still being
   collected, comes back (within one lease: ``BatchHandler.lease_s``).
4. If the checkpoint was written by another process meanwhile (two consumers of one
   shard), or applying fails, the handler resets: it re-reads the checkpoint, forgets
   what it held and hands those messages back for redelivery.

Outputs are written before the checkpoint that records them, so a crash in between
rewrites them (same keys, same content) from the redelivered messages.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any, Protocol

import orjson

from sensorpipe.envelope import Envelope
from sensorpipe.runtime import HOLD, BatchHandler, Message, Outcome, Reject
from sensorpipe.stateful.parts import Coverage
from sensorpipe.stateful.streams import StreamBook, Verdict
from sensorpipe.store import Expect, ObjectStore, StoreConflict, StoreError

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
_REFRESH_S = 86_400.0
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class Batch:
    """What a stage applies at once: the parts of one source batch in split order (or
    what arrived of a batch passed over, or one message without a position).

    Parameters:
        parts: the envelopes, records in the source's order.
        name: a stable name for it, for keys of what it produces: ``<stream>-b<seq>``
            for a whole batch, with ``-p<paths>`` for pieces; the batch id of a message
            without a position.
    """

    parts: list[Envelope]
    name: str


class Stage(Protocol):
    """What a stateful stage supplies. ``apply`` and ``advance`` are pure state
    changes; ``prepare`` and ``flush`` are its only I/O and may raise StoreError (the
    sequencer then tries again later, nothing lost)."""

    def restore(self, snapshot: dict[str, Any] | None) -> None:
        """Replace the state with a checkpoint's (None: start empty)."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The state to checkpoint (JSON-ready)."""
        ...

    def prepare(self, batch: Batch) -> None:
        """Fetch whatever ``apply(batch)`` needs to know (e.g. windows written before)."""
        ...

    def apply(self, batch: Batch) -> None:
        """Take one batch in (fold, revise, admit, set aside)."""
        ...

    def advance(self, watermark_us: int) -> bool:
        """Act on the watermark (close windows, decide bursts); True if state changed."""
        ...

    def flush(self) -> None:
        """Write the outputs produced since the last flush (idempotent: what fails is
        written again on the next commit)."""
        ...


class Observer(Protocol):
    """Hooks on the sequencer's events (metrics.py supplies the Prometheus one)."""

    def taken(self, verdict: str, count: int) -> None: ...

    def held(self, count: int) -> None: ...

    def gap_skipped(self, stream: str, batches: int) -> None: ...

    def committed(self, seconds: float, size: int, watermark_us: int | None) -> None: ...

    def reset(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SequencerSettings:
    """
    Parameters:
        commit_interval_s: within one received batch, commit once this much time
            passed since the last commit (ticks commit anyway).
        max_held: messages held for incomplete or later batches before a gap is given
            up early (keep it below the consumer's max_in_flight).
    """

    commit_interval_s: float = 0.5
    max_held: int = 500


@dataclass(slots=True)
class _Collecting:
    """The parts of one source batch received so far."""

    coverage: Coverage = field(default_factory=Coverage)
    parts: dict[str, Envelope] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)  # duplicates too: held with it


class _Kind(Enum):
    NEXT = "next"  # a stream's next batch, whole
    PASSED = "passed"  # a stream's next batch given up: what arrived of it, maybe nothing
    HOLE = "hole"  # one part of a batch passed over before
    UNSEQUENCED = "unsequenced"


@dataclass
class _Unit:
    kind: _Kind
    parts: list[Envelope]
    messages: list[Message]
    stream: str = ""
    seq: int = -1
    coverage: Coverage | None = None

    @property
    def max_event_us(self) -> int | None:
        known = [p.max_event_us for p in self.parts if p.max_event_us is not None]
        return max(known) if known else None

    def join(self, part: Envelope, path: str) -> None:
        """A piece arriving for a batch given up but not applied yet joins it."""
        coverage = self.coverage = self.coverage or Coverage()
        if coverage.add(path):
            pieces = [p for p in self.parts if not _path(p).startswith(path)]
            self.parts = sorted([*pieces, part], key=_path)
            self.__dict__.pop("batch", None)  # the cached Batch lacks the piece

    @cached_property
    def batch(self) -> Batch:
        first = self.parts[0]
        position = first.position
        if position is None:
            return Batch(self.parts, first.batch_id)
        name = f"{position.stream}-b{position.seq:09d}"
        if self.kind is not _Kind.NEXT:
            paths = [p.position.part for p in self.parts if p.position is not None]
            name += "-p" + "_".join(path or "all" for path in paths)
        return Batch(self.parts, name)


@dataclass(slots=True)
class _Pending:
    """What the next commit settles."""

    messages: list[Message] = field(default_factory=list)
    changed: bool = False


class SequencedHandler(BatchHandler):
    """A consumer-loop handler that runs a :class:`Stage` in source order, with
    checkpoints.

    Parameters:
        name: the service name (logs, metrics, the checkpoint's header).
        stage: the stateful stage.
        book: the streams' progress and watermark rules.
        store: where the checkpoint lives.
        checkpoint_key: its key (one per shard).
        observer: metrics hooks.
        settings: commit interval and hold limit.
        clock: monotonic processing time.
        restart_quiet_s: after a start, streams do not count as idle for this long
            (messages a stopped process held come back within a visibility timeout).
    """

    isolate_errors = False  # it holds messages: see handle()

    def __init__(
        self,
        name: str,
        stage: Stage,
        book: StreamBook,
        store: ObjectStore,
        checkpoint_key: str,
        observer: Observer,
        settings: SequencerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        restart_quiet_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.stage = stage
        self.book = book
        self._store = store
        self._key = checkpoint_key
        self._observer = observer
        self._settings = settings
        self._clock = clock
        self._etag: str | None = None
        self._ready: deque[_Unit] = deque()
        self._queued: dict[tuple[str, int], _Unit] = {}  # next batches in the ready line
        self._collecting: dict[str, dict[int, _Collecting]] = {}
        self._pending = _Pending()
        self._last_commit = -1e18
        self.load()
        self.book.idle_not_before = clock() + restart_quiet_s

    # -- the consumer loop's calls ---------------------------------------------------------

    def handle(self, messages: list[Message]) -> list[Outcome]:
        # Never raises (isolate_errors is False: what it holds cannot be handed to it
        # again one by one). A message it cannot take in is rejected on its own; a
        # failure applying or committing resets, handing back everything held.
        outcomes = [self._take_in(message, self._clock()) for message in messages]
        try:
            now = self._clock()
            self._drain(now)
            if now - self._last_commit >= self._settings.commit_interval_s:
                self.commit()
        except Exception as exc:
            log.exception("%s: applying the received batch failed", self.name)
            self._reset(f"handler error: {type(exc).__name__}: {exc}", [])
        return outcomes

    def _take_in(self, message: Message, now: float) -> Outcome:
        batch = message.stamped_envelope()
        if isinstance(batch, Reject):
            return batch
        try:
            self._take(message, batch, now)
        except Exception as exc:
            log.exception("%s: cannot take message %s in", self.name, message.message_id)
            self._forget(message)
            return Reject(f"handler error: {type(exc).__name__}: {exc}")
        return HOLD

    def _forget(self, message: Message) -> None:
        """Drop a rejected message from whatever it was held in (its batch stays)."""
        handle = message.receipt_handle

        def others(held: list[Message]) -> list[Message]:
            return [m for m in held if m.receipt_handle != handle]

        self._pending.messages = others(self._pending.messages)
        for unit in self._ready:
            unit.messages = others(unit.messages)
        for seqs in self._collecting.values():
            for collecting in seqs.values():
                collecting.messages = others(collecting.messages)

    def on_tick(self) -> None:
        now = self._clock()
        for stream in self.book.overdue(now):
            self._give_up(stream, "a missing batch held it back for the gap timeout")
        self._drain(now)
        self._advance(now)
        # A quiet shard still rewrites its checkpoint daily: a lifecycle rule never
        # moves it to an archive storage class it could not be read back from.
        stale = now - self._last_commit >= _REFRESH_S
        if self._pending.messages or self._pending.changed or stale:
            self.commit()

    def on_shutdown(self) -> None:
        # What is still being collected goes back with the runtime's hand-back; what
        # was applied is committed first so that it is not redone.
        if self._pending.messages or self._pending.changed:
            self.commit()
        log.info(
            "stopping: checkpoint at %s; %d held message(s) go back to the queue",
            self._store.uri(self._key),
            self.held_count(),
        )

    def held_count(self) -> int:
        """Messages held for batches not applied yet."""
        collecting = sum(
            len(c.messages) for seqs in self._collecting.values() for c in seqs.values()
        )
        return collecting + sum(len(u.messages) for u in self._ready)

    # -- taking messages in ------------------------------------------------------------

    def _take(self, message: Message, batch: Envelope, now: float) -> None:
        position = batch.position
        if position is None:
            self._observer.taken("unsequenced", 1)
            self._ready.append(_Unit(_Kind.UNSEQUENCED, [batch], [message]))
            return
        verdict = self.book.classify(position, now)
        self._observer.taken(verdict.value, 1)
        if verdict is Verdict.APPLIED:
            self._pending.messages.append(message)  # acked with the next commit
            return
        if verdict is Verdict.HOLE:
            self._ready.append(_Unit(_Kind.HOLE, [batch], [message], position.stream))
            return
        queued = self._queued.get((position.stream, position.seq))
        if queued is not None:  # its batch is in the ready line already
            queued.messages.append(message)
            if queued.kind is _Kind.PASSED:  # given up incomplete: a piece may join it
                queued.join(batch, position.part)
            return
        seqs = self._collecting.setdefault(position.stream, {})
        collecting = seqs.setdefault(position.seq, _Collecting())
        collecting.messages.append(message)
        if collecting.coverage.add(position.part):
            # A redelivery split differently may cover pieces held already: keep one.
            kept = {p: b for p, b in collecting.parts.items() if not p.startswith(position.part)}
            collecting.parts = {**kept, position.part: batch}
        self._ripen(position.stream)
        self.book.waiting(position.stream, now, waits=position.stream in self._collecting)
        if self.held_count() > self._settings.max_held:
            self._give_up(position.stream, "too many messages are held for missing ones")

    def _ripen(self, stream: str) -> None:
        """Queue the stream's next batch if all its parts are in."""
        seqs = self._collecting.get(stream)
        if not seqs:
            return
        seq = self.book.next_of(stream)
        collecting = seqs.get(seq)
        if collecting is None or not collecting.coverage.complete:
            return
        del seqs[seq]
        if not seqs:
            del self._collecting[stream]
        self._queue(_Unit(_Kind.NEXT, _in_order(collecting), collecting.messages, stream, seq))

    def _queue(self, unit: _Unit) -> None:
        if unit.kind in (_Kind.NEXT, _Kind.PASSED):
            self._queued[(unit.stream, unit.seq)] = unit
        self._ready.append(unit)

    def _give_up(self, stream: str, why: str) -> None:
        """Stop waiting: apply what was collected of the stream, in order, complete or
        not, passing over whatever is missing."""
        seqs = self._collecting.pop(stream, {})
        if not seqs:
            return
        first, last = self.book.next_of(stream), max(seqs)
        missing = 0
        for seq in range(first, last + 1):
            if (stream, seq) in self._queued:
                continue  # in the ready line already (its prepare failed): keep that one
            collecting = seqs.get(seq)
            if collecting is not None and collecting.coverage.complete:
                parts = _in_order(collecting)
                self._queue(_Unit(_Kind.NEXT, parts, collecting.messages, stream, seq))
                continue
            missing += 1
            if collecting is None:
                self._queue(_Unit(_Kind.PASSED, [], [], stream, seq))
            else:
                parts = _in_order(collecting)
                unit = _Unit(_Kind.PASSED, parts, collecting.messages, stream, seq)
                unit.coverage = collecting.coverage
                self._queue(unit)
        log.warning(
            "stream %s: going on without %d incomplete batch(es) among %d-%d: %s; what is "
            "missing is applied when it arrives (its readings then revise what was "
            "written, or are late)",
            stream,
            missing,
            first,
            last,
            why,
        )
        self._observer.gap_skipped(stream, missing)
        self.book.waiting(stream, self._clock(), waits=False)

    # -- applying --------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        """Apply everything ready, in order; each applied batch may ripen the next."""
        while self._ready:
            unit = self._ready[0]
            if unit.parts:
                try:
                    self.stage.prepare(unit.batch)
                except StoreError as exc:
                    log.warning("cannot prepare %s yet: %s", _describe(unit), exc)
                    break  # stays first in line; tried again on the next tick
            self._ready.popleft()
            if not self._apply(unit, now):
                return
        self._observer.held(self.held_count())

    def _apply(self, unit: _Unit, now: float) -> bool:
        self._queued.pop((unit.stream, unit.seq), None)
        if self._stale(unit):  # applied since it was queued (a copy): settle, no more
            self._pending.messages.extend(unit.messages)
            return True
        if unit.parts:
            try:
                self.stage.apply(unit.batch)
            except Exception as exc:
                log.exception("applying %s failed", _describe(unit))
                reason = f"applying {_describe(unit)} failed: {type(exc).__name__}: {exc}"
                self._reset(reason, [], failed=unit.messages)
                return False
            self._pending.changed = True
        self._pending.messages.extend(unit.messages)
        latest = unit.max_event_us
        if unit.kind is _Kind.UNSEQUENCED:
            self.book.record_unsequenced(latest, now)
        elif unit.kind is _Kind.HOLE:
            position = unit.parts[0].position
            assert position is not None
            self.book.applied_hole(position, latest)
        elif unit.kind is _Kind.PASSED:
            self.book.passed_over(unit.stream, unit.coverage, latest)
            self._pending.changed = True
        else:
            self.book.applied_next(unit.stream, latest)
            self._ripen(unit.stream)
            waits = unit.stream in self._collecting
            self.book.waiting(unit.stream, now, waits=waits, progressed=True)
        self._advance(now)
        return True

    def _stale(self, unit: _Unit) -> bool:
        if unit.kind in (_Kind.NEXT, _Kind.PASSED):
            return unit.seq != self.book.next_of(unit.stream)
        if unit.kind is _Kind.HOLE:
            position = unit.parts[0].position
            assert position is not None
            return self.book.classify(position, self._clock()) is not Verdict.HOLE
        return False

    def _advance(self, now: float) -> None:
        watermark = self.book.watermark(now)
        if watermark is not None and self.stage.advance(watermark):
            self._pending.changed = True

    # -- checkpoints -------------------------------------------------------------------

    def load(self) -> None:
        """Restore the checkpoint (or start empty when there is none)."""
        stored = self._store.get(self._key)
        now = self._clock()
        if stored is None:
            self.book.restore(None, now)
            self.stage.restore(None)
            self._etag = None
            log.info("no checkpoint at %s: starting empty", self._store.uri(self._key))
            return
        try:
            data = read_checkpoint(stored.body)
            if data.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"version {data.get('version')!r} is not {CHECKPOINT_VERSION}")
            self.book.restore(data["streams"], now)
            self.stage.restore(data["state"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as exc:
            raise StoreError(
                f"{self._store.uri(self._key)} is not a {self.name} checkpoint: {exc}",
                hint="the bucket is versioned: restore an earlier version, or delete it to "
                "start empty (what comes next is then taken as new)",
            ) from exc
        self._etag = stored.etag
        log.info(
            "resumed from %s: %d stream(s)", self._store.uri(self._key), len(self.book.streams)
        )

    def commit(self) -> bool:
        """Flush outputs, write the checkpoint, acknowledge; False if it must be retried."""
        started = time.perf_counter()
        try:
            self.stage.flush()
        except Exception:
            # Outputs are idempotent: what was written is written again next time.
            log.exception("writing outputs failed, retrying on the next tick")
            return False
        try:
            body = orjson.dumps(
                {
                    "version": CHECKPOINT_VERSION,
                    "service": self.name,
                    "streams": self.book.to_dict(),
                    "state": self.stage.snapshot(),
                },
                option=orjson.OPT_SORT_KEYS,
            )
            packed = _pack(body)
            self._etag = self._store.put(
                self._key,
                packed,
                content_type="application/gzip",
                expect=self._etag or Expect.ABSENT,
            )
        except StoreConflict as exc:
            self._reset(str(exc), [])
            return False
        except StoreError as exc:
            log.warning("commit failed, retrying on the next tick: %s", exc)
            return False
        self._last_commit = self._clock()
        done, self._pending = self._pending.messages, _Pending()
        if done and self.acknowledger is not None:
            self.acknowledger.ack(done)
        self._observer.committed(
            time.perf_counter() - started, len(packed), self.book.watermark(self._clock())
        )
        return True

    def _reset(self, reason: str, also: list[Message], failed: Sequence[Message] = ()) -> None:
        """Forget everything since the last checkpoint and hand those messages back.

        ``failed`` are the messages of the batch whose failure caused the reset: they
        are retried with the reason rather than released, so a batch that fails every
        time reaches the DLQ, with "gave up after N receives: <reason>", instead of
        looping; the others are redelivered at once.
        """
        log.error("%s: re-reading the checkpoint and redoing what it lacks", reason)
        self._observer.reset(reason)
        back = [*self._pending.messages, *also]
        back += [m for unit in self._ready for m in unit.messages]
        back += [m for seqs in self._collecting.values() for c in seqs.values() for m in c.messages]
        self._pending, self._ready, self._collecting = _Pending(), deque(), {}
        self._queued = {}
        self.load()
        if self.acknowledger is None:
            return
        culprits = {m.receipt_handle for m in failed}
        back = [m for m in back if m.receipt_handle not in culprits]
        if back:
            self.acknowledger.release(list({m.receipt_handle: m for m in back}.values()))
        if failed:
            self.acknowledger.retry(list(failed), reason)


def _pack(body: bytes) -> bytes:
    # Level 1: open windows' member lists are long runs of one delta, which compress
    # 10x and more, at a fraction of the time higher levels take.
    return gzip.compress(body, compresslevel=1, mtime=0)


def read_checkpoint(body: bytes) -> dict[str, Any]:
    """A checkpoint object's content (gzip JSON; plain JSON is read too)."""
    data = orjson.loads(gzip.decompress(body) if body[:2] == _GZIP_MAGIC else body)
    if not isinstance(data, dict):
        raise ValueError("a checkpoint is a JSON object")
    return data


def _path(part: Envelope) -> str:
    return part.position.part if part.position is not None else ""


def _in_order(collecting: _Collecting) -> list[Envelope]:
    return [collecting.parts[path] for path in sorted(collecting.parts)]


def _describe(unit: _Unit) -> str:
    if not unit.parts:
        return f"a passed-over batch of {unit.stream}"
    return f"batch {unit.parts[0].batch_id}" + (
        f" (+{len(unit.parts) - 1} part(s))" if len(unit.parts) > 1 else ""
    )
