"""Burst detection: threshold edges, order and batch independence, duplicates, cool-down."""

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


def record(seconds: float, sensor: str = "S1", location: str = "Chicago") -> dict[str, Any]:
    at = (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    return {
        "sensor_data": {"id": 1, "sensor_id": sensor, "timestamp": at, "location": location},
        "lineage": {"job_id_hash": "abc", "batch_id": "b"},
        "quality": {"anomalous": True, "anomaly_reasons": ["temperature_high"]},
    }


def anomaly(seconds: float, sensor: str = "S1") -> Anomaly:
    return Anomaly.from_record(record(seconds, sensor), "batch", "notification")


def run(
    messages: list[list[Anomaly]], rules: BurstRules = RULES, *, state: LocationState | None = None
) -> tuple[list[Burst], LocationState, list[Admission]]:
    """Feed messages the way the handler does, then let the location go quiet."""
    state = state or LocationState("Chicago")
    bursts: list[Burst] = []
    admissions: list[Admission] = []
    for message in messages:
        for a in message:
            admissions.append(state.admit(a))
            state.saw(a.at_us)
        state.advance(rules.grace_us)
        bursts += state.detect(rules).bursts
    state.flush_idle()
    bursts += state.detect(rules).bursts
    return bursts, state, admissions


def members(bursts: list[Burst]) -> list[list[float]]:
    return [[(a.at_us - bursts[0].start.at_us) / 1e6 for a in b.members] for b in bursts]


def test_exactly_three_within_sixty_seconds_is_a_burst() -> None:
    bursts, _, _ = run([[anomaly(0), anomaly(30, "S2"), anomaly(60, "S3")]])
    assert members(bursts) == [[0, 30, 60]]


def test_three_spanning_sixty_point_zero_zero_one_seconds_is_not() -> None:
    bursts, state, _ = run([[anomaly(0), anomaly(30, "S2"), anomaly(60.001, "S3")]])
    assert bursts == []
    # The first can no longer start a burst; the others wait for readings up to 60 s on.
    assert len(state.pending) == 2


def test_two_anomalies_are_not_a_burst_and_a_third_later_still_counts() -> None:
    assert run([[anomaly(0), anomaly(59.999, "S2")]])[0] == []
    bursts, _, _ = run([[anomaly(0)], [anomaly(10, "S2")], [anomaly(65, "S3")], [anomaly(70)]])
    # 0,10 alone; 10,65,70 are within 60 s: the burst starts at 10.
    assert members(bursts) == [[0, 55, 60]]


def test_ties_at_the_third_anomaly_are_all_members() -> None:
    bursts, _, _ = run([[anomaly(0), anomaly(20, "S2"), anomaly(40, "S3"), anomaly(40, "S4")]])
    assert len(bursts) == 1 and len(bursts[0].members) == 4


def test_decision_waits_for_the_watermark() -> None:
    state = LocationState("Chicago")
    for a in (anomaly(0), anomaly(10, "S2"), anomaly(20, "S3")):
        state.admit(a)
        state.saw(a.at_us)
    state.advance(RULES.grace_us)  # watermark 10: readings after 10 s may still come
    assert state.detect(RULES).bursts == []
    assert state.admit(anomaly(5, "S0")) is Admission.LATE
    within_grace = anomaly(15, "S4")  # becomes the third member instead of the one at 20
    assert state.admit(within_grace) is Admission.ACCEPTED
    state.saw(anomaly(31, "S5").at_us)
    state.advance(RULES.grace_us)  # watermark 21
    [burst] = state.detect(RULES).bursts
    assert [a.key.split("|")[0] for a in burst.members] == ["S1", "S2", "S4"]


def test_cooldown_suppresses_then_allows_a_new_burst() -> None:
    first = [anomaly(0), anomaly(10, "S2"), anomaly(20, "S3")]
    inside = [anomaly(100), anomaly(110, "S2"), anomaly(120, "S3"), anomaly(320, "S4")]
    after = [anomaly(320.001, "S5"), anomaly(330), anomaly(340, "S2")]
    bursts, _, _ = run([first, inside, after])
    assert members(bursts) == [[0, 10, 20], [320.001, 330, 340]]


def test_zero_cooldown_lets_the_next_anomaly_start_a_burst() -> None:
    rules = BurstRules.from_seconds(3, 60, 0, 10)
    stream = [anomaly(float(t), f"S{t}") for t in range(0, 60, 10)]
    bursts, _, _ = run([stream], rules)
    assert members(bursts) == [[0, 10, 20], [30, 40, 50]]


def test_duplicates_change_nothing() -> None:
    stream = [anomaly(float(t), f"S{t % 7}") for t in range(0, 900, 13)]
    once, _, _ = run([stream])
    twice, _, admissions = run([stream, stream[:20], list(reversed(stream[-20:]))])
    assert [b.members for b in once] == [b.members for b in twice]
    assert admissions.count(Admission.DUPLICATE) + admissions.count(Admission.LATE) >= 20


def test_anomalies_later_than_grace_are_late_and_start_nothing() -> None:
    early = [anomaly(float(t), "S1") for t in (0, 100, 200, 300)]
    late = [anomaly(250, "S2"), anomaly(255, "S3"), anomaly(260, "S4")]
    bursts, _, admissions = run([early, late])
    assert bursts == []
    assert admissions[-3:] == [Admission.LATE] * 3


def test_unusable_records_are_named() -> None:
    bad = record(0)
    bad["quality"]["anomalous"] = False
    with pytest.raises(UnusableRecord, match="not marked anomalous"):
        Anomaly.from_record(bad, "b", "s")
    del bad["sensor_data"]["location"]
    bad["quality"]["anomalous"] = True
    with pytest.raises(UnusableRecord, match="location"):
        Anomaly.from_record(bad, "b", "s")


def _random_stream(rng: random.Random, count: int) -> list[Anomaly]:
    at = 0.0
    out = []
    for i in range(count):
        at += rng.choice([0.5, 3, 12, 25, 40, 70, 200])
        out.append(anomaly(round(at, 3), f"S{i % 9}"))
    return out


def _shuffle_within(rng: random.Random, stream: list[Anomaly], spread_s: float) -> list[Anomaly]:
    keyed = [(a.at_us / 1e6 + rng.uniform(0, spread_s), a) for a in stream]
    return [a for _, a in sorted(keyed, key=lambda item: item[0])]


def _split(rng: random.Random, stream: list[Anomaly]) -> list[list[Anomaly]]:
    messages, i = [], 0
    while i < len(stream):
        size = rng.randint(1, 12)
        messages.append(stream[i : i + size])
        i += size
    return messages


@pytest.mark.parametrize("seed", range(25))
def test_shuffled_batched_input_within_grace_gives_the_reference_bursts(seed: int) -> None:
    rng = random.Random(seed)
    stream = _random_stream(rng, 300)
    reference = expected_bursts(
        [a.record for a in stream], min_anomalies=3, window_s=60, cooldown_s=300
    )
    in_order, _, _ = run([stream])
    # Spread below the grace: nothing arrives after a reading more than 10 s newer.
    shuffled = _shuffle_within(rng, stream, spread_s=9.9)
    with_dupes = shuffled + rng.sample(shuffled, 30)
    out_of_order, _, admissions = run(_split(rng, with_dupes))
    assert [tuple(a.key for a in b.members) for b in in_order] == reference.get("Chicago", [])
    assert [b.members for b in out_of_order] == [b.members for b in in_order]
    assert Admission.LATE not in admissions[: len(shuffled)]


@pytest.mark.parametrize("seed", range(10))
def test_a_restart_from_the_persisted_state_continues_identically(seed: int) -> None:
    rng = random.Random(100 + seed)
    messages = _split(rng, _shuffle_within(rng, _random_stream(rng, 200), 5))
    whole, _, _ = run(messages)
    cut = rng.randint(1, len(messages) - 1)
    state = LocationState("Chicago")
    bursts: list[Burst] = []
    for message in messages[:cut]:
        for a in message:
            state.admit(a)
            state.saw(a.at_us)
        state.advance(RULES.grace_us)
        bursts += state.detect(RULES).bursts
    restored = LocationState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    rest, _, _ = run(messages[cut:], state=restored)
    assert [b.members for b in bursts + rest] == [b.members for b in whole]
