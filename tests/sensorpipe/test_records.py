"""Reading identity and the canonical spelling of instants, against datetime itself."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorpipe.objects import parse_event_time
from sensorpipe.records import (
    TimestampError,
    event_time_us,
    instant_text,
    read_timestamp,
    reading_key,
)

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


# --- One definition of a readable timestamp -------------------------------------------
# The oracle builds the instant from the parts it spelt (date.toordinal and plain
# arithmetic), never by parsing the text.

_EPOCH_DAY = date(1970, 1, 1).toordinal()
_LOWEST_US = (datetime(1, 1, 1) - _EPOCH) // timedelta(microseconds=1)
_HIGHEST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999) - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Spelt:
    text: str
    instant_us: int | None  # None: no stage may accept it
    zoned: bool


def _calendar_day(year: int, month: int, day: int) -> int | None:
    if not 1 <= year <= 9999:
        return None
    try:
        return date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError:
        return None


@st.composite
def spelt_timestamps(draw: st.DrawFn) -> Spelt:
    year = draw(st.sampled_from([0, 1, 2, 1969, 1970, 2026, 9998, 9999, 10000]))
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 31))
    hour, minute, second = (
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.sampled_from([0, 1, 30, 59, 60])),
    )
    digits = draw(st.text("0123456789", min_size=0, max_size=9))
    sep = draw(st.sampled_from(["T", " "]))
    zone_kind = draw(st.sampled_from(["none", "Z", "+00:00", "offset", "compact"]))
    sign, off_h, off_m = (
        draw(st.sampled_from([1, -1])),
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
    )
    with_seconds = draw(st.booleans()) or bool(digits) or second
    clock = f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if with_seconds else "")
    fraction = f".{digits}" if digits else ""
    offset_s = 0
    zone = {"none": "", "Z": "Z", "+00:00": "+00:00"}.get(zone_kind)
    if zone is None:
        mark = "+" if sign > 0 else "-"
        colon = ":" if zone_kind == "offset" else ""
        zone = f"{mark}{off_h:02d}{colon}{off_m:02d}"
        offset_s = sign * (off_h * 3600 + off_m * 60)
    text = f"{year:04d}-{month:02d}-{day:02d}{sep}{clock}{fraction}{zone}"
    days = _calendar_day(year, month, day)
    instant: int | None = None
    if days is not None and second < 60:
        seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s
        instant = seconds * 1_000_000 + int((digits + "000000")[:6])
        if not _LOWEST_US <= instant <= _HIGHEST_US:
            instant = None
    return Spelt(text, instant, zoned=bool(zone))


@settings(max_examples=600, deadline=None)
@given(spelt_timestamps())
def test_every_stage_reads_a_timestamp_as_the_oracle_does(spelt: Spelt) -> None:
    assert event_time_us(spelt.text) == spelt.instant_us, spelt.text
    if spelt.instant_us is None:
        with pytest.raises(TimestampError):
            read_timestamp(spelt.text)
        with pytest.raises(ValueError):
            parse_event_time(spelt.text)
        return
    assert read_timestamp(spelt.text) == (spelt.instant_us, spelt.zoned)
    moment = parse_event_time(spelt.text)
    assert moment.tzinfo is not None
    assert (moment.replace(tzinfo=None) - _EPOCH) // timedelta(microseconds=1) == spelt.instant_us


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0000-01-01T00:00:00Z", "range"),
        ("10000-01-01T00:00:00Z", "range"),
        ("0001-01-01T00:30:00+01:00", "range"),  # year 0 once in UTC
        ("9999-12-31T23:30:00-01:00", "range"),  # year 10000 once in UTC
        ("2026-02-30T00:00:00Z", "format"),
        ("2026-06-30T23:59:60Z", "format"),  # a leap second
        ("2026-01-01", "format"),  # a day is not an instant
        ("20260101T100000Z", "format"),  # basic form: not the grammar
        ("2026-01-01X10:00:00Z", "format"),
        ("2026-01-01T10:00:00.Z", "format"),
        ("2026-01-01T10:00:00+24:00", "format"),
        ("2026-01-01T10:00:00z", "format"),
    ],
)
def test_unreadable_timestamps_say_why(text: str, problem: str) -> None:
    with pytest.raises(TimestampError) as caught:
        read_timestamp(text)
    assert caught.value.problem == problem
    assert event_time_us(text) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 253_402_300_799_999_999 // 2), st.sampled_from(["S1", "CHI_000001"]))
def test_one_instant_one_key_however_spelt(at_us: int, sensor: str) -> None:
    moment = _EPOCH + timedelta(microseconds=at_us)
    base = moment.isoformat(timespec="microseconds")
    east = (moment + timedelta(hours=2)).isoformat(timespec="milliseconds")
    spellings = [f"{base}+00:00", f"{base}Z", f"{base.replace('T', ' ')}Z", f"{east}+02:00"]
    if at_us % 1000:  # the +02:00 spelling above dropped the microseconds
        spellings.pop()
    keys = {reading_key({"sensor_id": sensor, "timestamp": text}) for text in spellings}
    assert keys == {f"{sensor}|{_oracle(at_us)}"}
