"""StreamBook: per-stream source-order progress, holes, the watermark and its
processing-time rules (idle, gap), and the checkpoint form."""

from __future__ import annotations

import itertools
import random

import orjson
import pytest

from sensorpipe.envelope import Position
from sensorpipe.stateful.parts import Coverage
from sensorpipe.stateful.streams import StreamBook, Timing, Verdict

GRACE = 10_000_000  # 10 s in µs
LIFT = 60_000_000  # one 1-minute window
IDLE_S = 30.0
GAP_S = 600.0
T0 = 1_000.0


def book(**overrides: float) -> StreamBook:
    timing = {
        "grace_us": GRACE,
        "idle_s": IDLE_S,
        "idle_lift_us": LIFT,
        "gap_timeout_s": GAP_S,
        **overrides,
    }
    return StreamBook(
        Timing(
            grace_us=int(timing["grace_us"]),
            idle_s=float(timing["idle_s"]),
            idle_lift_us=int(timing["idle_lift_us"]),
            gap_timeout_s=float(timing["gap_timeout_s"]),
        )
    )


def pos(seq: int, part: str = "", stream: str = "a") -> Position:
    return Position(stream, seq, part)


# -- classification ------------------------------------------------------------------------


def test_a_new_stream_starts_at_batch_zero_and_collects_any_batch() -> None:
    b = book()
    assert b.classify(pos(3), T0) is Verdict.COLLECT
    assert b.next_of("a") == 0  # seeing batch 3 first does not start the stream there
    assert b.classify(pos(0, "1"), T0) is Verdict.COLLECT
    assert b.classify(pos(3, "01"), T0) is Verdict.COLLECT


def test_applied_batches_are_recognised_whatever_the_piece() -> None:
    b = book()
    b.classify(pos(0), T0)
    b.applied_next("a", 5)
    b.applied_next("a", 6)
    assert b.next_of("a") == 2
    for seq, part in [(0, ""), (0, "1"), (1, "0110"), (1, "")]:
        assert b.classify(pos(seq, part), T0) is Verdict.APPLIED
    assert b.classify(pos(2), T0) is Verdict.COLLECT
    assert b.classify(pos(9, "1"), T0) is Verdict.COLLECT


def test_streams_are_independent() -> None:
    b = book()
    b.classify(pos(0, stream="a"), T0)
    b.applied_next("a", 1)
    assert b.classify(pos(0, stream="b"), T0) is Verdict.COLLECT
    assert b.classify(pos(0, stream="a"), T0) is Verdict.APPLIED
    assert b.next_of("b") == 0


def test_a_batch_passed_over_is_a_hole_until_all_of_it_was_applied() -> None:
    b = book()
    b.classify(pos(1), T0)
    b.passed_over("a", None, None)  # batch 0: nothing of it arrived
    assert b.next_of("a") == 1
    assert b.classify(pos(0), T0) is Verdict.HOLE
    assert b.classify(pos(0, "1"), T0) is Verdict.HOLE
    b.applied_hole(pos(0, "1"), None)
    assert b.classify(pos(0, "1"), T0) is Verdict.APPLIED  # a redelivery of that piece
    assert b.classify(pos(0, "11"), T0) is Verdict.APPLIED  # or of a piece of it
    assert b.classify(pos(0, "0"), T0) is Verdict.HOLE
    assert b.classify(pos(0, ""), T0) is Verdict.HOLE  # only half of it was applied
    assert b.streams["a"].holes == [(0, 1)]
    b.applied_hole(pos(0, "0"), None)
    assert b.streams["a"].holes == []  # complete: the hole is filled
    assert b.streams["a"].hole_parts == {}
    for part in ["", "0", "1", "01"]:
        assert b.classify(pos(0, part), T0) is Verdict.APPLIED


