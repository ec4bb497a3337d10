"""The notifier as a stateful stage: admit anomalies, decide bursts, say what to send.

The sequencer (sensorpipe.stateful) hands it each source batch whole, in the source's
order, and the watermark after each (docs/NOTIFICATIONS.md):

- ``apply``: every anomalous record joins its location's pending anomalies, unless it is
  a duplicate, inside a burst's cool-down, or at or before the watermark decisions were
  already made at (late: its source wrote it more than the grace late). Records the
  notifier cannot place, or that belong to another shard, are set aside with the reason.
- ``advance``: every decision the new watermark allows is made; bursts found are queued.
- ``flush``: queued bursts are published (ledger + FIFO queue, once per burst), each
  on its own: one SQS refuses for its content (``UnsendableError``) is written to
  ``unsendable-notifications/`` in the error bucket with the reason and its whole body,
  and the others go on; then the set-aside records are written.

State (the checkpoint): the watermark decisions were made at, and per location its
cool-down bound and its undecided anomalies.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sensorpipe.records import stable_shard
from sensorpipe.stateful import Batch
from sensorpipe.store import ObjectStore
from services.notifier.bursts import Admission, Anomaly, Burst, LocationState, UnusableRecord
from services.notifier.config import BurstRules
from services.notifier.dedupe import NotificationSender, Published
from services.notifier.errors import UnsendableError
from services.notifier.message import build_body, burst_id
from services.notifier.side_outputs import SideOutput, write_unsendable

log = logging.getLogger(__name__)


class Events(Protocol):
    """Hooks for what became of anomalies and bursts (metrics)."""

    def anomalies(self, outcome: str, count: int) -> None: ...

    def notification(self, outcome: Published) -> None: ...

    def pending(self, count: int) -> None: ...


class NotifierStage:
    """The :class:`~sensorpipe.stateful.Stage` of the notifier."""

    def __init__(
        self,
        rules: BurstRules,
        sender: NotificationSender,
        errors: ObjectStore,
        events: Events,
        *,
        shard: int,
        shards: int,
        service: str,
    ) -> None:
        self.rules = rules
        self._sender = sender
        self._errors = errors
        self._events = events
        self.shard = shard
        self.shards = shards
        self._service = service
        self.decided_us: int | None = None
        self.locations: dict[str, LocationState] = {}
        self._bursts: list[Burst] = []
        self._side: list[SideOutput] = []

    # -- the checkpoint ------------------------------------------------------------------

    def restore(self, snapshot: dict[str, Any] | None) -> None:
        self.decided_us = None if snapshot is None else snapshot.get("decided_us")
        raw = [] if snapshot is None else snapshot.get("locations", [])
        self.locations = {s.location: s for s in map(LocationState.from_dict, raw)}
        self._bursts, self._side = [], []
        self._events.pending(self._pending())

    def snapshot(self) -> dict[str, Any]:
        return {
            "decided_us": self.decided_us,
            "locations": [self.locations[k].to_dict() for k in sorted(self.locations)],
        }

    # -- one batch -------------------------------------------------------------------

    def prepare(self, batch: Batch) -> None:
        return None  # deciding needs nothing but the state

    def apply(self, batch: Batch) -> None:
        # One side output per batch, named by the batch alone: a redo writes the same
        # keys however the batch was split into messages this time.
        first = batch.parts[0]
        side = SideOutput(f"{batch.name}-n{self.shard}", first.batch_id, first.created_at)
        for part in batch.parts:
            for record in part.records:
                self._admit(record, part.batch_id, part.scenario, side)
        if side.late or side.unusable:
            self._side.append(side)
        self._events.pending(self._pending())

    def _admit(self, record: Any, batch_id: str, scenario: str, side: SideOutput) -> None:
        try:
            anomaly = Anomaly.from_record(record, batch_id, scenario)
        except UnusableRecord as exc:
            side.add_unusable(record, str(exc))
            self._events.anomalies("unusable", 1)
            return
        owner = stable_shard(anomaly.location, self.shards)
        if owner != self.shard:
            side.add_unusable(
                record,
                f"misrouted: location belongs to notify shard {owner}, this is shard {self.shard}",
            )
            self._events.anomalies("unusable", 1)
            return
        state = self.locations.setdefault(anomaly.location, LocationState(anomaly.location))
        admission = state.admit(anomaly, decided_us=self.decided_us)
        if admission is Admission.LATE:
            side.add_late(anomaly, state, self.decided_us)
        if admission is not Admission.ACCEPTED:
            self._events.anomalies(admission.value, 1)

    def advance(self, watermark_us: int) -> bool:
        if self.decided_us is not None and watermark_us <= self.decided_us:
            return False
        self.decided_us = watermark_us
        for location in sorted(self.locations):
            state = self.locations[location]
            detection = state.detect(self.rules, watermark_us)
            self._events.anomalies("no_burst", len(detection.no_burst))
            self._events.anomalies("cooldown", len(detection.cooled))
            self._bursts.extend(detection.bursts)
            cooled = state.cooldown_until_us is None or state.cooldown_until_us < watermark_us
            if not state.pending and cooled:
                del self.locations[location]  # nothing left to remember
        self._events.pending(self._pending())
        return True

    def flush(self) -> None:
        while self._bursts:
            self._publish(self._bursts[0])
            self._bursts.pop(0)
        while self._side:
            self._side[0].write(self._errors, service=self._service)
            self._side.pop(0)

    def _publish(self, burst: Burst) -> None:
        identity = burst_id(burst.location, burst.start.key)
        body = build_body(burst, self.rules, self._sender.ledger.uri(burst.location, identity))
        try:
            outcome = self._sender.publish(burst, body)
        except UnsendableError as exc:
            write_unsendable(self._errors, body, exc.cause, service=self._service)
            outcome = Published.UNSENDABLE
            log.error("%s; kept in the error bucket", exc)
        self._events.notification(outcome)
        self._events.anomalies("burst", len(burst.members))
        log.info(
            "burst %s at %r: %d anomalies %s..%s (%s)",
            identity,
            burst.location,
            len(burst.members),
            body["window"]["start"],
            body["window"]["end"],
            _SAID[outcome],
        )

    def _pending(self) -> int:
        return sum(len(s.pending) for s in self.locations.values())


_SAID = {
    Published.SENT: "sent",
    Published.ALREADY_SENT: "already sent before",
    Published.UNSENDABLE: "refused by SQS, in unsendable-notifications/",
}
