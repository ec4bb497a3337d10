"""Window assignment, placement (fold / duplicate / late / rebuild) and closing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.aggregator.windows import (
    AFTER_WATERMARK,
    WINDOW_ALREADY_WRITTEN,
    Reading,
    Verdict,
    WindowBook,
    WindowId,
    window_start,
)

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC).timestamp()  # a minute boundary


def reading(sensor: str, offset: float, **values: float) -> Reading:
    moment = datetime.fromtimestamp(T0 + offset, UTC)
    stamp = moment.isoformat(timespec="milliseconds")
    data = {"sensor_id": sensor, "timestamp": stamp, "location": "Lisbon", **values}
    return Reading(f"{sensor}|{stamp}", sensor, T0 + offset, stamp, {"sensor_data": data})


def nothing_written(_window: WindowId) -> frozenset[str] | None:
    return None


def book(**kw: float) -> WindowBook:
    args = {"size": 60, "grace_s": 10.0, "idle_flush_s": 30.0}
    args.update(kw)
    return WindowBook(
        size=int(args["size"]), grace_s=args["grace_s"], idle_flush_s=args["idle_flush_s"]
    )


def fold(b: WindowBook, r: Reading, now: float = 0.0, handle: str = "h1") -> None:
    placed = b.place(r, lookup=nothing_written)
    assert placed.verdict is Verdict.FOLD
    w = b.open_window(placed.window, rebuild=placed.rebuild, now=now)
    w.fold(handle, [r], scenario="aggregated", config_version=1, batch_id="b1", now=now)
    b.advance([r])


@pytest.mark.parametrize(
    ("at", "size", "expected"),
    [
        (T0, 60, T0),
        (T0 + 59.999, 60, T0),
        (T0 + 60, 60, T0 + 60),
        (T0 - 0.001, 60, T0 - 60),
        (T0 + 299, 300, T0),  # 12:00 is a multiple of 5 minutes
        (T0 + 7, 5, T0 + 5),
        (-0.5, 60, -60),  # before the epoch: floor, not truncation
    ],
)
def test_windows_are_aligned_to_the_epoch(at: float, size: int, expected: float) -> None:
    assert window_start(at, size) == int(expected)


def test_reading_folds_then_duplicate_is_recognised() -> None:
    b = book()
    r = reading("s1", 5, temperature=20.0)
    fold(b, r)
    again = b.place(r, lookup=nothing_written)
    assert again.verdict is Verdict.DUPLICATE
    assert b.open[WindowId("s1", int(T0))].stats.records == 1


def test_late_after_watermark_is_late_and_on_time_within_grace_is_not() -> None:
    b = book(grace_s=10)
    fold(b, reading("s1", 5))
    fold(b, reading("s1", 69))  # watermark 59: window [0, 60) still open
    assert b.place(reading("s1", 30), lookup=nothing_written).verdict is (Verdict.FOLD)
    fold(b, reading("s1", 70))  # watermark 60: the first window is closed
    placed = b.place(reading("s1", 30), lookup=nothing_written)
    assert (placed.verdict, placed.reason) == (Verdict.LATE, AFTER_WATERMARK)


def test_watermark_is_per_sensor() -> None:
    b = book()
    fold(b, reading("s1", 5))
    fold(b, reading("s2", 3600))  # another sensor far ahead does not close s1's window
    assert not b.behind_watermark(WindowId("s1", int(T0)))
    assert b.place(reading("s1", 40), lookup=nothing_written).verdict is (Verdict.FOLD)


def test_due_by_watermark_and_by_idle_time() -> None:
    b = book(grace_s=10, idle_flush_s=30)
    fold(b, reading("s1", 5), now=100.0)
    fold(b, reading("s2", 5), now=100.0)
    assert b.due(now=110.0) == []
    fold(b, reading("s1", 75), now=110.0)  # s1 watermark 65 passes [0, 60)
    assert [w.id for w in b.due(now=110.0)] == [WindowId("s1", int(T0))]
    # s2 has had no input for 30 s: flushed although its watermark never moved.
    due = {w.id for w in b.due(now=130.0)}
    assert WindowId("s2", int(T0)) in due
    assert WindowId("s1", int(T0) + 60) not in due  # last input at 110


def test_written_window_decides_duplicate_or_late() -> None:
    b = book()
    fold(b, reading("s1", 5))
    window = WindowId("s1", int(T0))
    b.closed(window, frozenset({reading("s1", 5).key}))
    assert window not in b.open
    fold(b, reading("s1", 200))
    # Behind the watermark: the remembered members decide, no S3 lookup needed.
    assert b.place(reading("s1", 5), lookup=nothing_written).verdict is (Verdict.DUPLICATE)
    placed = b.place(reading("s1", 6), lookup=nothing_written)
    assert (placed.verdict, placed.reason) == (Verdict.LATE, AFTER_WATERMARK)
    placed = b.place(reading("s1", 6), lookup=nothing_written, redelivered_latest=T0 + 10)
    assert (placed.verdict, placed.reason) == (Verdict.LATE, WINDOW_ALREADY_WRITTEN)
    # Ahead of the watermark after an idle flush: the same.
    b2 = book()
    fold(b2, reading("s1", 5))
    b2.closed(window, frozenset({reading("s1", 5).key}))
    placed = b2.place(reading("s1", 7), lookup=nothing_written)
    assert (placed.verdict, placed.reason) == (Verdict.LATE, WINDOW_ALREADY_WRITTEN)


def test_lookup_decides_for_windows_written_by_an_earlier_process() -> None:
    b = book()
    fold(b, reading("s1", 600))
    window = WindowId("s1", int(T0))
    calls: list[WindowId] = []

    def written(w: WindowId) -> frozenset[str] | None:
        calls.append(w)
        return frozenset({reading("s1", 5).key}) if w == window else None

    assert b.place(reading("s1", 5), lookup=written).verdict is (Verdict.DUPLICATE)
    assert b.place(reading("s1", 6), lookup=written).verdict is Verdict.LATE
    assert calls == [window]  # the answer is remembered


def test_redelivered_reading_behind_watermark_rebuilds_an_unwritten_window() -> None:
    b = book()
    fold(b, reading("s1", 600), now=55.0)
    r = reading("s1", 5)
    assert b.place(r, lookup=nothing_written).verdict is Verdict.LATE
    # Judged by its own message (latest reading at 10 s): on time, so its unwritten
    # window is rebuilt although the process watermark has moved on.
    placed = b.place(r, lookup=nothing_written, redelivered_latest=T0 + 10)
    assert placed.verdict is Verdict.FOLD and placed.rebuild
    # The same reading in a redelivered message whose own readings reach 600 s was late
    # when that message was first taken, and stays late.
    again = b.place(r, lookup=nothing_written, redelivered_latest=T0 + 600)
    assert (again.verdict, again.reason, again.settled) == (Verdict.LATE, AFTER_WATERMARK, False)
    w = b.open_window(placed.window, rebuild=True, now=50.0)
    w.fold("h2", [r], scenario="aggregated", config_version=1, batch_id="b", now=50.0)
    # A rebuilt window waits for its siblings: only idle time closes it.
    assert b.due(now=60.0) == []
    assert [x.id for x in b.due(now=80.0)] == [placed.window]  # (600's window: input at 55)
    # A first delivery into a window the watermark passed is late even while it is open.
    placed = b.place(reading("s1", 6), lookup=nothing_written)
    assert (placed.verdict, placed.reason) == (Verdict.LATE, AFTER_WATERMARK)


def test_window_metadata_is_independent_of_arrival_order() -> None:
    rows = [reading("s1", t, temperature=20.0 + t) for t in (30, 10, 50, 20)]
    rows[0].record["quality"] = {"anomalous": True}
    rows[1].record["lineage"] = {"batch_id": "e1", "node_id": "n1", "job_id_hash": "j1"}
    b = book()
    w = b.open_window(WindowId("s1", int(T0)), rebuild=False, now=0.0)
    w.fold("h1", rows[:2], scenario="aggregated", config_version=1, batch_id="r1", now=0)
    w.fold("h2", rows[2:], scenario="notification", config_version=2, batch_id="r2", now=1)
    assert w.earliest is rows[1] and w.latest is rows[2]
    assert w.anomalies == 1
    assert w.batch_ids == {"e1", "r1", "r2"}
    assert (w.node_ids, w.job_id_hashes) == ({"n1"}, {"j1"})
    assert w.scenarios == {"aggregated", "notification"}
    assert w.stats.metrics["temperature"].mean == pytest.approx(20.0 + 27.5, rel=1e-12)
    assert set(w.contributors) == {"h1", "h2"}


def test_written_memory_is_bounded() -> None:
    b = WindowBook(size=60, grace_s=0, idle_flush_s=1, remembered=100)
    for i in range(250):
        b.remember(WindowId("s", i * 60), frozenset({str(i)}))
    assert b.written_members(WindowId("s", 0), nothing_written) is None
    assert b.written_members(WindowId("s", 249 * 60), nothing_written) == frozenset({"249"})
