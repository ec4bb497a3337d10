"""Tumbling event-time windows per sensor: assignment, placement, closing.

Pure state, no AWS: the handler supplies an S3 lookup where placement needs one.

- A window of ``size`` seconds starts at a multiple of ``size`` since the epoch (for the
  default 60 s that is the minute).
- Each sensor has its own watermark: its latest reading time minus the grace period. A
  per-sensor watermark makes the output independent of how sensors are sharded, and one
  sensor with a fast clock cannot make every other sensor's readings late.
- A window closes when its sensor's watermark passes its end, or when it has had no
  input for ``idle_flush_s`` of processing time (so a quiet sensor's last window is
  written), but never while the handler says it is recovering (see handler.py).
- Readings are identified by ``reading_key``; a window never counts one twice.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from services.aggregator.statistics import MetricsPartial


class WindowId(NamedTuple):
    sensor_id: str
    start: int  # epoch seconds


def window_start(at: float, size: int) -> int:
    """Start of the tumbling window holding event time ``at`` (epoch-aligned)."""
    return math.floor(at / size) * size


class Reading(NamedTuple):
    """One record of an envelope, parsed once (a tuple: cheap to make by the million)."""

    key: str  # reading_key: sensor_id|timestamp
    sensor_id: str
    at: float  # event time, epoch seconds
    timestamp: str  # as the source wrote it
    record: dict[str, Any]  # the whole record: sensor_data, lineage, quality


class Verdict(Enum):
    FOLD = "fold"  # new to its window: count it
    DUPLICATE = "duplicate"  # the window already counts this reading
    LATE = "late"  # its window is closed without it: side output


# Late reasons (codes in the side output and the metrics label).
AFTER_WATERMARK = "after_watermark"
WINDOW_ALREADY_WRITTEN = "window_already_written"
NO_EVENT_TIME = "no_event_time"


class Placement(NamedTuple):
    verdict: Verdict
    window: WindowId
    reason: str | None = None  # for LATE
    rebuild: bool = False  # FOLD into a window the watermark has passed (redelivery)
    settled: bool = True  # False: LATE while its window is unwritten (could still be a
    # duplicate of a reading a redelivered message brings back)


# The members of a written window, or None when no such window was written.
MembersLookup = Callable[[WindowId], frozenset[str] | None]


@dataclass(slots=True)
class OpenWindow:
    """A window still collecting readings, with who contributed what."""

    id: WindowId
    size: int
    last_input: float  # monotonic time of the latest fold
    rebuilt: bool = False  # opened behind the watermark: closes by idle time only
    stats: MetricsPartial = field(default_factory=MetricsPartial)
    keys: set[str] = field(default_factory=set)
    earliest: Reading | None = None
    latest: Reading | None = None
    anomalies: int = 0
    scenarios: set[str] = field(default_factory=set)
    config_versions: set[int] = field(default_factory=set)
    batch_ids: set[str] = field(default_factory=set)
    node_ids: set[str] = field(default_factory=set)
    job_id_hashes: set[str] = field(default_factory=set)
    # receipt handle of each message -> the readings it added (for acks and conflicts)
    contributors: dict[str, list[Reading]] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.id.start + self.size

    def fold(
        self,
        handle: str,
        readings: list[Reading],
        *,
        scenario: str,
        config_version: int,
        batch_id: str,
        now: float,
    ) -> None:
        """Add one message's new readings (already de-duplicated against ``keys``)."""
        partial = MetricsPartial()
        add = partial.add
        lineages = []
        anomalies = 0
        for reading in readings:
            record = reading.record
            add(record["sensor_data"])
            anomalies += is_anomalous(record)
            lineages.append(record.get("lineage"))
        self.stats.merge(partial)
        self.anomalies += anomalies
        self.keys.update(r.key for r in readings)
        first = min(readings, key=_order)
        last = max(readings, key=_order)
        if self.earliest is None or _order(first) < _order(self.earliest):
            self.earliest = first
        if self.latest is None or _order(last) > _order(self.latest):
            self.latest = last
        self._note_lineage(lineages, batch_id)
        self.scenarios.add(scenario)
        self.config_versions.add(config_version)
        self.contributors.setdefault(handle, []).extend(readings)
        self.last_input = now

    def _note_lineage(self, lineages: list[Any], batch_id: str) -> None:
        for lineage in lineages:
            if not isinstance(lineage, dict):
                self.batch_ids.add(batch_id)
                continue
            # The enricher's batch id: the router suffixes shard numbers to its
            # envelopes, so the lineage one stays the same however many shards there are.
            self.batch_ids.add(str(lineage.get("batch_id") or batch_id))
            node, job = lineage.get("node_id"), lineage.get("job_id_hash")
            if node:
                self.node_ids.add(str(node))
            if job:
                self.job_id_hashes.add(str(job))


def _order(reading: Reading) -> tuple[float, str]:
    return (reading.at, reading.key)


