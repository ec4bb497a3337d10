"""The aggregator as a stateful stage: fold batches into windows, revise, close.

The sequencer (sensorpipe.stateful) hands it each source batch whole, in the source's
order, and the watermark after each; this module decides and computes, and says what
to write. Per batch:

1. ``prepare``: read the batch into columns and group its rows by (sensor, window);
   fetch the written documents of closed windows the batch touches that are not in
   memory (the only reads: rare, since only readings later than the watermark need
   them; one GET per page, a page holds every window of one start).
2. ``apply``: per window, :func:`~services.aggregator.windows.fate` decides what
   becomes of its new readings (readings it holds already are duplicates, found for the
   whole batch at once); the statistics of every kept group come from one bulk
   computation and are merged into open windows (fold) or written ones (revise); late
   readings become side-output lines.
3. ``advance``: windows whose end the watermark reached are closed: revision 0.
4. ``flush``: the closed and revised windows, the late lines and the unusable lines
   are written: one page per window start, however many of its windows changed.

Every record of a batch ends in exactly one place, counted by its fate: folded,
duplicate, revised, late (``late/`` in the error bucket) or unusable (``unusable/``:
what cannot be windowed, readings.py says why). Nothing in a record's content can make
``apply`` raise, so one bad record never takes its batch's good ones down with it.

State (the checkpoint): the watermark windows were closed at, and every open window.
Written windows are not state: their documents are, read back when a revision needs one.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sensorpipe.records import reading_key_at
from sensorpipe.stateful import Batch
from services.aggregator.output import (
    LateStore,
    WindowStore,
    late_detail,
    late_key,
    late_line,
    unusable_key,
)
from services.aggregator.readings import Readings, read_batch
from services.aggregator.statistics import Ints, K, Moments, group_moments
from services.aggregator.windows import (
    BEYOND_ALLOWED_LATENESS,
    UNUSABLE,
    Fate,
    OpenWindows,
    Origin,
    Provenance,
    WindowId,
    WindowState,
    fate,
)

log = logging.getLogger(__name__)


class Events(Protocol):
    """Hooks for what became of readings and windows (metrics)."""

    def readings(self, fate: str, count: int) -> None: ...

    def windows(self, what: str, count: int) -> None: ...

    def open_windows(self, count: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Rules:
    """
    Parameters:
        size_us: window length.
        allowed_lateness_us: how far past its end a written window is still revised.
        shard: this process's shard (names its late objects).
        remembered: written windows kept in memory for revisions (older ones are read
            back from the bucket when a late reading needs them).
    """

    size_us: int
    allowed_lateness_us: int
    shard: int = 0
    remembered: int = 2_000


@dataclass(slots=True)
class _Groups:
    """A batch's rows grouped by window: ``order`` sorts rows by (sensor, window,
    instant); group j is sorted positions ``bounds[j]:bounds[j + 1]``."""

    readings: Readings
    order: Ints
    bounds: Ints  # G + 1 positions
    codes: Ints  # per group: its sensor (index into readings.names)
    starts: Ints  # per group: its window's start
    ends: Ints  # per group: its window's end
    repeated: npt.NDArray[np.bool_]  # per position: the same reading as the one before
    offsets: Ints  # per position: the reading's offset in its window

    @property
    def sizes(self) -> Ints:
        return np.diff(self.bounds)

    def __len__(self) -> int:
        return len(self.starts)

    def window(self, j: int) -> WindowId:
        return WindowId(self.readings.names[int(self.codes[j])], int(self.starts[j]))


@dataclass(slots=True)
class _Prepared:
    batch: Batch
    groups: _Groups
    # Written windows the batch revises, fetched for it (None: never written).
    written: dict[WindowId, WindowState | None]


@dataclass(slots=True)
class _Outputs:
    windows: dict[WindowId, WindowState] = field(default_factory=dict)
    # Side-output objects (late/, unusable/): key -> (lines, metadata).
    side: dict[str, tuple[list[dict[str, Any]], dict[str, str]]] = field(default_factory=dict)


class AggregatorStage:
    """The :class:`~sensorpipe.stateful.Stage` of the aggregator."""

    def __init__(
        self,
        rules: Rules,
        windows: WindowStore,
        late: LateStore,
        events: Events,
        *,
        validated: Callable[[str], bool],
    ) -> None:
        self.rules = rules
        self._windows = windows
        self._late = late
        self._events = events
        self._validated = validated
        self.open = OpenWindows(rules.size_us)
        self.watermark_us: int | None = None
        self._origins: list[Origin] = []  # origin codes of the open windows
        self._code_of: dict[Origin, int] = {}
        # Written windows (None: known never written), newest last.
        self._written: OrderedDict[WindowId, WindowState | None] = OrderedDict()
        self._out = _Outputs()
        self._prepared: _Prepared | None = None

    # -- the checkpoint ------------------------------------------------------------------

    def restore(self, snapshot: dict[str, Any] | None) -> None:
        self.open = OpenWindows(self.rules.size_us)
        self._origins, self._code_of = [], {}
        self._written.clear()
        self._windows.forget()
        self._out = _Outputs()
        self._prepared = None
        self.watermark_us = None if snapshot is None else snapshot.get("watermark_us")
        for raw in [] if snapshot is None else snapshot.get("open", []):
            state = _state_from_dict(raw)
            codes = [self._code(o) for o in state.provenance.origins]
            self.open.restore(state, np.array(codes, dtype=np.int64))
        self._events.open_windows(len(self.open))

    def snapshot(self) -> dict[str, Any]:
        return {
            "watermark_us": self.watermark_us,
            "open": [_state_dict(s) for s in self.open.states(self._origins)],
        }

    # -- one batch -------------------------------------------------------------------

    def prepare(self, batch: Batch) -> None:
        groups = self._group(batch)
        written: dict[WindowId, WindowState | None] = {}
        wanted = []
        for j in np.flatnonzero(self._fates(groups.ends) == _REVISE).tolist():
            window = groups.window(j)
            if window in self._out.windows:
                written[window] = self._out.windows[window]
            elif window in self._written:
                written[window] = self._written[window]
            else:
                wanted.append(window)
        if wanted:  # one GET per page (window start), the pages read in parallel
            for window, state in zip(wanted, self._windows.read_many(wanted), strict=True):
                written[window] = state
                self._remember(window, state)
        self._prepared = _Prepared(batch, groups, written)

    def apply(self, batch: Batch) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is None or prepared.batch is not batch:
            raise RuntimeError(f"batch {batch.name} was applied without being prepared")
        groups = prepared.groups
        readings = groups.readings
        ids = [_ids(part) for part in batch.parts]
        unusable = [
            late_line(u.record, ids=ids[u.part], reason=u.reason, detail=u.detail)
            for u in readings.unusable
        ]
        late: list[dict[str, Any]] = []
        # Per sorted position: kept unless a repeat within the batch, held by its window
        # already, or late. What becomes of a window's new readings is decided once per
        # window: it depends on the reading only through its window.
        keep = ~groups.repeated
        fates = self._fates(groups.ends)
        folding_groups = np.flatnonzero(fates == _FOLD)
        keys = self.open.keys(
            readings.names, groups.codes[folding_groups], groups.starts[folding_groups]
        )
        group_slot = np.full(len(fates), -1, dtype=np.int64)
        group_slot[folding_groups] = self.open.slots(
            keys, lambda i: groups.window(int(folding_groups[i]))
        )
        position_slot = np.repeat(group_slot, groups.sizes)
        folding = position_slot >= 0
        keep[folding] &= ~self.open.held(position_slot[folding], groups.offsets[folding])
        too_late = 0
        for j in np.flatnonzero(fates != _FOLD).tolist():
            lo, hi = int(groups.bounds[j]), int(groups.bounds[j + 1])
            window = groups.window(j)
            if fates[j] == _LATE:
                # Late even where a repeat within the batch: every copy has a line.
                late += self._late_lines(readings, groups, lo, hi, window, ids)
                too_late += hi - lo
                keep[lo:hi] = False
                continue
            state = self._out.windows.get(window) or prepared.written[window]
            if state is not None:
                keep[lo:hi] &= ~np.isin(groups.offsets[lo:hi], state.members)
        duplicates = len(keep) - int(keep.sum()) - too_late
        self._fold(groups, keep, fates, group_slot, prepared.written)
        if late:
            self._store_side(batch, readings, late, "late")
        if unusable:
            self._store_side(batch, readings, unusable, UNUSABLE)
        self._events.readings(Fate.DUPLICATE.value, duplicates)
        self._events.readings(Fate.LATE.value, len(late))
        self._events.readings(UNUSABLE, len(unusable))
        self._events.open_windows(len(self.open))

    def advance(self, watermark_us: int) -> bool:
        # Whatever a source's positions claimed: within int64, beyond every instant.
        watermark_us = min(max(watermark_us, -_WATERMARK_BOUND), _WATERMARK_BOUND)
        if self.watermark_us is not None and watermark_us <= self.watermark_us:
            return False
        self.watermark_us = watermark_us
        due = self.open.due(watermark_us)
        for state in self.open.close(due, self._origins):
            state.revision = 0
            self._out.windows[state.id] = state
            self._remember(state.id, state)
        if due:
            self._events.windows("closed", len(due))
            self._events.open_windows(len(self.open))
        if len(self._origins) > 1_000 + 4 * len(self.open):
            self._compact_origins()
        return True

    def _compact_origins(self) -> None:
        """Forget the origin codes no open window refers to any more."""
        used = self.open.origin_codes()
        renumber = np.zeros(len(self._origins), dtype=np.int64)
        renumber[used] = np.arange(len(used))
        self._origins = [self._origins[c] for c in used.tolist()]
        self._code_of = {origin: code for code, origin in enumerate(self._origins)}
        self.open.renumber_origins(renumber)

    def flush(self) -> None:
        """Write every window closed or revised, and the late and unusable lines, since
        the last flush; what fails stays to be written on the next one."""
        states = list(self._out.windows.items())
        self._windows.write([state for _, state in states])
        for window, _ in states:
            del self._out.windows[window]
        for key, (lines, metadata) in list(self._out.side.items()):
            self._late.write(key, lines, metadata)
            del self._out.side[key]

    # -- deciding --------------------------------------------------------------------

    def _fates(self, ends: Ints) -> npt.NDArray[np.int8]:
        """:func:`fate` of a window's new readings (not held by it), per window end, as
        codes (_FOLD, _REVISE, _LATE)."""
        out = np.full(len(ends), _FOLD, dtype=np.int8)
        if self.watermark_us is None or not len(ends) or int(ends.min()) > self.watermark_us:
            return out  # the common case: every window folds
        for j in np.flatnonzero(ends <= self.watermark_us).tolist():
            decided = fate(
                int(ends[j]),
                watermark_us=self.watermark_us,
                allowed_lateness_us=self.rules.allowed_lateness_us,
                member=False,
            )
            out[j] = _CODE[decided]
        return out

    # -- computing -------------------------------------------------------------------

    def _group(self, batch: Batch) -> _Groups:
        validated = all(self._validated(part.scenario) for part in batch.parts)
        readings = read_batch(batch.parts, validated=validated, size_us=self.rules.size_us)
        size = self.rules.size_us
        starts_of = readings.at_us // size * size
        order = _by_sensor_then_instant(readings.codes, readings.at_us)
        codes, starts_sorted = readings.codes[order], starts_of[order]
        at_sorted = readings.at_us[order]
        same_sensor = np.diff(codes) == 0
        new_group = np.r_[True, ~same_sensor | (np.diff(starts_sorted) != 0)][: len(order)]
        repeated = np.r_[False, same_sensor & (np.diff(at_sorted) == 0)][: len(order)]
        firsts = np.flatnonzero(new_group)
        return _Groups(
            readings,
            order,
            np.r_[firsts, len(order)].astype(np.int64),
            codes[firsts],
            starts_sorted[firsts],
            starts_sorted[firsts] + size,
            repeated,
            at_sorted - starts_sorted,
        )

    def _fold(
        self,
        groups: _Groups,
        keep: npt.NDArray[np.bool_],
        fates: npt.NDArray[np.int8],
        group_slot: Ints,
        written: dict[WindowId, WindowState | None],
    ) -> None:
        """Statistics of every window's kept readings at once, merged into open windows
        (fold) or written ones (revise)."""
        readings = groups.readings
        group_of = np.repeat(np.arange(len(groups)), groups.sizes)[keep]
        if not len(group_of):
            return
        # group_of is sorted (positions run window by window): its distinct values and
        # each position's rank among them without a sort.
        first = np.empty(len(group_of), dtype=np.bool_)
        first[0] = True
        np.not_equal(group_of[1:], group_of[:-1], out=first[1:])
        kept = group_of[first]
        dense = np.cumsum(first) - 1
        rows = groups.order[keep]  # kept rows, by window then instant
        counts = np.bincount(dense, minlength=len(kept))
        ends = np.cumsum(counts)
        starts = ends - counts
        moments = group_moments(readings.values[rows], starts)
        anomalies = np.add.reduceat(readings.anomalous[rows], starts, dtype=np.int64)
        at_rows = readings.at_us[rows]
        offsets = groups.offsets[keep]
        codes = np.array([self._code(o) for p in readings.provenance for o in p.origins])
        # (kept window, origin code) of every kept reading's origin, once each.
        if len(codes) == 1:  # one origin: the batch's lineage, stamped once
            pair_group, pair_code = np.arange(len(kept)), np.repeat(codes, len(kept))
        else:
            pairs = np.unique(dense * len(codes) + readings.origin[rows])
            pair_group, pair_code = pairs // len(codes), codes[pairs % len(codes)]
        folds = fates[kept] == _FOLD
        if folds.any():
            index = np.flatnonzero(folds)
            slots = group_slot[kept[index]]
            kept_fold = folds[dense]
            fold_pairs = folds[pair_group]
            earlier = self.open.fold(
                slots,
                moments.take(index),
                counts[index],
                anomalies[index],
                at_rows[starts[index]],
                at_rows[ends[index] - 1],
                group_slot[group_of[kept_fold]],
                offsets[kept_fold],
                group_slot[kept[pair_group[fold_pairs]]],
                pair_code[fold_pairs],
            )
            for g, slot in zip(index[earlier].tolist(), slots[earlier].tolist(), strict=True):
                self.open.location[slot] = readings.location(int(rows[starts[g]]))
        revised = 0
        for g in np.flatnonzero(~folds).tolist():
            window = groups.window(int(kept[g]))
            state = self._out.windows.get(window) or written[window]
            if state is None:  # never written: this is its first write
                state = WindowState.empty(window)
            lo, hi = int(starts[g]), int(ends[g])
            state.add(
                moments.take(g),
                offsets[lo:hi],
                int(anomalies[g]),
                readings.location(int(rows[lo])),
                {self._origins[c] for c in pair_code[pair_group == g].tolist()},
            )
            state.revision += 1
            self._out.windows[window] = state
            self._remember(window, state)
            revised += hi - lo
        self._events.readings(Fate.FOLD.value, int(counts.sum()) - revised)
        if revised:
            self._events.readings(Fate.REVISE.value, revised)
            self._events.windows("revised", int((~folds).sum()))

    def _code(self, origin: Origin) -> int:
        code = self._code_of.get(origin)
        if code is None:
            code = self._code_of[origin] = len(self._origins)
            self._origins.append(origin)
        return code

    def _late_lines(
        self,
        readings: Readings,
        groups: _Groups,
        lo: int,
        hi: int,
        window: WindowId,
        ids: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        assert self.watermark_us is not None  # only a watermark makes a reading late
        detail = late_detail(
            window, self.rules.size_us, self.watermark_us, self.rules.allowed_lateness_us
        )
        out = []
        for i in range(lo, hi):
            row = int(groups.order[i])
            out.append(
                late_line(
                    readings.records[row],
                    ids=ids[int(readings.parts[row])],
                    reason=BEYOND_ALLOWED_LATENESS,
                    detail=detail,
                    key=reading_key_at(window.sensor_id, int(readings.at_us[row])),
                    window=window,
                    size_us=self.rules.size_us,
                )
            )
        return out

    def _store_side(
        self, batch: Batch, readings: Readings, lines: list[dict[str, Any]], kind: str
    ) -> None:
        earliest = int(readings.at_us.min()) if len(readings) else None
        name = f"{batch.name}-a{self.rules.shard}"
        key = late_key(name, earliest) if kind == "late" else unusable_key(name, earliest)
        first = batch.parts[0]
        metadata = {
            "kind": kind,
            "batch-id": first.batch_id,
            "scenario": first.scenario,
            "config-version": str(first.config_version),
        }
        self._out.side[key] = (lines, metadata)

    def _remember(self, window: WindowId, state: WindowState | None) -> None:
        self._written[window] = state
        self._written.move_to_end(window)
        while len(self._written) > self.rules.remembered:
            self._written.popitem(last=False)


_FOLD, _REVISE, _LATE = 0, 1, 2
# Every instant a window can hold lies within +-2**58 µs (years 1-9999: +-2.6e17).
_WATERMARK_BOUND = 2**60
_CODE = {Fate.FOLD: _FOLD, Fate.REVISE: _REVISE, Fate.LATE: _LATE}


def _ids(part: Any) -> dict[str, Any]:
    return {
        "batch_id": part.batch_id,
        "scenario": part.scenario,
        "config_version": part.config_version,
    }


def _state_dict(state: WindowState) -> dict[str, Any]:
    moments = state.moments
    has = moments.n > 0
    return {
        "sensor_id": state.id.sensor_id,
        "start_us": state.id.start_us,
        "records": state.records,
        "anomalies": state.anomalies,
        "n": moments.n.tolist(),
        "mean": moments.mean.tolist(),
        "m2": moments.m2.tolist(),
        "min": [float(v) if h else None for v, h in zip(moments.min, has, strict=True)],
        "max": [float(v) if h else None for v, h in zip(moments.max, has, strict=True)],
        # Sorted offsets, delta-encoded: regular readings make long runs of one number.
        "member_deltas": np.diff(state.members, prepend=0).tolist(),
        "first_us": state.first_us,
        "last_us": state.last_us,
        "location": state.location,
        "provenance": state.provenance.to_dict(),
    }


def _state_from_dict(raw: dict[str, Any]) -> WindowState:
    moments = Moments.of(
        np.array(raw["n"], dtype=np.float64),
        np.array(raw["mean"], dtype=np.float64),
        np.array(raw["m2"], dtype=np.float64),
        np.array([np.inf if v is None else v for v in raw["min"]], dtype=np.float64),
        np.array([-np.inf if v is None else v for v in raw["max"]], dtype=np.float64),
    )
    assert moments.n.shape == (K,)
    return WindowState(
        WindowId(str(raw["sensor_id"]), int(raw["start_us"])),
        moments,
        np.cumsum(np.array(raw["member_deltas"], dtype=np.int64)),
        int(raw["records"]),
        int(raw["anomalies"]),
        int(raw["first_us"]),
        int(raw["last_us"]),
        raw.get("location"),
        Provenance.from_dict(raw.get("provenance", {})),
    )


def _by_sensor_then_instant(codes: Ints, at_us: Ints) -> Ints:
    """The rows by sensor, then instant, then row (a stable sort): one sort of a packed
    key (sensor, instant, row) where it fits in 63 bits, else ``lexsort``."""
    rows = len(at_us)
    if not rows:
        return np.zeros(0, dtype=np.int64)
    low = int(at_us.min())
    span = int(at_us.max()) - low + 1
    if (int(codes.max()) + 1) * span * rows < 2**62:
        key = (codes * span + (at_us - low)) * rows + np.arange(rows)
        return np.argsort(key)
    return np.lexsort((at_us, codes))