def test_what_arrived_of_a_batch_passed_over_counts_as_applied() -> None:
    b = book()
    b.classify(pos(0, "0"), T0)
    b.passed_over("a", Coverage(["0"]), 7)
    assert b.classify(pos(0, "0"), T0) is Verdict.APPLIED
    assert b.classify(pos(0, "01"), T0) is Verdict.APPLIED
    assert b.classify(pos(0, "1"), T0) is Verdict.HOLE
    assert b.streams["a"].done_us == 7
    b.applied_hole(pos(0, "1"), None)
    assert b.streams["a"].holes == []
    assert b.classify(pos(0, ""), T0) is Verdict.APPLIED


def test_applied_next_keeps_the_greatest_event_time() -> None:
    b = book()
    b.classify(pos(0), T0)
    b.applied_next("a", None)
    assert b.streams["a"].done_us is None
    b.applied_next("a", 50)
    b.applied_next("a", 30)  # a batch with older readings does not move progress back
    b.applied_next("a", None)
    assert b.streams["a"].done_us == 50
    assert b.next_of("a") == 4
    b.passed_over("a", None, 80)
    assert b.streams["a"].done_us == 80
    b.applied_hole(pos(4), 90)
    assert b.streams["a"].done_us == 90


# -- holes ---------------------------------------------------------------------------------


def test_consecutive_batches_passed_over_make_one_range() -> None:
    b = book()
    b.classify(pos(0), T0)
    b.passed_over("a", None, None)
    b.passed_over("a", None, None)
    b.passed_over("a", None, None)
    assert b.streams["a"].holes == [(0, 3)]
    b.applied_next("a", 1)  # batch 3
    b.passed_over("a", Coverage(["1"]), None)  # batch 4
    assert b.streams["a"].holes == [(0, 3), (4, 5)]
    assert b.streams["a"].hole_parts[4].paths() == ["1"]
    assert [b.classify(pos(s), T0) for s in range(6)] == [
        Verdict.HOLE,
        Verdict.HOLE,
        Verdict.HOLE,
        Verdict.APPLIED,
        Verdict.HOLE,
        Verdict.COLLECT,
    ]


def test_filling_a_hole_splits_its_range() -> None:
    b = book()
    b.classify(pos(0), T0)
    for _ in range(5):
        b.passed_over("a", None, None)
    assert b.streams["a"].holes == [(0, 5)]
    b.applied_hole(pos(2), None)
    assert b.streams["a"].holes == [(0, 2), (3, 5)]
    b.applied_hole(pos(0), None)
    assert b.streams["a"].holes == [(1, 2), (3, 5)]
    b.applied_hole(pos(4), None)
    assert b.streams["a"].holes == [(1, 2), (3, 4)]
    b.applied_hole(pos(1), None)
    b.applied_hole(pos(3), None)
    assert b.streams["a"].holes == []
    assert all(b.classify(pos(s), T0) is Verdict.APPLIED for s in range(5))


@pytest.mark.parametrize("seed", range(50))
def test_holes_match_a_set_of_missing_batches(seed: int) -> None:
    """Random runs of applied and passed-over batches, then holes filled in a random
    order (whole or in halves): the verdicts match a plain set of missing numbers."""
    rng = random.Random(seed)
    b = book()
    b.classify(pos(0), T0)
    missing: set[int] = set()
    for seq in range(40):
        if rng.random() < 0.4:
            b.passed_over("a", None, None)
            missing.add(seq)
        else:
            b.applied_next("a", seq)
    halves: dict[int, set[str]] = {}
    for seq in rng.sample(sorted(missing), k=len(missing)):
        pieces = [""] if rng.random() < 0.5 else rng.sample(["0", "1"], k=2)
        for piece in pieces[: rng.randint(1, len(pieces))]:
            b.applied_hole(pos(seq, piece), None)
            halves.setdefault(seq, set()).add(piece)
        if "" in halves[seq] or halves[seq] == {"0", "1"}:
            missing.discard(seq)
        for s in range(41):
            if s >= 40:
                whole = half = Verdict.COLLECT
            elif s not in missing:
                whole = half = Verdict.APPLIED
            else:
                whole = Verdict.HOLE
                half = Verdict.APPLIED if "1" in halves.get(s, set()) else Verdict.HOLE
            assert b.classify(pos(s), T0) is whole, s
            assert b.classify(pos(s, "1"), T0) is half, s
        ranges = b.streams["a"].holes
        assert {s for lo, hi in ranges for s in range(lo, hi)} == missing
        assert all(lo < hi for lo, hi in ranges)
        assert all(h1 <= l2 for (_, h1), (l2, _) in itertools.pairwise(ranges))


