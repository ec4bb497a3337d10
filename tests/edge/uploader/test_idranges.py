"""IdRanges, the id sets of the checkpoint's gaps and pending batches, against Python sets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.uploader import IdRanges

IDS = st.sets(st.integers(min_value=-30, max_value=30), max_size=25)


def members(ranges: IdRanges) -> set[int]:
    return {i for lo, hi in ranges for i in range(lo, hi + 1)}


@given(IDS, IDS)
def test_set_operations_match_python_sets(a: set[int], b: set[int]) -> None:
    ra, rb = IdRanges.of(a), IdRanges.of(b)
    assert members(ra) == a
    assert members(ra.union(rb)) == a | b
    assert members(ra.minus(rb)) == a - b
    assert all(i in ra for i in a) and not any(i in ra for i in b - a)
    assert IdRanges.from_json(ra.to_json()) == ra


def test_consecutive_ids_are_one_interval_and_bad_json_is_refused() -> None:
    assert IdRanges.of(range(1, 501)).to_json() == [[1, 500]]
    assert IdRanges.span(5, 4) == IdRanges()
    for bad in ([[3, 1]], [[1, 4], [5, 6]], [[5, 6], [1, 2]]):
        with pytest.raises(ValueError, match="not sorted"):
            IdRanges.from_json(bad)
