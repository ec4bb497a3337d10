"""Tumbling event-time windows per sensor: identity, the fate of a reading, window state.

- A window of ``size`` seconds starts at a multiple of ``size`` since the epoch (for the
  default 60 s that is the minute).
- :func:`fate` is the one place that decides what becomes of a reading: fold it into
  its open window, drop it as a duplicate, revise its written window, or set it aside
  as late. It is a pure function of the reading's window, the watermark the shard had
  reached when the reading's batch was applied, the allowed lateness, and whether the
  window already holds the reading.
- :class:`WindowState` is everything one window knows (statistics, members, first and
  last reading, location, provenance, revision). :class:`OpenWindows` keeps the open
  ones in arrays indexed by a slot per window: a batch is merged into hundreds of
  windows, members checked and added included, in a few numpy operations, and what is
  done per window in Python is one dictionary lookup.

A reading's identity within its window is its offset from the window start in
microseconds (its sensor is the window's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from services.aggregator.statistics import Ints, K, Moments, merge

_FREE = np.iinfo(np.int64).max
# A member of an open window is one int64: slot << _SHIFT | offset (offsets are below a
# window's length, at most a day: 8.64e10 µs < 2**37).
_SHIFT = 37


class WindowId(NamedTuple):
    sensor_id: str
    start_us: int  # epoch microseconds


def window_start(at_us: int, size_us: int) -> int:
    """Start of the tumbling window holding event time ``at_us`` (epoch-aligned)."""
    return at_us // size_us * size_us


class Fate(Enum):
    FOLD = "fold"  # new to its open window: count it
    DUPLICATE = "duplicate"  # its window holds this reading already
    REVISE = "revise"  # its window was written without it: a new revision holds it
    LATE = "late"  # beyond the allowed lateness: side output, with the reason


# Reasons in the late side output (and the metric label).
BEYOND_ALLOWED_LATENESS = "beyond_allowed_lateness"
# The fate of a record that cannot be windowed at all (no sensor, no readable or
# placeable time, a metric that is not a number): ``unusable/`` in the error bucket, with
# its reason (readings.UNUSABLE_REASONS).
UNUSABLE = "unusable"


def fate(
    window_end_us: int, *, watermark_us: int | None, allowed_lateness_us: int, member: bool
) -> Fate:
    """What becomes of a reading.

    Parameters:
        window_end_us: the end of the reading's window.
        watermark_us: the shard's watermark when the reading's batch was applied:
            windows ending at or before it are written. None: nothing is written yet.
        allowed_lateness_us: how far past its end a written window is still revised.
        member: the reading's window (open, or written) holds this reading already.

    A reading beyond the allowed lateness is late even if it is a duplicate: windows
    that old are not read back to tell.
    """
    if watermark_us is not None and window_end_us + allowed_lateness_us <= watermark_us:
        return Fate.LATE
    if member:
        return Fate.DUPLICATE
    if watermark_us is not None and window_end_us <= watermark_us:
        return Fate.REVISE
    return Fate.FOLD


# One origin of readings: (scenario, config version, batch id, node id, job id hash);
# None where a field is not known (a window read back from its document keeps each
# field's values as origins of their own).
Origin = tuple[str | None, int | None, str | None, str | None, str | None]
_FIELDS = ("scenarios", "config_versions", "batch_ids", "node_ids", "job_id_hashes")


@dataclass(slots=True)
class Provenance:
    """Where a window's readings came from: the set of their origins."""

    origins: set[Origin] = field(default_factory=set)

    def update(self, other: Provenance) -> None:
        self.origins |= other.origins

    def to_dict(self) -> dict[str, list[Any]]:
        if len(self.origins) == 1:  # the common case: one batch's lineage
            (only,) = self.origins
            return {name: [] if v is None else [v] for name, v in zip(_FIELDS, only, strict=True)}
        out: dict[str, list[Any]] = {name: [] for name in _FIELDS}
        if not self.origins:
            return out
        for name, values in zip(_FIELDS, zip(*self.origins, strict=True), strict=True):
            distinct = set(values)
            distinct.discard(None)
            out[name] = sorted(distinct) if len(distinct) > 1 else list(distinct)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        origins: set[Origin] = set()
        for i, name in enumerate(_FIELDS):
            for value in data.get(name, []):
                entry: list[Any] = [None] * len(_FIELDS)
                entry[i] = int(value) if name == "config_versions" else str(value)
                origins.add(tuple(entry))
        return cls(origins)


