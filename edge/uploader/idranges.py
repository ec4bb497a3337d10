"""Sets of row ids as sorted, disjoint, closed intervals.

The checkpoint needs two such sets and both are almost always a handful of intervals:
the ids of a batch (one interval when ids are consecutive) and the *gaps* behind the
checkpoint, ids at or below it that held no row when the uploader read past them (a row
written there later is behind the checkpoint and must still be found). SQLite ids are
64-bit, so the smallest possible id is ``MIN_ID``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

MIN_ID: Final = -(2**63)
MAX_ID: Final = 2**63 - 1

Interval = tuple[int, int]


@dataclass(frozen=True, slots=True)
class IdRanges:
    """An immutable set of ids; ``intervals`` are sorted, disjoint and not adjacent."""

    intervals: tuple[Interval, ...] = ()

    @classmethod
    def of(cls, ids: Iterable[int]) -> IdRanges:
        out: list[list[int]] = []
        for row_id in sorted(set(ids)):
            if out and row_id == out[-1][1] + 1:
                out[-1][1] = row_id
            else:
                out.append([row_id, row_id])
        return cls(tuple((lo, hi) for lo, hi in out))

    @classmethod
    def span(cls, lo: int, hi: int) -> IdRanges:
        return cls(((lo, hi),)) if lo <= hi else cls()

    @classmethod
    def from_json(cls, data: Any) -> IdRanges:
        pairs = [(int(lo), int(hi)) for lo, hi in data]
        if any(lo > hi for lo, hi in pairs) or any(a[1] + 1 >= b[0] for a, b in pairwise(pairs)):
            raise ValueError(f"id ranges {data!r} are not sorted, disjoint closed intervals")
        return cls(tuple(pairs))

    def to_json(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in self.intervals]

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __iter__(self) -> Iterator[Interval]:
        return iter(self.intervals)

    def __len__(self) -> int:
        return len(self.intervals)

    def __contains__(self, row_id: object) -> bool:
        if not isinstance(row_id, int):
            return False
        return any(lo <= row_id <= hi for lo, hi in self.intervals)

    def union(self, other: IdRanges) -> IdRanges:
        merged: list[list[int]] = []
        for lo, hi in sorted(self.intervals + other.intervals):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return IdRanges(tuple((lo, hi) for lo, hi in merged))

    def minus(self, other: IdRanges) -> IdRanges:
        out: list[Interval] = []
        for lo, hi in self.intervals:
            start = lo
            for olo, ohi in other.intervals:
                if ohi < start or olo > hi:
                    continue
                if olo > start:
                    out.append((start, olo - 1))
                start = ohi + 1
                if start > hi:
                    break
            if start <= hi:
                out.append((start, hi))
        return IdRanges(tuple(out))

    def newest(self, keep: int) -> IdRanges:
        """The ``keep`` highest intervals (the checkpoint bounds what it remembers)."""
        return IdRanges(self.intervals[-keep:] if keep > 0 else ())