# -- the watermark ---------------------------------------------------------------------------


def test_no_watermark_before_any_progress() -> None:
    b = book()
    assert b.watermark(T0) is None
    b.classify(pos(2), T0)  # seen, nothing applied
    assert b.watermark(T0) is None
    b.classify(pos(0), T0)
    b.applied_next("a", None)  # applied, but no valid reading
    assert b.watermark(T0) is None


def test_the_watermark_is_the_minimum_over_streams_of_done_minus_grace() -> None:
    b = book()
    for stream, done in [("a", 500_000_000), ("b", 200_000_000), ("c", 900_000_000)]:
        b.classify(pos(0, stream=stream), T0)
        b.applied_next(stream, done)
    assert b.watermark(T0) == 200_000_000 - GRACE
    b.classify(pos(1, stream="b"), T0)
    b.applied_next("b", 700_000_000)
    assert b.watermark(T0) == 500_000_000 - GRACE


def test_a_seen_stream_without_progress_holds_the_watermark_until_it_is_idle() -> None:
    b = book()
    b.classify(pos(0, stream="a"), T0)
    b.applied_next("a", 500_000_000)
    assert b.watermark(T0) == 500_000_000 - GRACE
    b.classify(pos(3, stream="b"), T0 + 1)  # b is seen, nothing of it applied
    assert b.watermark(T0 + 1) is None  # b could still bring readings of any time
    assert b.watermark(T0 + 1 + IDLE_S - 0.001) is None
    # quiet for idle_s and waiting for nothing: b has no say, a (idle too) is lifted
    assert b.watermark(T0 + 1 + IDLE_S) == 500_000_000 + LIFT


def test_a_stream_without_progress_that_waits_holds_the_watermark_for_good() -> None:
    b = book()
    b.classify(pos(0, stream="a"), T0)
    b.applied_next("a", 500_000_000)
    b.classify(pos(3, stream="b"), T0)
    b.waiting("b", T0, waits=True)  # b's batch 3 is held for its batches 0-2
    assert b.watermark(T0 + 10 * IDLE_S) is None
    b.waiting("b", T0 + 10 * IDLE_S, waits=False)
    assert b.watermark(T0 + 10 * IDLE_S) == 500_000_000 + LIFT


def test_a_stream_with_progress_but_no_reading_time_still_counts_as_without() -> None:
    b = book()
    b.classify(pos(0, stream="a"), T0)
    b.applied_next("a", 500_000_000)
    b.classify(pos(0, stream="b"), T0)
    b.applied_next("b", None)  # applied, but no valid reading: no event time
    assert b.watermark(T0) is None
    assert b.watermark(T0 + IDLE_S) == 500_000_000 + LIFT


def test_a_quiet_stream_that_waits_for_nothing_is_lifted() -> None:
    b = book()
    b.classify(pos(0), T0)
    b.applied_next("a", 100_000_000)
    assert b.watermark(T0 + IDLE_S - 0.001) == 100_000_000 - GRACE
    assert b.watermark(T0 + IDLE_S) == 100_000_000 + LIFT
    assert b.watermark(T0 + 10 * IDLE_S) == 100_000_000 + LIFT
    # a part arriving makes it active again
    b.classify(pos(1), T0 + 100)
    assert b.watermark(T0 + 100 + IDLE_S - 1) == 100_000_000 - GRACE