@dataclass(slots=True)
class WindowState:
    """A whole window. ``members`` are the sorted offsets of its readings; ``revision``
    counts the writes after the first (-1: never written)."""

    id: WindowId
    moments: Moments
    members: Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    records: int = 0
    anomalies: int = 0
    first_us: int = 0
    last_us: int = 0
    location: Any = None
    provenance: Provenance = field(default_factory=Provenance)
    revision: int = -1

    @classmethod
    def empty(cls, window: WindowId) -> WindowState:
        return cls(window, Moments.empty(), first_us=int(_FREE), last_us=-int(_FREE))

    def add(
        self,
        part: Moments,
        offsets: Ints,
        anomalies: int,
        location: Any,
        origins: set[Origin],
    ) -> None:
        """Merge readings in (their sorted, new ``offsets`` and their statistics)."""
        self.moments = merge(self.moments, part)
        self.members = np.union1d(self.members, offsets)
        self.records += len(offsets)
        self.anomalies += anomalies
        first, last = self.id.start_us + int(offsets[0]), self.id.start_us + int(offsets[-1])
        if first < self.first_us:
            self.first_us, self.location = first, location
        self.last_us = max(self.last_us, last)
        self.provenance.origins |= origins


class OpenWindows:
    """The windows still collecting readings, in arrays indexed by slot.

    A window is found by a packed int64 key (its sensor's number here, and its window
    number: :meth:`keys`), in a sorted array, so a batch finds all its windows with one
    ``searchsorted``. Members (slot, offset) and origins (slot, origin code) are sorted
    int64 arrays too: checking and adding them is a few numpy calls per batch.
    """

    def __init__(self, size_us: int, capacity: int = 256) -> None:
        self.size_us = size_us
        self._sensors: dict[str, int] = {}
        self._keys = np.zeros(0, dtype=np.int64)  # sorted keys of the open windows
        self._key_slots = np.zeros(0, dtype=np.int64)  # the slot of each key
        self._ids: list[WindowId | None] = [None] * capacity
        self._free = list(range(capacity - 1, -1, -1))
        self.moments = Moments.empty((capacity,))
        self.records = np.zeros(capacity, dtype=np.int64)
        self.anomalies = np.zeros(capacity, dtype=np.int64)
        self.end_us = np.full(capacity, _FREE, dtype=np.int64)
        self.first_us = np.full(capacity, _FREE, dtype=np.int64)
        self.last_us = np.full(capacity, -_FREE, dtype=np.int64)
        self.location: list[Any] = [None] * capacity
        self._members = np.zeros(0, dtype=np.int64)  # sorted slot << _SHIFT | offset
        self._origins = np.zeros(0, dtype=np.int64)  # sorted slot << 32 | origin code

    def __len__(self) -> int:
        return len(self._keys)

    def ids(self) -> list[WindowId]:
        return [w for w in self._ids if w is not None]

    def keys(self, names: list[str], codes: Ints, starts_us: Ints) -> Ints:
        """The keys of windows (sensor ``names[code]``, starting at ``starts_us``)."""
        numbers = np.array(
            [self._sensors.setdefault(name, len(self._sensors)) for name in names],
            dtype=np.int64,
        )
        return (numbers[codes] << _KEY_SHIFT) + (starts_us // self.size_us + _KEY_BIAS)

    # -- a batch ---------------------------------------------------------------------

    def slots(self, keys: Ints, window_of: Callable[[int], WindowId]) -> Ints:
        """The slot of each key's window, opening those not open yet (``window_of(i)``
        names the window of ``keys[i]``)."""
        found = np.searchsorted(self._keys, keys)
        found[found == len(self._keys)] = 0
        hit = (self._keys[found] == keys) if len(self._keys) else np.zeros(len(keys), np.bool_)
        slots = np.where(hit, self._key_slots[found] if len(self._keys) else -1, -1)
        missing = np.flatnonzero(~hit).tolist()
        if missing:
            opened = [self._open(window_of(i)) for i in missing]
            slots[missing] = opened
            self._index(keys[missing], np.array(opened, dtype=np.int64))
        return slots

    def held(self, slots: Ints, offsets: Ints) -> npt.NDArray[np.bool_]:
        """Per reading (its window's slot, its offset): the window holds it already."""
        return _contains(self._members, (slots << _SHIFT) | offsets)

    def fold(
        self,
        slots: Ints,
        part: Moments,
        counts: Ints,
        anomalies: Ints,
        first_us: Ints,
        last_us: Ints,
        member_slots: Ints,
        offsets: Ints,
        origin_slots: Ints,
        origin_codes: Ints,
    ) -> npt.NDArray[np.bool_]:
        """Merge per-window partials in (``slots`` distinct; ``counts``, ``anomalies``,
        ``first_us`` and ``last_us`` per slot), their members (a slot and an offset per
        reading) and origins (slot, origin code pairs); returns which windows got an
        earlier first reading (the caller sets their location)."""
        self.moments.put(slots, merge(self.moments.take(slots), part))
        self.records[slots] += counts
        self.anomalies[slots] += anomalies
        earlier = first_us < self.first_us[slots]
        self.first_us[slots] = np.minimum(self.first_us[slots], first_us)
        self.last_us[slots] = np.maximum(self.last_us[slots], last_us)
        self._members = _insert(self._members, np.sort((member_slots << _SHIFT) | offsets))
        pairs = np.unique((origin_slots << 32) | origin_codes)
        self._origins = _insert(self._origins, pairs[~_contains(self._origins, pairs)])
        return np.asarray(earlier)

    def due(self, watermark_us: int) -> list[WindowId]:
        """Windows whose end the watermark has reached, oldest first."""
        slots = np.flatnonzero(self.end_us <= watermark_us).tolist()
        found = [self._ids[s] for s in slots]
        return sorted((w for w in found if w is not None), key=lambda w: (w.start_us, w))

    def close(self, windows: list[WindowId], origins: list[Origin]) -> list[WindowState]:
        """Take the windows out (their slots are free again) as whole states;
        ``origins`` decodes origin codes."""
        if not windows:
            return []
        keys = self._window_keys(windows)
        at = np.searchsorted(self._keys, keys)
        slots = self._key_slots[at].tolist()
        states = self._states(slots, origins)
        keep = np.ones(len(self._keys), dtype=np.bool_)
        keep[at] = False
        self._keys, self._key_slots = self._keys[keep], self._key_slots[keep]
        index = np.array(slots, dtype=np.int64)
        self._members = _drop_slots(self._members, index, _SHIFT)
        self._origins = _drop_slots(self._origins, index, 32)
        self.moments.put(index, Moments.empty((len(slots),)))
        self.records[index] = 0
        self.anomalies[index] = 0
        self.end_us[index] = _FREE
        self.first_us[index] = _FREE
        self.last_us[index] = -_FREE
        for slot in slots:
            self._ids[slot] = None
            self.location[slot] = None
            self._free.append(slot)
        return states

    def states(self, origins: list[Origin]) -> list[WindowState]:
        slots = sorted((w, s) for s, w in enumerate(self._ids) if w is not None)
        return self._states([s for _, s in slots], origins)

    def origin_codes(self) -> Ints:
        """Every origin code an open window refers to."""
        return np.unique(self._origins & 0xFFFFFFFF)

    def renumber_origins(self, renumber: Ints) -> None:
        """Replace each origin code c by ``renumber[c]`` (order kept: codes only shrink)."""
        slots, codes = self._origins >> 32, self._origins & 0xFFFFFFFF
        self._origins = np.sort((slots << 32) | renumber[codes])

    def restore(self, state: WindowState, origins: Ints) -> None:
        """Put a whole window back (a checkpoint restored), with its origins' codes."""
        (slot,) = self.slots(self._window_keys([state.id]), lambda _: state.id).tolist()
        index = np.array([slot])
        self.moments.put(index, _as_rows(state.moments))
        self.records[slot] = state.records
        self.anomalies[slot] = state.anomalies
        self.first_us[slot] = state.first_us
        self.last_us[slot] = state.last_us
        self.location[slot] = state.location
        self._members = _insert(self._members, (np.int64(slot) << _SHIFT) | state.members)
        pairs = np.unique((np.int64(slot) << 32) | origins)
        self._origins = _insert(self._origins, pairs)

    # -- slots -------------------------------------------------------------------------

    def _window_keys(self, windows: list[WindowId]) -> Ints:
        names = [w.sensor_id for w in windows]
        starts = np.array([w.start_us for w in windows], dtype=np.int64)
        return self.keys(names, np.arange(len(windows)), starts)

    def _index(self, keys: Ints, slots: Ints) -> None:
        order = np.argsort(keys)
        at = np.searchsorted(self._keys, keys[order])
        self._keys = np.insert(self._keys, at, keys[order])
        self._key_slots = np.insert(self._key_slots, at, slots[order])

    def _open(self, window: WindowId) -> int:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._ids[slot] = window
        self.end_us[slot] = window.start_us + self.size_us
        return slot

    def _states(self, slots: list[int], origins: list[Origin]) -> list[WindowState]:
        """The whole states of the windows in ``slots`` (one pass over the arrays)."""
        index = np.array(slots, dtype=np.int64)
        moments = self.moments.take(index)
        members = _by_slot(self._members, index, _SHIFT)
        codes = _by_slot(self._origins, index, 32)
        rows = zip(
            slots,
            self.records[index].tolist(),
            self.anomalies[index].tolist(),
            self.first_us[index].tolist(),
            self.last_us[index].tolist(),
            strict=True,
        )
        out = []
        for i, (slot, records, anomalies, first_us, last_us) in enumerate(rows):
            window = self._ids[slot]
            assert window is not None
            out.append(
                WindowState(
                    window,
                    moments.row(i),
                    members[i],
                    records,
                    anomalies,
                    first_us,
                    last_us,
                    self.location[slot],
                    Provenance(set(map(origins.__getitem__, codes[i].tolist()))),
                )
            )
        return out

    def _grow(self) -> None:
        old = len(self._ids)
        grown = Moments.empty((old * 2,))
        grown.put(np.arange(old), self.moments)
        self.moments = grown
        self.records = np.concatenate([self.records, np.zeros(old, dtype=np.int64)])
        self.anomalies = np.concatenate([self.anomalies, np.zeros(old, dtype=np.int64)])
        self.end_us = np.concatenate([self.end_us, np.full(old, _FREE, dtype=np.int64)])
        self.first_us = np.concatenate([self.first_us, np.full(old, _FREE, dtype=np.int64)])
        self.last_us = np.concatenate([self.last_us, np.full(old, -_FREE, dtype=np.int64)])
        self._ids.extend([None] * old)
        self.location.extend([None] * old)
        self._free.extend(range(old * 2 - 1, old - 1, -1))


# A window's key: its sensor's number << 40 | its window number + 2**39 (window numbers
# of 1-second windows over years 1-9999 lie within +-2**38).
_KEY_SHIFT, _KEY_BIAS = 40, 1 << 39


def _contains(sorted_keys: Ints, keys: Ints) -> npt.NDArray[np.bool_]:
    if not len(sorted_keys) or not len(keys):
        return np.zeros(len(keys), dtype=np.bool_)
    at = np.searchsorted(sorted_keys, keys)
    at[at == len(sorted_keys)] = 0
    return np.asarray(sorted_keys[at] == keys)


def _insert(sorted_keys: Ints, new: Ints) -> Ints:
    """``new`` (sorted, not present) merged into ``sorted_keys``: the stable sort
    (timsort) finds the two sorted runs and merges them in one linear pass."""
    if not len(new):
        return sorted_keys
    out = np.concatenate((sorted_keys, new))
    out.sort(kind="stable")
    return out


def _by_slot(sorted_keys: Ints, slots: Ints, shift: int) -> list[Ints]:
    """Per slot, the low parts of its keys (offsets, origin codes), in order."""
    low = slots << shift
    los = np.searchsorted(sorted_keys, low).tolist()
    his = np.searchsorted(sorted_keys, low + (1 << shift)).tolist()
    values = sorted_keys & ((1 << shift) - 1)
    return [values[lo:hi].copy() for lo, hi in zip(los, his, strict=True)]


def _drop_slots(sorted_keys: Ints, slots: Ints, shift: int) -> Ints:
    return sorted_keys[~np.isin(sorted_keys >> shift, slots)]


def _as_rows(moments: Moments) -> Moments:
    return Moments(moments.data.reshape(5, 1, K))
