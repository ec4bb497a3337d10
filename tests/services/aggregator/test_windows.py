"""The one decision on a reading, and the table of open windows."""

from __future__ import annotations

import numpy as np
import pytest

from services.aggregator.statistics import Moments
from services.aggregator.windows import Fate, OpenWindows, WindowId, fate, window_start

MIN = 60_000_000  # a minute in µs


@pytest.mark.parametrize(
    ("watermark", "member", "expected"),
    [
        (None, False, Fate.FOLD),  # nothing written yet
        (None, True, Fate.DUPLICATE),
        (2 * MIN - 1, False, Fate.FOLD),  # the watermark has not reached the end
        (2 * MIN - 1, True, Fate.DUPLICATE),
        (2 * MIN, False, Fate.REVISE),  # at the end: the window is written
        (2 * MIN, True, Fate.DUPLICATE),
        (2 * MIN + 10 * MIN - 1, False, Fate.REVISE),  # still within 10 min allowed
        (2 * MIN + 10 * MIN, False, Fate.LATE),  # allowed lateness used up
        (2 * MIN + 10 * MIN, True, Fate.LATE),  # not looked at any more, even a copy
    ],
)
def test_fate(watermark: int | None, member: bool, expected: Fate) -> None:
    window_end = 2 * MIN
    got = fate(window_end, watermark_us=watermark, allowed_lateness_us=10 * MIN, member=member)
    assert got is expected


def test_windows_are_epoch_aligned_even_before_1970() -> None:
    assert window_start(0, MIN) == 0
    assert window_start(MIN - 1, MIN) == 0
    assert window_start(-1, MIN) == -MIN
    assert window_start(90 * MIN + 5, MIN) == 90 * MIN


def _part(count: int, value: float) -> Moments:
    part = Moments.empty((count,))
    part.n[:] = 1.0
    part.mean[:] = value
    part.min[:] = part.max[:] = value
    return part


def _slots(table: OpenWindows, windows: list[WindowId]) -> np.ndarray:
    keys = table.keys(
        [w.sensor_id for w in windows],
        np.arange(len(windows)),
        np.array([w.start_us for w in windows], dtype=np.int64),
    )
    return table.slots(keys, lambda i: windows[i])


def test_the_table_grows_closes_and_reuses_slots_without_mixing_windows() -> None:
    table = OpenWindows(MIN, capacity=2)
    ids = [WindowId(f"S{i}", i * MIN) for i in range(5)]
    slots = _slots(table, ids)  # grows past 2
    assert len(set(slots.tolist())) == 5 and len(table) == 5
    assert _slots(table, ids[2:3]).tolist() == [slots[2]]  # an open window keeps its slot
    one = np.ones(5, dtype=np.int64)
    offsets = np.arange(5, dtype=np.int64) * 1000
    at = np.array([w.start_us for w in ids]) + offsets
    earlier = table.fold(slots, _part(5, 7.0), one, one * 0, at, at, slots, offsets, slots, one * 0)
    assert earlier.all()  # every window's first reading
    # Members: each window holds exactly its own reading.
    assert table.held(slots, offsets).all()
    assert not table.held(slots, offsets + 1).any()
    swapped = table.held(slots[::-1], offsets)  # other windows' offsets
    assert swapped.tolist() == (slots[::-1] == slots).tolist()
    assert table.due(2 * MIN) == ids[:2]  # ends at 1 and 2 minutes
    origin = ("aggregated", 1, "b", None, None)
    (closed,) = table.close([ids[1]], [origin])
    assert closed.id == ids[1] and closed.records == 1 and closed.moments.mean[0] == 7.0
    assert closed.members.tolist() == [1000] and closed.first_us == MIN + 1000
    assert closed.provenance.origins == {origin}
    fresh = WindowId("S9", 9 * MIN)
    (slot,) = _slots(table, [fresh]).tolist()  # takes the freed slot
    assert slot == slots[1]
    state = {s.id: s for s in table.states([origin])}
    assert state[fresh].records == 0 and state[fresh].moments.n[0] == 0.0
    assert state[fresh].members.tolist() == []  # the freed slot's member is gone
    assert state[fresh].provenance.origins == set()
    assert closed.moments.mean[0] == 7.0  # the closed copy is not the slot's memory
    assert [state[w].members.tolist() for w in (ids[0], ids[2], ids[3], ids[4])] == [
        [0],
        [2000],
        [3000],
        [4000],
    ]
