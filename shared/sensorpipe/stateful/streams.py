"""How far each source got, in the order the source wrote its batches.

The stateful stages (aggregator, notifier) judge lateness against the *source's* order,
never against the order SQS happens to deliver messages in. Every batch part carries
its position (stream, seq, split path) and the greatest event time of its valid readings
(``max_event_us``, stamped by the router), and every shard gets a message for every part
(an empty one if none of the part's records are its own). So a shard knows, per stream:

- ``next``: the lowest batch number not applied yet. The sequencer (sequencer.py)
  collects the parts of each batch and applies batch ``next`` once all its parts are
  in, then ``next + 1`` and so on: the stage sees each source's batches whole and in the
  source's order, whatever order, splitting or sharding they came in;
- ``done_us``: the greatest event time over the batches applied: the source's progress.

The shard's **watermark** combines the streams the way Flink combines input partitions:
the minimum over streams of ``done_us - grace``, held back entirely while a stream that
was seen has no progress yet. Because a batch counts only once it and every batch
before it is applied, the watermark never passes a reading a source wrote earlier that
is still in transit. Two processing-time rules keep it moving:

- *idle*: a stream that sent nothing for ``idle_s`` and waits for nothing counts as
  ``done_us + idle_lift_us`` instead (the aggregator lifts by a window so a quiet
  source's last windows close; the notifier by 0: what was seen is final);
- *gap*: a missing batch (in a DLQ, or held back by retries elsewhere) holds its stream
  back for at most ``gap_timeout_s``; then the stream goes on without it. A batch (or
  part) passed over is a *hole*: applied on its own whenever it arrives (its readings
  then revise what was written, or are late), recognised if it comes twice.

A stream starts at batch 0. One first seen later (a new shard, a lost checkpoint) waits
for the batches before it like for any gap, then goes on without them. Input without a
position (replays) has no source order: it drives the watermark (as a stream of its
own, by arrival) only while no sequenced stream has progress.

Pure state: no I/O, no clock of its own (``now`` is passed in); ``to_dict`` /
``restore`` are the checkpoint form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sensorpipe.envelope import Position
from sensorpipe.stateful.parts import Coverage


class Verdict(Enum):
    COLLECT = "collect"  # a part of the next batch or a later one: collect it
    HOLE = "hole"  # a part of a batch passed over: apply it on its own, now
    APPLIED = "applied"  # every record of it was applied before: a redelivery


@dataclass(slots=True)
class StreamState:
    next: int = 0
    done_us: int | None = None
    # [lo, hi) ranges of batch numbers passed over before they were applied (a gap
    # given up, or the batches before the first one seen); applied when they come.
    holes: list[tuple[int, int]] = field(default_factory=list)
    # Parts already applied of holes that came in pieces.
    hole_parts: dict[int, Coverage] = field(default_factory=dict)
    last_active: float = -math.inf  # processing time; not checkpointed
    waiting_since: float | None = None  # a batch is missing since; not checkpointed

    def in_hole(self, seq: int) -> bool:
        return any(lo <= seq < hi for lo, hi in self.holes)

    def fill_hole(self, seq: int) -> None:
        kept: list[tuple[int, int]] = []
        for lo, hi in self.holes:
            if lo <= seq < hi:
                kept.extend(r for r in ((lo, seq), (seq + 1, hi)) if r[0] < r[1])
            else:
                kept.append((lo, hi))
        self.holes = kept
        self.hole_parts.pop(seq, None)

    def note_progress(self, max_us: int | None) -> None:
        if max_us is not None and (self.done_us is None or max_us > self.done_us):
            self.done_us = max_us


@dataclass(frozen=True, slots=True)
class Timing:
    """The rules of the watermark: event time in µs, processing time in seconds.

    Parameters:
        grace_us: how far out of order (event time) sources write their rows.
        idle_s: quiet time after which a stream stops holding the watermark back.
        idle_lift_us: how far past its progress an idle stream lets the watermark go.
        gap_timeout_s: longest wait for a missing batch.
    """

    grace_us: int
    idle_s: float
    idle_lift_us: int
    gap_timeout_s: float


class StreamBook:
    """Every stream a shard has seen, and the watermark they allow."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.streams: dict[str, StreamState] = {}
        self.unsequenced = StreamState()  # input without a position, by arrival
        self.idle_not_before = -math.inf

    # -- one part --------------------------------------------------------------------

    def classify(self, position: Position, now: float) -> Verdict:
        """What to do with a part; a stream seen for the first time starts at it."""
        stream = self.streams.get(position.stream)
        if stream is None:  # sources number their batches from 0
            stream = self.streams[position.stream] = StreamState()
        stream.last_active = now
        seq = position.seq
        if seq >= stream.next:
            return Verdict.COLLECT
        if not stream.in_hole(seq):
            return Verdict.APPLIED
        applied = stream.hole_parts.get(seq)
        if applied is not None and applied.covers(position.part):
            return Verdict.APPLIED
        return Verdict.HOLE

    def next_of(self, stream: str) -> int:
        return self.streams[stream].next

    def applied_next(self, stream: str, max_event_us: int | None) -> None:
        """The stream's next batch was applied (whole, or what arrived of it)."""
        state = self.streams[stream]
        state.note_progress(max_event_us)
        state.next += 1

    def applied_hole(self, position: Position, max_event_us: int | None) -> None:
        state = self.streams[position.stream]
        state.note_progress(max_event_us)
        parts = state.hole_parts.setdefault(position.seq, Coverage())
        parts.add(position.part)
        if parts.complete:
            state.fill_hole(position.seq)

    def passed_over(self, stream: str, parts: Coverage | None, max_event_us: int | None) -> None:
        """The stream's next batch is given up (``parts``: what of it was applied)."""
        state = self.streams[stream]
        state.note_progress(max_event_us)
        seq = state.next
        if state.holes and state.holes[-1][1] == seq:
            state.holes[-1] = (state.holes[-1][0], seq + 1)
        else:
            state.holes.append((seq, seq + 1))
        if parts is not None:
            state.hole_parts[seq] = parts
        state.next += 1

    def record_unsequenced(self, max_event_us: int | None, now: float) -> None:
        self.unsequenced.last_active = now
        self.unsequenced.note_progress(max_event_us)

    # -- gaps ------------------------------------------------------------------------

    def waiting(self, stream: str, now: float, *, waits: bool, progressed: bool = False) -> None:
        """Whether parts of the stream are held for a missing one: starts the gap clock,
        or restarts it when the stream ``progressed`` (a batch was applied)."""
        state = self.streams.get(stream)
        if state is None:
            return
        if not waits:
            state.waiting_since = None
        elif progressed or state.waiting_since is None:
            state.waiting_since = now

    def overdue(self, now: float) -> list[str]:
        """Streams that have waited longer than the gap timeout."""
        return [
            name
            for name, s in self.streams.items()
            if s.waiting_since is not None and now - s.waiting_since >= self.timing.gap_timeout_s
        ]

    # -- the watermark -----------------------------------------------------------------

    def watermark(self, now: float) -> int | None:
        """The combined watermark (event-time µs), or None while it cannot move: no
        stream has progress yet, or a stream that is not idle has none (it could still
        bring readings of any time, as a Flink partition without a watermark does)."""
        values = []
        for stream in self.streams.values():
            if stream.done_us is None:
                if self._idle(stream, now):
                    continue  # seen, quiet, and nothing with a time in it: no say
                return None
            values.append(self._value(stream, now))
        if not values and self.unsequenced.done_us is not None:
            values.append(self._value(self.unsequenced, now))
        return min(values) if values else None

    def _idle(self, stream: StreamState, now: float) -> bool:
        return (
            stream.waiting_since is None
            and now - stream.last_active >= self.timing.idle_s
            and now >= self.idle_not_before
        )

    def _value(self, stream: StreamState, now: float) -> int:
        assert stream.done_us is not None
        if self._idle(stream, now):
            return stream.done_us + self.timing.idle_lift_us
        return stream.done_us - self.timing.grace_us

    # -- the checkpoint form -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "streams": {name: _stream_dict(s) for name, s in sorted(self.streams.items())},
            "unsequenced_us": self.unsequenced.done_us,
        }

    def restore(self, data: dict[str, Any] | None, now: float) -> None:
        """Load a checkpoint's streams; every stream counts as active from ``now``."""
        self.streams = {}
        self.unsequenced = StreamState(last_active=now)
        if not data:
            return
        for name, raw in data.get("streams", {}).items():
            self.streams[str(name)] = StreamState(
                next=int(raw["next"]),
                done_us=raw.get("done_us"),
                holes=[(int(lo), int(hi)) for lo, hi in raw.get("holes", [])],
                hole_parts={int(k): Coverage(v) for k, v in raw.get("hole_parts", {}).items()},
                last_active=now,
            )
        self.unsequenced.done_us = data.get("unsequenced_us")


def _stream_dict(stream: StreamState) -> dict[str, Any]:
    return {
        "next": stream.next,
        "done_us": stream.done_us,
        "holes": [list(r) for r in stream.holes],
        "hole_parts": {str(k): v.paths() for k, v in sorted(stream.hole_parts.items())},
    }
