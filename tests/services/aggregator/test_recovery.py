"""When windows may start closing after a start (RecoveryGate)."""

from __future__ import annotations

from dataclasses import dataclass

from sensorpipe.runtime.deliveries import DeliveryLog
from services.aggregator.recovery import Backlog, RecoveryGate


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Probe:
    visible: int | None = 5  # None: SQS cannot answer
    invisible: int = 0
    probes: int = 0

    def __call__(self) -> Backlog | None:
        self.probes += 1
        return None if self.visible is None else Backlog(self.visible, self.invisible)


def test_without_a_probe_time_alone_decides() -> None:
    clock = Clock()
    gate = RecoveryGate(clock=clock, recovery_s=10, backlog=None)
    assert gate.recovering and not gate.open(clock.now + 9.9)
    assert gate.open(clock.now + 10) and not gate.recovering
    assert gate.open(clock.now)  # once open, it stays open


def test_zero_recovery_is_open_at_once() -> None:
    clock = Clock()
    assert RecoveryGate(clock=clock, recovery_s=0, backlog=Probe()).open(100)


def test_waits_until_the_queue_is_caught_up_and_what_was_received_is_handed_over() -> None:
    clock, backlog, deliveries = Clock(), Probe(visible=5), DeliveryLog()
    gate = RecoveryGate(clock=clock, recovery_s=10, backlog=backlog)
    # At the probe: poll 1's batch waits in the inbox, poll 2's in the receiver's hands,
    # poll 3 is open (it may have taken messages off the queue already).
    for _ in (1, 2):
        deliveries.poll_finished(deliveries.poll_started(), received=True)
    open_poll = deliveries.poll_started()
    clock.now = 111
    assert not gate.open(clock.now, deliveries)  # redeliveries still waiting in the queue
    clock.now = 111.5
    assert not gate.open(clock.now, deliveries) and backlog.probes == 1  # once a second
    backlog.visible, clock.now = 0, 112.1
    assert not gate.open(clock.now, deliveries)  # caught up, but nothing handed over yet
    deliveries.delivered()  # poll 1's batch is folded
    assert not gate.open(112.2, deliveries)
    deliveries.delivered()  # poll 2's batch too
    assert not gate.open(112.3, deliveries)  # poll 3 is still open
    deliveries.poll_finished(open_poll, received=True)
    assert not gate.open(112.4, deliveries)  # ...and returned messages
    later = deliveries.poll_started()  # a poll after the check: not waited for
    deliveries.delivered()
    assert gate.open(112.5, deliveries) and not gate.recovering
    assert later == open_poll + 1


def test_caught_up_with_empty_polls_opens_once_the_open_poll_returns() -> None:
    clock, backlog, deliveries = Clock(), Probe(visible=0), DeliveryLog()
    gate = RecoveryGate(clock=clock, recovery_s=10, backlog=backlog)
    poll = deliveries.poll_started()
    clock.now = 110
    assert not gate.open(clock.now, deliveries)
    deliveries.poll_finished(poll, received=False)
    assert gate.open(110.1, deliveries)


def test_without_a_delivery_log_caught_up_is_enough() -> None:
    clock, backlog = Clock(), Probe(visible=0)
    gate = RecoveryGate(clock=clock, recovery_s=10, backlog=backlog)
    assert not gate.open(109.9)
    assert gate.open(110.0)


def test_messages_still_invisible_elsewhere_keep_it_waiting() -> None:
    """Held by the stopped process (heartbeat-extended) or backing off after a retry:
    invisible, so not counted as visible, yet not in this process's hands either."""
    in_flight = 3
    deliveries = DeliveryLog(in_flight=lambda: in_flight)
    clock, backlog = Clock(), Probe(visible=0, invisible=5)
    gate = RecoveryGate(clock=clock, recovery_s=10, backlog=backlog)
    assert not gate.open(110.0, deliveries)
    assert not gate.open(111.0, deliveries) and backlog.probes == 2
    in_flight = 5  # the two came back and were received
    assert gate.open(112.0, deliveries)


def test_a_queue_never_caught_up_opens_after_four_periods() -> None:
    clock, backlog = Clock(), Probe(visible=None)  # SQS cannot answer
    gate = RecoveryGate(clock=clock, recovery_s=10, backlog=backlog)
    assert not gate.open(139.9)
    assert gate.open(140.0)
