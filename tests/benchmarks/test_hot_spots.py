"""The collapsed-stack reader: inclusive and self shares of hand-written py-spy lines,
counted here by hand."""

from __future__ import annotations

import pytest

from benchmarks.hot_spots import NO_FRAME, HotSpots, Share, function_of, hot_spots, parse

# 20 samples in all. By hand, per function (name and file, lines merged):
#   main:   on every stack with frames (10)                 inclusive 10, self 0
#   handle: stacks 1, 2, 3 (3 + 2 + 4)                      inclusive 9,  self 0
#   encode: stack 1 (3), stack 3 (4; twice on it: once)     inclusive 7,  self 3 + 4 = 7
#   put:    stack 2 (2)                                     inclusive 2,  self 2
#   poll:   stack 4 (1)                                     inclusive 1,  self 1
#   the last line: 10 samples without a Python frame        self 10 of NO_FRAME
LINES = [
    "main (svc/__main__.py:10);handle (svc/handler.py:20);encode (lib/codec.py:5) 3\n",
    "main (svc/__main__.py:10);handle (svc/handler.py:22);put (lib/store.py:7) 2\n",
    "main (svc/__main__.py:10);handle (svc/handler.py:20);encode (lib/codec.py:5);"
    "encode (lib/codec.py:9) 4\n",
    "\n",
    "main (svc/__main__.py:11);poll (lib/loop.py:3) 1\n",
    " 10\n",
]


def test_inclusive_counts_a_function_once_per_sample_and_merges_its_lines() -> None:
    spots = hot_spots(LINES)
    assert spots.samples == 20
    assert spots.inclusive == [
        Share("main (svc/__main__.py)", 10, 10 / 20),
        Share("handle (svc/handler.py)", 9, 9 / 20),
        Share("encode (lib/codec.py)", 7, 7 / 20),
        Share("put (lib/store.py)", 2, 2 / 20),
        Share("poll (lib/loop.py)", 1, 1 / 20),
    ]


def test_self_is_the_innermost_frame_or_no_frame_at_all() -> None:
    assert hot_spots(LINES).own == [
        Share(NO_FRAME, 10, 10 / 20),
        Share("encode (lib/codec.py)", 7, 7 / 20),
        Share("put (lib/store.py)", 2, 2 / 20),
        Share("poll (lib/loop.py)", 1, 1 / 20),
    ]


def test_a_function_that_only_calls_one_other_is_not_ranked_inclusive() -> None:
    # run and start only ever call one function each and never run themselves; work
    # calls two (and runs itself): ranked. By hand: work 3 + 1 + 2 = 6, step 1 + 2 = 3.
    lines = [
        "run (a.py:1);start (a.py:5);work (b.py:2) 3\n",
        "run (a.py:1);start (a.py:6);work (b.py:3);step (b.py:9) 1\n",
        "run (a.py:2);start (a.py:5);work (b.py:2);step (b.py:8) 2\n",
    ]
    spots = hot_spots(lines)
    assert spots.inclusive == [Share("work (b.py)", 6, 6 / 6), Share("step (b.py)", 3, 3 / 6)]
    assert spots.own == [Share("step (b.py)", 3, 3 / 6), Share("work (b.py)", 3, 3 / 6)]


def test_top_cuts_the_lists_and_ties_go_by_name() -> None:
    lines = ["a (x.py:1);b (x.py:2) 2\n", "a (x.py:1);c (x.py:3) 2\n"]
    spots = hot_spots(lines, top=2)
    assert [s.function for s in spots.inclusive] == ["a (x.py)", "b (x.py)"]
    assert [s.function for s in spots.own] == ["b (x.py)", "c (x.py)"]


def test_samples_with_a_left_out_function_are_counted_apart() -> None:
    # Leaving out put: stack 2 (2 samples) goes; the other 18 make the shares. main 8;
    # handle now only calls encode and runs nothing itself: a pass-through, unranked;
    # encode 3 + 4 = 7.
    spots = hot_spots(LINES, top=2, without={"put (lib/store.py)"})
    assert spots == HotSpots(
        samples=18,
        inclusive=[
            Share("main (svc/__main__.py)", 8, 8 / 18),
            Share("encode (lib/codec.py)", 7, 7 / 18),
        ],
        own=[Share(NO_FRAME, 10, 10 / 18), Share("encode (lib/codec.py)", 7, 7 / 18)],
        left_out=2,
    )


def test_a_frame_keeps_a_name_with_spaces_and_loses_only_its_line() -> None:
    assert function_of("<lambda> (my dir/f.py:123)") == "<lambda> (my dir/f.py)"
    assert function_of("f (x.py)") == "f (x.py)"
    assert parse("a b (x.py:1);c (y.py:2) 17") == (["a b (x.py:1)", "c (y.py:2)"], 17)
    assert parse(" 3\n") == ([], 3)


@pytest.mark.parametrize("line", ["a (x.py:1)", "a (x.py:1) many", "3"])
def test_a_line_without_a_count_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not a collapsed stack line"):
        parse(line)
