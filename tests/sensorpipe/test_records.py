"""Reading identity and the canonical spelling of instants, against datetime itself."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sensorpipe.records import event_time_us, instant_text, reading_key

_EPOCH = datetime(1970, 1, 1)


def _oracle(at_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=at_us)).isoformat(timespec="microseconds") + "Z"


def test_instant_text_spells_every_instant_as_datetime_does() -> None:
    rng = random.Random(5)
    lowest = (datetime(1, 1, 1) - _EPOCH) // timedelta(microseconds=1)
    highest = (datetime(9999, 12, 31, 23, 59, 59, 999999) - _EPOCH) // timedelta(microseconds=1)
    edges = [lowest, highest, -1, 0, 1, 86_400_000_000 - 1, 86_400_000_000, -86_400_000_000]
    for at_us in edges + [rng.randint(lowest, highest) for _ in range(5_000)]:
        assert instant_text(at_us) == _oracle(at_us), at_us


def test_instant_text_reads_back_as_the_same_instant() -> None:
    rng = random.Random(6)
    for _ in range(1_000):
        at_us = rng.randint(-(10**16), 10**16)
        assert event_time_us(instant_text(at_us)) == at_us


def test_a_reading_is_its_sensor_and_instant_however_spelt() -> None:
    spellings = [
        "2026-01-01T10:00:00+00:00",
        "2026-01-01T10:00:00.000Z",
        "2026-01-01T12:00:00+02:00",
    ]
    keys = {reading_key({"sensor_id": "S1", "timestamp": t}) for t in spellings}
    assert len(keys) == 1
    assert reading_key({"sensor_id": "S2", "timestamp": spellings[0]}) not in keys
    assert event_time_us("2026-01-01T10:00:00") == event_time_us(spellings[0])