def test_a_notifier_lift_of_zero_lets_the_watermark_reach_the_progress() -> None:
    b = book(idle_lift_us=0)
    b.classify(pos(0), T0)
    b.applied_next("a", 100_000_000)
    assert b.watermark(T0 + IDLE_S) == 100_000_000


def test_a_stream_that_waits_for_a_missing_batch_is_never_idle() -> None:
    b = book()
    b.classify(pos(0), T0)
    b.applied_next("a", 100_000_000)
    b.classify(pos(2), T0)
    b.waiting("a", T0, waits=True)
    assert b.watermark(T0 + 5 * IDLE_S) == 100_000_000 - GRACE
    b.waiting("a", T0 + 5 * IDLE_S, waits=False)
    assert b.watermark(T0 + 5 * IDLE_S) == 100_000_000 + LIFT


def test_no_stream_is_idle_before_idle_not_before() -> None:
    b = book()
    b.classify(pos(0), T0)
    b.applied_next("a", 100_000_000)
    b.idle_not_before = T0 + 100
    assert b.watermark(T0 + 99) == 100_000_000 - GRACE
    assert b.watermark(T0 + 100) == 100_000_000 + LIFT


def test_one_idle_stream_and_one_active_combine() -> None:
    b = book()
    b.classify(pos(0, stream="quiet"), T0)
    b.applied_next("quiet", 100_000_000)
    b.classify(pos(0, stream="busy"), T0 + 40)
    b.applied_next("busy", 150_000_000)
    # quiet is lifted to 160 s, busy holds at 140 s
    assert b.watermark(T0 + 40) == 150_000_000 - GRACE
    # busy lifted too (idle for 30 s): quiet's lift is the minimum
    assert b.watermark(T0 + 70) == 100_000_000 + LIFT


def test_unsequenced_input_drives_the_watermark_only_without_sequenced_progress() -> None:
    b = book()
    b.record_unsequenced(300_000_000, T0)
    b.record_unsequenced(200_000_000, T0)  # arrival order; progress is the greatest
    assert b.watermark(T0) == 300_000_000 - GRACE
    assert b.watermark(T0 + IDLE_S) == 300_000_000 + LIFT  # it idles like a stream
    b.classify(pos(4), T0)  # a sequenced stream seen, without progress: it holds
    assert b.watermark(T0) is None
    assert b.watermark(T0 + IDLE_S) == 300_000_000 + LIFT  # until it is idle
    b.classify(pos(0), T0)
    b.applied_next("a", 900_000_000)
    assert b.watermark(T0) == 900_000_000 - GRACE  # no longer the minimum with 300
    b.record_unsequenced(50_000_000, T0)
    assert b.watermark(T0) == 900_000_000 - GRACE
    assert b.watermark(T0 + IDLE_S) == 900_000_000 + LIFT


# -- the gap clock ---------------------------------------------------------------------------


def test_the_gap_clock_starts_once_and_runs_out_after_the_timeout() -> None:
    b = book()
    b.classify(pos(1), T0)
    assert b.overdue(T0 + 10 * GAP_S) == []
    b.waiting("a", T0, waits=True)
    b.waiting("a", T0 + 100, waits=True)  # still waiting: the clock is not restarted
    assert b.streams["a"].waiting_since == T0
    assert b.overdue(T0 + GAP_S - 0.001) == []
    assert b.overdue(T0 + GAP_S) == ["a"]


def test_progress_restarts_the_gap_clock() -> None:
    b = book()
    b.classify(pos(2), T0)
    b.waiting("a", T0, waits=True)
    b.waiting("a", T0 + 300, waits=True, progressed=True)
    assert b.overdue(T0 + GAP_S) == []
    assert b.overdue(T0 + 300 + GAP_S) == ["a"]


