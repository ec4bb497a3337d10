"""When windows may start closing after a start (RecoveryGate)."""

from __future__ import annotations

from dataclasses import dataclass

from services.aggregator.recovery import RecoveryGate


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backlog:
    visible: int | None = 5
    probes: int = 0

    def __call__(self) -> int | None:
        self.probes += 1
        return self.visible


def test_without_a_probe_time_alone_decides() -> None:
    clock = Clock()
    gate = RecoveryGate(clock=clock, recovery_s=10, tick_s=0.5, backlog=None)
    assert gate.recovering and not gate.open(clock.now + 9.9)
    assert gate.open(clock.now + 10) and not gate.recovering
    assert gate.open(clock.now)  # once open, it stays open


def test_zero_recovery_is_open_at_once() -> None:
    clock = Clock()
    assert RecoveryGate(clock=clock, recovery_s=0, tick_s=0.5, backlog=Backlog()).open(100)


def test_waits_until_the_queue_is_caught_up_and_a_later_batch_is_folded() -> None:
    clock, backlog = Clock(), Backlog(visible=5)
    gate = RecoveryGate(clock=clock, recovery_s=10, tick_s=0.5, backlog=backlog)
    clock.now = 111
    assert not gate.open(clock.now)  # redeliveries still waiting in the queue
    clock.now = 111.5
    assert not gate.open(clock.now) and backlog.probes == 1  # probed at most once a second
    backlog.visible, clock.now = 0, 112.1
    assert not gate.open(clock.now)  # caught up, but a received batch may be unfolded
    gate.handle_started(112.2)  # the next batch is taken (and folded before closing)
    assert gate.open(112.3)


def test_caught_up_and_idle_for_two_ticks_opens_too() -> None:
    clock, backlog = Clock(), Backlog(visible=0)
    gate = RecoveryGate(clock=clock, recovery_s=10, tick_s=0.5, backlog=backlog)
    clock.now = 110
    assert not gate.open(clock.now)
    clock.now = 110.9
    assert not gate.open(clock.now)
    clock.now = 111.0
    assert gate.open(clock.now)


def test_a_queue_never_caught_up_opens_after_four_periods() -> None:
    clock, backlog = Clock(), Backlog(visible=None)  # SQS cannot answer
    gate = RecoveryGate(clock=clock, recovery_s=10, tick_s=0.5, backlog=backlog)
    assert not gate.open(139.9)
    assert gate.open(140.0)