def is_anomalous(record: dict[str, Any]) -> bool:
    quality = record.get("quality")
    if isinstance(quality, dict) and "anomalous" in quality:
        return quality["anomalous"] is True
    return record["sensor_data"].get("anomaly_flag") in (1, True)


class WindowBook:
    """Open windows, per-sensor watermarks and a bounded memory of written windows."""

    def __init__(
        self, *, size: int, grace_s: float, idle_flush_s: float, remembered: int = 2_000
    ) -> None:
        self.size = size
        self.grace_s = grace_s
        self.idle_flush_s = idle_flush_s
        self.open: dict[WindowId, OpenWindow] = {}
        self.max_event_time: dict[str, float] = {}
        self._remembered = remembered
        self._written: OrderedDict[WindowId, frozenset[str]] = OrderedDict()

    # -- time ----------------------------------------------------------------------------

    def window_of(self, reading: Reading) -> WindowId:
        return WindowId(reading.sensor_id, window_start(reading.at, self.size))

    def watermark(self, sensor_id: str) -> float:
        return self.max_event_time.get(sensor_id, -math.inf) - self.grace_s

    def behind_watermark(self, window: WindowId) -> bool:
        return window.start + self.size <= self.watermark(window.sensor_id)

    def advance(self, readings: Iterable[Reading]) -> None:
        seen = self.max_event_time
        for reading in readings:
            if reading.at > seen.get(reading.sensor_id, -math.inf):
                seen[reading.sensor_id] = reading.at

    # -- placement -------------------------------------------------------------------------

    def place(
        self,
        reading: Reading,
        *,
        lookup: MembersLookup,
        redelivered_latest: float | None = None,
    ) -> Placement:
        """Decide where a reading goes, without changing any state.

        A first delivery behind its sensor's watermark is late, or a duplicate of what
        its window holds (``settled`` is False when that window is not written yet, so
        a recovering handler can wait for it).

        A redelivered message (``redelivered_latest``: its own latest reading of this
        sensor) may have been folded by a holder that crashed before writing, and newer
        messages may have moved the watermark meanwhile. So it is judged by its own
        content: late if its own newer readings put it beyond the grace; otherwise a
        written window decides (member: duplicate, else late) and an unwritten one is
        rebuilt.
        """
        window = self.window_of(reading)
        behind = self.behind_watermark(window)
        current = self.open.get(window)
        if redelivered_latest is not None:
            if window.start + self.size <= redelivered_latest - self.grace_s:
                return self._behind(reading, window, current, lookup)
        elif behind:
            return self._behind(reading, window, current, lookup)
        if current is not None:
            verdict = Verdict.DUPLICATE if reading.key in current.keys else Verdict.FOLD
            return Placement(verdict, window)
        # Not open: only a window known to be written decides. Ahead of the watermark an
        # unknown window is simply opened; a conflict at write time settles the rest.
        members = self.written_members(window, lookup) if behind else self._written.get(window)
        if members is not None:
            if reading.key in members:
                return Placement(Verdict.DUPLICATE, window)
            return Placement(Verdict.LATE, window, WINDOW_ALREADY_WRITTEN)
        return Placement(Verdict.FOLD, window, rebuild=behind)

    def _behind(
        self,
        reading: Reading,
        window: WindowId,
        current: OpenWindow | None,
        lookup: MembersLookup,
    ) -> Placement:
        if current is not None and reading.key in current.keys:
            return Placement(Verdict.DUPLICATE, window)
        members = self.written_members(window, lookup)
        if members is not None and reading.key in members:
            return Placement(Verdict.DUPLICATE, window)
        return Placement(Verdict.LATE, window, AFTER_WATERMARK, settled=members is not None)

    def open_window(self, window: WindowId, *, rebuild: bool, now: float) -> OpenWindow:
        current = self.open.get(window)
        if current is None:
            current = OpenWindow(window, self.size, last_input=now, rebuilt=rebuild)
            self.open[window] = current
        return current

    # -- closing ---------------------------------------------------------------------------

    def due(self, now: float) -> list[OpenWindow]:
        """Windows to close now: passed by their sensor's watermark (not for rebuilt
        ones, whose siblings may still be on their way back), or idle too long."""
        return [
            w
            for w in self.open.values()
            if now - w.last_input >= self.idle_flush_s
            or (not w.rebuilt and self.behind_watermark(w.id))
        ]

    def closed(self, window: WindowId, members: frozenset[str]) -> None:
        """The window is written (by us or an earlier writer) with ``members``."""
        self.open.pop(window, None)
        self.remember(window, members)

    # -- memory of written windows -----------------------------------------------------

    def remember(self, window: WindowId, members: frozenset[str]) -> None:
        self._written[window] = members
        self._written.move_to_end(window)
        while len(self._written) > self._remembered:
            self._written.popitem(last=False)

    def written_members(self, window: WindowId, lookup: MembersLookup) -> frozenset[str] | None:
        members = self._written.get(window)
        if members is None:
            members = lookup(window)
            if members is not None:
                self.remember(window, members)
        return members
