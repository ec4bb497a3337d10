"""Coverage of a batch by dyadic split paths, checked against an interval-union oracle.

A split path names a dyadic piece of a batch: at depth ``d`` the path read as a binary
number ``v`` is the interval [v / 2^d, (v + 1) / 2^d) of the batch. The oracle below
keeps the union of pieces as a set of unit cells at a fixed resolution, which knows
nothing of prefixes, siblings or canonical forms.
"""

from __future__ import annotations

import itertools
import random

import pytest

from sensorpipe.stateful.parts import Coverage

DEPTH = 5  # deepest split in the random trees
CELLS = 1 << DEPTH
ALL_PATHS = [
    "".join(bits) for depth in range(DEPTH + 1) for bits in itertools.product("01", repeat=depth)
]


# -- the oracle --------------------------------------------------------------------------


def cells(path: str) -> set[int]:
    """The unit cells (at resolution 2^DEPTH) of the piece ``path`` names."""
    width = 1 << (DEPTH - len(path))
    start = (int(path, 2) if path else 0) * width
    return set(range(start, start + width))


class UnionOracle:
    """The union of pieces as a set of cells."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def covers(self, path: str) -> bool:
        return cells(path) <= self.seen

    def add(self, path: str) -> bool:
        new = not self.covers(path)
        self.seen |= cells(path)
        return new

    @property
    def complete(self) -> bool:
        return len(self.seen) == CELLS

    def canonical(self) -> list[str]:
        """The maximal pieces inside the union: covered, and the parent is not."""
        return sorted(
            p for p in ALL_PATHS if self.covers(p) and (p == "" or not self.covers(p[:-1]))
        )


def random_split(rng: random.Random, path: str = "", p_split: float = 0.6) -> list[str]:
    """The leaves, in order, of a random binary split tree of depth <= DEPTH."""
    if len(path) < DEPTH and rng.random() < p_split:
        return random_split(rng, path + "0", p_split) + random_split(rng, path + "1", p_split)
    return [path]


def check_against(coverage: Coverage, oracle: UnionOracle) -> None:
    for path in ALL_PATHS:
        assert coverage.covers(path) is oracle.covers(path), path
    assert coverage.complete is oracle.complete
    assert coverage.paths() == oracle.canonical()


# -- examples ----------------------------------------------------------------------------


def test_an_empty_coverage_covers_nothing() -> None:
    coverage = Coverage()
    assert not coverage.complete
    assert coverage.paths() == []
    assert not coverage.covers("")
    assert not coverage.covers("0")


def test_the_whole_batch_is_complete_and_covers_every_piece() -> None:
    coverage = Coverage()
    assert coverage.add("") is True
    assert coverage.complete
    assert coverage.paths() == [""]
    assert all(coverage.covers(p) for p in ["", "0", "1", "0110", "11111"])
    # every piece of it is a duplicate now, the whole batch too
    assert coverage.add("") is False
    assert coverage.add("01") is False
    assert coverage.paths() == [""]


def test_a_piece_covers_its_sub_pieces_but_not_its_sibling_or_parent() -> None:
    coverage = Coverage(["10"])
    assert coverage.covers("10")
    assert coverage.covers("100")
    assert coverage.covers("1011")
    assert not coverage.covers("11")
    assert not coverage.covers("1")
    assert not coverage.covers("")
    assert not coverage.covers("0")
    assert not coverage.covers("01")  # a common suffix is no relation
    assert not coverage.complete


def test_add_returns_false_for_covered_pieces_and_true_for_new_ones() -> None:
    coverage = Coverage()
    assert coverage.add("0") is True
    assert coverage.add("0") is False
    assert coverage.add("01") is False
    assert coverage.add("1") is True
    assert coverage.add("11") is False


def test_siblings_merge_up_to_the_whole_batch() -> None:
    coverage = Coverage()
    coverage.add("11")
    coverage.add("0")
    assert coverage.paths() == ["0", "11"]
    assert not coverage.complete
    coverage.add("10")  # "10" + "11" -> "1", then "0" + "1" -> ""
    assert coverage.paths() == [""]
    assert coverage.complete


def test_siblings_merge_only_as_far_as_both_halves_are_in() -> None:
    coverage = Coverage(["000", "001", "010"])
    # 000+001 -> 00; 00 and 010 do not merge (010 is only half of 01)
    assert coverage.paths() == ["00", "010"]
    coverage.add("011")  # 010+011 -> 01, 00+01 -> 0; "1" is missing
    assert coverage.paths() == ["0"]
    assert not coverage.complete


def test_a_coarser_piece_replaces_the_finer_ones_it_covers() -> None:
    coverage = Coverage(["100", "1011", "0"])
    assert coverage.paths() == ["0", "100", "1011"]
    assert coverage.add("1") is True  # not all of it was seen: new
    assert coverage.paths() == [""]  # and it merges with "0"
    assert coverage.complete


def test_a_coarser_piece_without_its_sibling_stays_alone() -> None:
    coverage = Coverage(["110", "1110"])
    assert coverage.add("1") is True
    assert coverage.paths() == ["1"]
    assert coverage.covers("1111")
    assert not coverage.covers("0")


def test_the_constructor_is_adding_every_path() -> None:
    paths = ["1", "00", "011", "0100"]
    built = Coverage(paths)
    added = Coverage()
    for path in paths:
        added.add(path)
    assert built.paths() == added.paths() == ["00", "0100", "011", "1"]


def test_paths_round_trip_through_the_constructor() -> None:
    coverage = Coverage(["0", "101", "1101"])
    again = Coverage(coverage.paths())
    assert again.paths() == coverage.paths()
    assert all(again.covers(p) is coverage.covers(p) for p in ALL_PATHS)


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations(["0", "10", "11"])),
    ids=lambda order: "-".join(order),
)
def test_an_uneven_split_completes_in_any_order(order: tuple[str, ...]) -> None:
    coverage = Coverage()
    for index, path in enumerate(order):
        assert not coverage.complete
        assert coverage.add(path) is True
        assert coverage.complete is (index == len(order) - 1)
    assert coverage.paths() == [""]


# -- against the oracle --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(200))
def test_random_split_trees_match_the_interval_union(seed: int) -> None:
    """Leaves of one or more random split trees (a redelivery split differently), plus
    duplicates and random pieces, added in a random order: every answer matches the
    oracle's after every step."""
    rng = random.Random(seed)
    pieces = random_split(rng)
    for _ in range(rng.randrange(3)):  # other splittings of the same batch
        other = random_split(rng)
        pieces += rng.sample(other, k=rng.randint(0, min(3, len(other))))
    pieces += rng.choices(ALL_PATHS, k=rng.randrange(3))  # stray pieces of any size
    pieces += rng.choices(pieces, k=rng.randrange(4))  # duplicates
    rng.shuffle(pieces)

    coverage, oracle = Coverage(), UnionOracle()
    check_against(coverage, oracle)
    for path in pieces:
        assert coverage.add(path) is oracle.add(path), path
        check_against(coverage, oracle)


@pytest.mark.parametrize("seed", range(100))
def test_the_leaves_of_one_tree_complete_only_with_the_last_one(seed: int) -> None:
    rng = random.Random(1_000 + seed)
    leaves = random_split(rng, p_split=0.8)
    rng.shuffle(leaves)
    coverage = Coverage()
    for index, leaf in enumerate(leaves):
        assert coverage.complete is False
        assert coverage.add(leaf) is True  # leaves of one tree never overlap
        assert coverage.complete is (index == len(leaves) - 1)


@pytest.mark.parametrize("seed", range(100))
def test_a_missing_leaf_is_exactly_what_is_not_covered(seed: int) -> None:
    rng = random.Random(2_000 + seed)
    leaves = random_split(rng, p_split=0.8)
    missing = rng.choice(leaves)
    coverage = Coverage(leaf for leaf in leaves if leaf != missing)
    assert not coverage.complete
    assert not coverage.covers(missing)
    assert all(coverage.covers(leaf) for leaf in leaves if leaf != missing)
    # no kept path overlaps the missing piece
    assert not any(p.startswith(missing) or missing.startswith(p) for p in coverage.paths())
    assert coverage.add(missing) is True
    assert coverage.complete
