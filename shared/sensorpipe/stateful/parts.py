"""Which pieces of a batch have been seen: split paths and their coverage.

A stage that splits a batch to fit the message size limit names the halves by extending
the split path ("" -> "0", "1"; "1" -> "10", "11"), and stages further on may split
again, or, on a redelivery, split differently. Each path is a dyadic piece of its
batch: "" is all of it, "0" the first half, "10" the first quarter of the second half.
:class:`Coverage` keeps the union of the pieces seen, in canonical form (no piece inside
another, no two sibling halves side by side), so "was this piece seen?" is "is one of
the kept paths a prefix of it?" and "is the batch complete?" is "is the kept set {""}?".
"""

from __future__ import annotations

from collections.abc import Iterable


class Coverage:
    """The union of the split paths seen of one batch."""

    __slots__ = ("_paths",)

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self._paths: set[str] = set()
        for path in paths:
            self.add(path)

    def covers(self, path: str) -> bool:
        """True if every record of ``path`` was in a piece seen already."""
        return any(path.startswith(seen) for seen in self._paths)

    def add(self, path: str) -> bool:
        """Note a piece seen; False if it was covered already (a duplicate)."""
        if self.covers(path):
            return False
        self._paths = {p for p in self._paths if not p.startswith(path)}
        while path:
            sibling = path[:-1] + ("1" if path[-1] == "0" else "0")
            if sibling not in self._paths:
                break
            self._paths.discard(sibling)
            path = path[:-1]
        self._paths.add(path)
        return True

    @property
    def complete(self) -> bool:
        return "" in self._paths

    def paths(self) -> list[str]:
        return sorted(self._paths)
