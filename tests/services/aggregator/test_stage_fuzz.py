"""The aggregator's stage against arbitrary record content (issue 11): whatever a record
holds (any type in any field, timestamps at and beyond years 1 and 9999, values no
JSON can carry), ``apply``, ``advance`` and the documents never raise, and every record
is accounted for exactly once: folded, duplicate, revised, late or unusable. One record
the stage cannot place never takes the good records of its batch with it.

The oracle is plain Python over the input: a well-formed reading built by the test is
never unusable, a reading the test broke in one field always is, and the counts add up
to the records given."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorpipe.envelope import Envelope, Position
from sensorpipe.objects import read_jsonl
from sensorpipe.records import METRICS
from sensorpipe.stateful import Batch
from sensorpipe.store import MemoryObjectStore
from services.aggregator.output import LateStore, WindowStore
from services.aggregator.stage import AggregatorStage, Rules
from tests.window_pages import page_documents

MINUTE_US = 60_000_000
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Instants a good reading may have: a few minutes of 2026, and the edges of what a
# window can hold (the first minute of year 1, the last whole minute of year 9999).
EDGES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 59, 999_999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 58, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 58, 59, 999_999, tzinfo=UTC),
]
FATES = ("fold", "duplicate", "revise", "late", "unusable")


@dataclass
class Recorder:
    """The stage's events, kept."""

    fates: Counter[str] = field(default_factory=Counter)

    def readings(self, fate: str, count: int) -> None:
        self.fates[fate] += count

    def windows(self, what: str, count: int) -> None:
        pass

    def open_windows(self, count: int) -> None:
        pass


@dataclass
class Run:
    stage: AggregatorStage
    aggregated: MemoryObjectStore
    errors: MemoryObjectStore
    events: Recorder

    def lines(self, prefix: str) -> list[dict[str, Any]]:
        objects = sorted(self.errors.objects.items())
        return [line for key, o in objects if key.startswith(prefix) for line in read_jsonl(o.body)]


def _run(validated: bool) -> Run:
    aggregated, errors = MemoryObjectStore("aggregated"), MemoryObjectStore("error")
    events = Recorder()
    stage = AggregatorStage(
        Rules(size_us=MINUTE_US, allowed_lateness_us=2 * MINUTE_US),
        WindowStore(aggregated, "1-minute", MINUTE_US),
        LateStore(errors),
        events,
        validated=lambda _scenario: validated,
    )
    stage.restore(None)
    return Run(stage, aggregated, errors, events)


# -- what records hold ------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "/", "..", "a=b", "\x00", "\n", "\u202e", "😀" * 128])
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
bad_stamps = (
    st.sampled_from(
        [
            "0000-01-01T00:00:00",
            "0000-01-01T00:00:00+00:00",
            "9999-12-31T23:59:30+00:00",  # its window would end in year 10000
            "9999-12-31T23:00:00-05:00",  # beyond 9999 in UTC
            "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
            "10000-01-01T00:00:00",
            "yesterday",
            "",
            "2026-13-01T00:00:00",
        ]
    )
    | st.integers()
    | st.floats()
    | st.none()
    | st.lists(st.text(max_size=3), max_size=2)
)
bad_sensors = st.sampled_from(["", None]) | st.integers() | st.floats() | st.lists(st.text())
bad_values = (
    st.booleans()
    | st.text(max_size=8)
    | st.sampled_from([math.nan, math.inf, -math.inf, 1e151, -1e300, 10**400])
    | st.lists(st.floats(), min_size=1, max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2)
)
sensor_ids = st.sampled_from(["S1", "S2", "a/b", "a=b", "..", "x\ny", "😀" * 128, "%2F"])


