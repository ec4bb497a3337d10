"""Burst detection of one location (services/notifier/bursts.py) against the definition
in docs/NOTIFICATIONS.md: its examples, threshold edges, decisions that wait for the
watermark, admission (duplicate, late, cool-down), and incremental detection equal to the
independent reference whatever the watermark's steps."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.notifier.bursts import Admission, Anomaly, Burst, LocationState, UnusableRecord
from services.notifier.config import BurstRules
from tests.services.notifier.reference import expected_bursts

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
RULES = BurstRules.from_seconds(3, 60, 300, 10)
FAR = 10**18  # a watermark past everything


def us(seconds: float) -> int:
    """Event time ``seconds`` after T0, in µs since the epoch."""
    return (T0 + timedelta(seconds=seconds) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )


def record(seconds: float, sensor: str = "S1", location: str = "Chicago") -> dict[str, Any]:
    at = (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    return {
        "sensor_data": {"id": 1, "sensor_id": sensor, "timestamp": at, "location": location},
        "lineage": {"job_id_hash": "abc", "batch_id": "b"},
        "quality": {"anomalous": True, "anomaly_reasons": ["temperature_high"]},
    }


def anomaly(seconds: float, sensor: str | None = None) -> Anomaly:
    sensor = sensor or f"S{seconds}"
    return Anomaly.from_record(record(seconds, sensor), "batch", "notification")


def times(bursts: list[Burst]) -> list[list[float]]:
    base = us(0)
    return [[(a.at_us - base) / 1e6 for a in b.members] for b in bursts]


def decide_all(anomalies: list[Anomaly], rules: BurstRules = RULES) -> list[Burst]:
    state = LocationState("Chicago")
    for a in anomalies:
        state.admit(a, decided_us=None)
    return state.detect(rules, FAR).bursts


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [  # the examples of docs/NOTIFICATIONS.md (k = 3, W = 60 s, C = 300 s)
        ([0, 30, 60], [[0, 30, 60]]),
        ([0, 30, 60.001], []),
        ([0, 10, 65, 70], [[10, 65, 70]]),
        ([0, 20, 40, 40], [[0, 20, 40, 40]]),
        (
            [0, 10, 20, 100, 110, 120, 320, 320.001, 330, 340],
            [[0, 10, 20], [320.001, 330, 340]],
        ),
    ],
)
def test_the_documented_examples(seconds: list[float], expected: list[list[float]]) -> None:
    anomalies = [anomaly(s, f"S{i}") for i, s in enumerate(seconds)]
    assert times(decide_all(anomalies)) == expected
    reference = expected_bursts(
        [a.record for a in anomalies], min_anomalies=3, window_s=60, cooldown_s=300
    )
    assert [tuple(a.key for a in b.members) for b in decide_all(anomalies)] == reference.get(
        "Chicago", []
    )


def test_zero_cooldown_lets_the_next_anomaly_start_a_burst() -> None:
    rules = BurstRules.from_seconds(3, 60, 0, 10)
    assert times(decide_all([anomaly(float(t)) for t in range(0, 60, 10)], rules)) == [
        [0, 10, 20],
        [30, 40, 50],
    ]


def test_a_burst_is_decided_only_when_its_last_member_is_at_or_before_the_watermark() -> None:
    state = LocationState("Chicago")
    for s in (0, 10, 20):
        assert state.admit(anomaly(s), decided_us=None) is Admission.ACCEPTED
    assert state.detect(RULES, us(20) - 1).bursts == []
    assert len(state.pending) == 3  # an anomaly at 15 could still come: it does
    assert state.admit(anomaly(15), decided_us=us(12)) is Admission.ACCEPTED
    [burst] = state.detect(RULES, us(20)).bursts
    assert times([burst]) == [[0, 10, 15]]
    assert state.cooldown_until_us == us(15 + 300)
    assert [a.at_us for a in state.pending.values()] == []  # 20 fell in the cool-down


def test_no_burst_from_an_anomaly_once_its_window_is_behind_the_watermark() -> None:
    state = LocationState("Chicago")
    state.admit(anomaly(0), decided_us=None)
    state.admit(anomaly(50), decided_us=None)
    assert state.detect(RULES, us(60) - 1).no_burst == []
    found = state.detect(RULES, us(60))
    assert [a.at_us for a in found.no_burst] == [us(0)]
    assert [a.at_us for a in state.pending.values()] == [us(50)]  # 50..110 still open


def test_admission_duplicate_late_and_cooldown() -> None:
    state = LocationState("Chicago")
    first = anomaly(100, "S1")
    assert state.admit(first, decided_us=us(50)) is Admission.ACCEPTED
    respelt = record(100, "S1")
    respelt["sensor_data"]["timestamp"] = (T0 + timedelta(seconds=100)).isoformat()
    again = Anomaly.from_record(respelt, "other-batch", "notification")
    assert again.key == first.key  # one instant, two spellings: one reading
    assert state.admit(again, decided_us=us(50)) is Admission.DUPLICATE
    assert state.admit(anomaly(50, "S2"), decided_us=us(50)) is Admission.LATE  # at: late
    assert state.admit(anomaly(50.001, "S2"), decided_us=us(50)) is Admission.ACCEPTED
    state.cooldown_until_us = us(400)
    assert state.admit(anomaly(400, "S3"), decided_us=us(50)) is Admission.COOLDOWN
    assert state.admit(anomaly(400.001, "S3"), decided_us=us(50)) is Admission.ACCEPTED


def test_unusable_records_are_named() -> None:
    bad = record(0)
    bad["quality"]["anomalous"] = False
    with pytest.raises(UnusableRecord, match="not marked anomalous"):
        Anomaly.from_record(bad, "b", "s")
    bad["quality"]["anomalous"] = True
    bad["sensor_data"]["timestamp"] = "yesterday"
    with pytest.raises(UnusableRecord, match="not ISO-8601"):
        Anomaly.from_record(bad, "b", "s")
    del bad["sensor_data"]["location"]
    with pytest.raises(UnusableRecord, match="location"):
        Anomaly.from_record(bad, "b", "s")
    with pytest.raises(UnusableRecord, match="sensor_data"):
        Anomaly.from_record({"quality": {"anomalous": True}}, "b", "s")


def _random_stream(rng: random.Random, count: int) -> list[Anomaly]:
    at = 0.0
    out = []
    for i in range(count):
        at += rng.choice([0, 0.5, 3, 12, 25, 40, 70, 200])
        out.append(anomaly(round(at, 3), f"S{i % 9}"))
    return out


def _incremental(
    rng: random.Random,
    stream: list[Anomaly],
    *,
    state: LocationState | None = None,
    decided: int | None = None,
    then: int = FAR,
) -> tuple[list[Burst], LocationState, int | None]:
    """Admit in order, advancing the watermark in random steps that never pass an
    anomaly still to come, ``then`` the first after ``stream`` (what the sequencer
    guarantees for on-time input)."""
    state = state or LocationState("Chicago")
    bursts: list[Burst] = []
    for i, a in enumerate(stream):
        assert state.admit(a, decided_us=decided) is not Admission.LATE
        if rng.random() < 0.3:
            upcoming = min((b.at_us for b in stream[i + 1 :]), default=then)
            decided = max(decided or 0, rng.randint(a.at_us - 10**8, upcoming - 1))
            bursts += state.detect(RULES, decided).bursts
    return bursts, state, decided


@pytest.mark.parametrize("seed", range(20))
def test_incremental_decisions_equal_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    stream = _random_stream(rng, 300)
    bursts, state, _ = _incremental(rng, stream)
    bursts += state.detect(RULES, FAR).bursts
    reference = expected_bursts(
        [a.record for a in stream], min_anomalies=3, window_s=60, cooldown_s=300
    )
    assert reference, "the stream must hold bursts"
    assert [tuple(a.key for a in b.members) for b in bursts] == reference["Chicago"]
    assert state.pending == {}


@pytest.mark.parametrize("seed", range(10))
def test_the_checkpoint_form_continues_identically(seed: int) -> None:
    rng = random.Random(100 + seed)
    stream = _random_stream(rng, 200)
    cut = rng.randint(1, len(stream) - 1)
    whole = decide_all(stream)
    before, state, decided = _incremental(rng, stream[:cut], then=stream[cut].at_us)
    restored = LocationState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert restored == state
    after, restored, _ = _incremental(rng, stream[cut:], state=restored, decided=decided)
    after += restored.detect(RULES, FAR).bursts
    assert [b.members for b in before + after] == [b.members for b in whole]