def test_waiting_for_nothing_stops_the_gap_clock() -> None:
    b = book()
    b.classify(pos(2), T0)
    b.waiting("a", T0, waits=True)
    b.waiting("a", T0 + 1, waits=False, progressed=True)
    assert b.streams["a"].waiting_since is None
    assert b.overdue(T0 + 10 * GAP_S) == []


def test_only_the_streams_that_waited_too_long_are_overdue() -> None:
    b = book()
    for stream, since in [("a", T0), ("b", T0 + 200), ("c", T0 + 500)]:
        b.classify(pos(1, stream=stream), since)
        b.waiting(stream, since, waits=True)
    b.classify(pos(0, stream="d"), T0)  # never waiting
    assert sorted(b.overdue(T0 + 200 + GAP_S)) == ["a", "b"]


def test_waiting_on_an_unknown_stream_is_ignored() -> None:
    b = book()
    b.waiting("nobody", T0, waits=True)
    assert b.streams == {}
    assert b.overdue(T0 + 10 * GAP_S) == []


# -- the checkpoint form -------------------------------------------------------------------


def built_book() -> StreamBook:
    b = book()
    b.classify(pos(0, stream="a"), T0)
    b.applied_next("a", 100)
    b.passed_over("a", None, None)  # 1
    b.passed_over("a", Coverage(["01", "1"]), 150)  # 2
    b.applied_next("a", 120)  # 3
    b.passed_over("a", None, None)  # 4
    b.classify(pos(0, stream="b"), T0)
    b.applied_next("b", None)
    b.classify(pos(5, stream="c"), T0)  # seen only
    b.record_unsequenced(42, T0)
    b.waiting("c", T0, waits=True)
    return b


def test_to_dict_is_the_documented_checkpoint_form() -> None:
    assert built_book().to_dict() == {
        "streams": {
            "a": {
                "next": 5,
                "done_us": 150,
                "holes": [[1, 3], [4, 5]],
                "hole_parts": {"2": ["01", "1"]},
            },
            "b": {"next": 1, "done_us": None, "holes": [], "hole_parts": {}},
            "c": {"next": 0, "done_us": None, "holes": [], "hole_parts": {}},
        },
        "unsequenced_us": 42,
    }


def test_restore_round_trips_through_json() -> None:
    original = built_book()
    data = orjson.loads(orjson.dumps(original.to_dict()))
    restored = book()
    restored.restore(data, T0 + 5_000)
    assert restored.to_dict() == original.to_dict()
    parts = ["", "0", "1"]
    probes = [pos(s, part, stream) for stream in "abcd" for s in range(7) for part in parts]
    for p in probes:
        assert restored.classify(p, T0) is original.classify(p, T0), p


def test_restored_streams_are_active_from_now_and_wait_for_nothing() -> None:
    original = built_book()
    restored = book()
    restored.restore(original.to_dict(), T0 + 5_000)
    # b and c (no progress) hold it until they are idle, idle_s after the restore,
    # although the original went quiet long ago; c's gap clock is not checkpointed
    assert original.watermark(T0 + 5_000) is None  # c waits
    assert restored.watermark(T0 + 5_000 + IDLE_S - 1) is None
    assert restored.watermark(T0 + 5_000 + IDLE_S) == 150 + LIFT
    assert restored.overdue(T0 + 100 * GAP_S) == []

    only_a = book()
    only_a.restore({"streams": {"a": original.to_dict()["streams"]["a"]}}, T0 + 5_000)
    assert only_a.watermark(T0 + 5_000 + IDLE_S - 1) == 150 - GRACE
    assert only_a.watermark(T0 + 5_000 + IDLE_S) == 150 + LIFT
    assert only_a.unsequenced.done_us is None


def test_restore_of_nothing_starts_empty() -> None:
    b = built_book()
    b.restore(None, T0)
    assert b.streams == {}
    assert b.watermark(T0) is None
    assert b.to_dict() == {"streams": {}, "unsequenced_us": None}