@st.composite
def stamps(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        moment = draw(st.sampled_from(EDGES))
    else:
        moment = BASE + timedelta(seconds=draw(st.integers(0, 300)) / 4)
    offset = draw(st.sampled_from([0, 0, 2, -5]))
    if offset and not BASE.year - 10 < moment.year < BASE.year + 10:
        offset = 0  # an offset at the edges would leave the years 1-9999
    zone = timezone(timedelta(hours=offset))
    return moment.astimezone(zone).isoformat()


@st.composite
def good(draw: st.DrawFn, ident: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "probe_id": ident,
        "sensor_id": draw(sensor_ids),
        "timestamp": draw(stamps()),
    }
    for name in METRICS:
        value = draw(st.none() | st.floats(-1e6, 1e6) | st.integers(-(2**63), 2**64))
        if value is not None or draw(st.booleans()):
            data[name] = value
    data["location"] = draw(anything)
    record: dict[str, Any] = {"sensor_data": data}
    if draw(st.booleans()):
        record["anomalous"] = draw(st.booleans())
    if draw(st.booleans()):
        record["lineage"] = draw(anything)
    return record


@st.composite
def broken(draw: st.DrawFn, ident: int) -> dict[str, Any]:
    """A good reading with one field the aggregator cannot take."""
    record = draw(good(ident))
    data = record["sensor_data"]
    which = draw(st.sampled_from(["timestamp", "sensor_id", "metric"]))
    if which == "timestamp":
        data["timestamp"] = draw(bad_stamps)
    elif which == "sensor_id":
        data["sensor_id"] = draw(bad_sensors)
    else:
        data[draw(st.sampled_from(METRICS))] = draw(bad_values)
    return record


@st.composite
def records(draw: st.DrawFn, base: int) -> tuple[list[Any], set[int], set[int]]:
    """Records (good, broken and arbitrary), the ids of the good and of the broken
    (``probe_id``: no arbitrary object has a key that long)."""
    out: list[Any] = []
    goods, bads = set(), set()
    for ident in range(base, base + draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["good", "good", "good", "broken", "anything"]))
        if kind == "good":
            out.append(draw(good(ident)))
            goods.add(ident)
        elif kind == "broken":
            out.append(draw(broken(ident)))
            bads.add(ident)
        else:
            out.append(draw(anything | st.fixed_dictionaries({"sensor_data": anything})))
    return out, goods, bads


watermarks = st.integers(-(2**64), 2**64) | st.sampled_from(
    [
        int((BASE - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6) + s * 10**6
        for s in (0, 60, 90, 200, 400)
    ]
)


def _ids_of(lines: list[dict[str, Any]]) -> set[Any]:
    return {line["record"].get("probe_id") for line in lines if isinstance(line["record"], dict)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.integers(1, 3).flatmap(lambda n: st.tuples(*(records(100 * i) for i in range(n)))),
    marks=st.lists(watermarks, min_size=3, max_size=3),
    validated=st.booleans(),
)
def test_any_records_are_each_accounted_for_once_and_nothing_raises(
    batches: tuple[tuple[list[Any], set[int], set[int]], ...], marks: list[int], validated: bool
) -> None:
    run = _run(validated)
    stage, events = run.stage, run.events
    total = 0
    for seq, (content, _, _) in enumerate(batches):
        part = Envelope(f"b{seq}", "aggregated", 1, content, position=Position("s-g1", seq))
        batch = Batch([part], f"s-g1-b{seq}")
        stage.prepare(batch)
        stage.apply(batch)
        stage.advance(marks[seq])
        stage.flush()
        total += len(content)
    stage.advance(2**64)  # every window closes
    stage.flush()

    assert set(events.fates) <= set(FATES)
    assert sum(events.fates.values()) == total

    unusable, late = run.lines("unusable/"), run.lines("late/")
    assert len(unusable) == events.fates["unusable"]
    assert len(late) == events.fates["late"]
    bad_ids = set().union(*(bads for _, _, bads in batches))
    good_ids = set().union(*(goods for _, goods, _ in batches))
    unusable_ids = _ids_of(unusable)
    assert bad_ids <= unusable_ids  # every broken reading is set aside...
    assert not good_ids & unusable_ids  # ...and no good one is

    documents = list(
        page_documents({k: o.body for k, o in run.aggregated.objects.items()}).values()
    )
    assert (
        sum(d["record_count"] for d in documents) == events.fates["fold"] + events.fates["revise"]
    )
    for doc in documents:
        for figures in doc["metrics"].values():
            assert all(v is None or math.isfinite(v) for v in figures.values())
