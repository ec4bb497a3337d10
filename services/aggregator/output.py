"""What the aggregator writes: pages of window documents and the late side output.

Window documents (aggregated bucket), one per (sensor, window), go out in *pages*: one
object per (window start, shard) holding every document of the shard's sensors whose
window starts then (``sensorpipe.pages``: the key, the bytes, the readers' side)::

    <output_prefix>/year=/month=/day=/hour=/window_start=<start>/shard-<n>.jsonl.gz

Windows closing together (every window of one start closes at one watermark) share one
PUT. A revision (readings that came after the window was written, within the allowed
lateness) rewrites its page: the complete revised document, ``revision`` one higher, and
the page's other documents as they were. The bucket is versioned, so every revision
stays readable, and a lake picks the latest per (sensor_id, window_start) by the
highest ``revision`` (docs/WINDOWS.md). A document lists the offsets of its member
readings and keeps every metric's ``m2``, so it is also the state a later revision
starts from: :class:`WindowStore` reads a page back (one GET per page, kept in memory
for the next revisions and writes of that page) when a revision needs a window this
process no longer remembers, and reads it before rewriting a page it does not hold, so
a page is never rewritten without a document it held. A window its own page lacks is
looked for in the other shards' pages of its start (one listing): after a change of the
shard count, a sensor's earlier windows are in its former shard's pages, and the
revision written here (into this shard's page, one higher) is then the latest.

Late and unusable side outputs (error bucket), one object each per source batch and
shard (or per message without a position), one line per record with its reason:
``late/<partition of the batch's earliest reading>/<batch>.jsonl.gz`` for readings beyond
the allowed lateness, ``unusable/<partition>/<batch>.jsonl.gz`` for records that cannot
be windowed at all.

Sensor ids never appear in keys any more: any spelling (``/``, ``=``, ``..``, a newline,
ten thousand characters) is only a value inside a page.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from sensorpipe.errors import SensorPipeError
from sensorpipe.objects import event_time_partition, jsonl
from sensorpipe.pages import is_page_key, page_entries, page_key, page_metadata, render_page
from sensorpipe.records import event_time_us, instant_text
from sensorpipe.store import ObjectStore, Put
from services.aggregator.statistics import from_summary, summary
from services.aggregator.windows import Provenance, WindowId, WindowState

DOCUMENT_VERSION = 2
_US = 1_000_000
UNUSABLE_PREFIX = "unusable"


class OutputReadError(SensorPipeError):
    """A written window cannot be read back as a window document."""


@lru_cache(maxsize=4096)  # window starts and ends: every sensor's share one per minute
def _iso(at_us: int) -> str:
    moment = datetime.fromtimestamp(at_us // _US, UTC).replace(microsecond=at_us % _US)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def window_document(state: WindowState, size_us: int) -> dict[str, Any]:
    """The output row of a window: statistics, identity, provenance, members."""
    start = state.id.start_us
    provenance = state.provenance.to_dict()
    return {
        "document_version": DOCUMENT_VERSION,
        "sensor_id": state.id.sensor_id,
        "location": state.location,
        "window_start": _iso(start),
        "window_end": _iso(start + size_us),
        "window_seconds": size_us // _US,
        "revision": state.revision,
        "first_reading_at": instant_text(state.first_us),
        "last_reading_at": instant_text(state.last_us),
        "record_count": state.records,
        "anomaly_count": state.anomalies,
        "metrics": summary(state.moments, state.records),
        "scenarios": provenance["scenarios"],
        "config_versions": provenance["config_versions"],
        "lineage": {
            "batch_ids": provenance["batch_ids"],
            "node_ids": provenance["node_ids"],
            "job_id_hashes": provenance["job_id_hashes"],
        },
        # The window's readings: each is (sensor_id, window_start + offset), sorted.
        "reading_offsets_us": np.ascontiguousarray(state.members),  # orjson writes it natively
    }


def state_from_document(doc: dict[str, Any], window: WindowId) -> WindowState:
    """The whole state of a written window, to revise it."""
    members = np.array(doc["reading_offsets_us"], dtype=np.int64)
    if len(members) and (members.min() < 0 or np.any(np.diff(members) <= 0)):
        raise ValueError("reading offsets are not sorted offsets within the window")
    first_us = event_time_us(doc["first_reading_at"])
    last_us = event_time_us(doc["last_reading_at"])
    if first_us is None or last_us is None:
        raise ValueError("first or last reading time is not readable")
    lineage = doc.get("lineage") or {}
    provenance = Provenance.from_dict(
        {
            "scenarios": doc.get("scenarios", []),
            "config_versions": doc.get("config_versions", []),
            **lineage,
        }
    )
    return WindowState(
        window,
        from_summary(doc["metrics"]),
        members,
        int(doc["record_count"]),
        int(doc["anomaly_count"]),
        first_us,
        last_us,
        doc.get("location"),
        provenance,
        int(doc.get("revision", 0)),
    )


class WindowStore:
    """Window documents in the aggregated bucket, in pages of one (window start, shard).

    Pages this process read or wrote are kept (their documents, newest use last) until
    they hold more than ``remembered`` documents together; the newest page is always
    kept. One consumer per shard is the deployment rule, so what is kept stays what is
    written; :meth:`forget` drops it all (a restore: another process may have written).
    """

    def __init__(
        self,
        store: ObjectStore,
        prefix: str,
        size_us: int,
        *,
        shard: int = 0,
        remembered: int = 5_000,
    ) -> None:
        self._store = store
        self.prefix = prefix
        self.size_us = size_us
        self.shard = shard
        self.remembered = remembered
        self._pages: OrderedDict[int, dict[str, dict[str, Any]]] = OrderedDict()
        self._held = 0  # documents in self._pages

    def key(self, start_us: int) -> str:
        return page_key(self.prefix, start_us, self.shard)

    def forget(self) -> None:
        self._pages.clear()
        self._held = 0

    def write(self, states: list[WindowState]) -> None:
        """Write the windows' pages: each page of a window start once, holding the given
        documents and every other document the page held."""
        docs: dict[int, dict[str, dict[str, Any]]] = {}
        for state in states:
            docs.setdefault(state.id.start_us, {})[state.id.sensor_id] = window_document(
                state, self.size_us
            )
        if not docs:
            return
        pages = self._pages_of(list(docs))
        puts = []
        for start_us, new in docs.items():
            page = {**pages[start_us], **new}
            documents = list(page.values())
            puts.append(
                Put(
                    self.key(start_us),
                    render_page(documents),
                    page_metadata(documents, self.shard),
                    content_type="application/x-ndjson",
                    gzipped=True,
                )
            )
            pages[start_us] = page
        self._store.put_many(puts)
        for start_us in docs:
            self._keep(start_us, pages[start_us])

    def read_many(self, windows: list[WindowId]) -> list[WindowState | None]:
        """The written windows (None: never written), one GET per page not held."""
        pages = self._pages_of(sorted({w.start_us for w in windows}))
        for start_us, page in pages.items():
            self._keep(start_us, page)
        docs = [pages[w.start_us].get(w.sensor_id) for w in windows]
        missing = [w for w, doc in zip(windows, docs, strict=True) if doc is None]
        elsewhere = self._other_shards(missing) if missing else {}
        out: list[WindowState | None] = []
        for window, doc in zip(windows, docs, strict=True):
            doc = doc or elsewhere.get(window)
            out.append(None if doc is None else self._state(doc, window))
        return out

    def _other_shards(self, windows: list[WindowId]) -> dict[WindowId, dict[str, Any]]:
        """Documents of ``windows`` in other shards' pages (the shard count changed and a
        sensor moved here): the highest revision of each. One listing per window start;
        rare, since only a window this shard never wrote asks."""
        wanted = {(w.sensor_id, w.start_us) for w in windows}
        found: dict[WindowId, dict[str, Any]] = {}
        for start_us in sorted({w.start_us for w in windows}):
            own = self.key(start_us)
            folder = own.rsplit("/", 1)[0] + "/"
            keys = [k for k in self._store.keys(folder) if is_page_key(k) and k != own]
            for key, stored in zip(keys, self._store.get_many(keys), strict=True):
                if stored is None:
                    continue
                for sensor, doc in self._parse(key, stored.body).items():
                    window = WindowId(sensor, start_us)
                    if (sensor, start_us) not in wanted:
                        continue
                    held = found.get(window)
                    if held is None or doc.get("revision", 0) > held.get("revision", 0):
                        found[window] = doc
        return found

    def read(self, window: WindowId) -> WindowState | None:
        """The written window, or None if it was never written."""
        (state,) = self.read_many([window])
        return state

    def _pages_of(self, starts: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
        """The documents of each page, by sensor: held, else read (all at once)."""
        out = {start: self._pages[start] for start in starts if start in self._pages}
        missing = [start for start in starts if start not in out]
        keys = [self.key(start) for start in missing]
        for start, key, stored in zip(missing, keys, self._store.get_many(keys), strict=True):
            out[start] = {} if stored is None else self._parse(key, stored.body)
        return out

    def _parse(self, key: str, body: bytes) -> dict[str, dict[str, Any]]:
        try:
            return {str(doc["sensor_id"]): doc for doc in page_entries(body)}
        except ValueError as exc:
            raise OutputReadError(
                f"{self._store.uri(key)} is not a page of window documents: {exc}",
                hint="restore an earlier version (the bucket is versioned) or delete it",
            ) from exc

    def _state(self, doc: dict[str, Any], window: WindowId) -> WindowState:
        try:
            return state_from_document(doc, window)
        except (KeyError, TypeError, ValueError) as exc:
            raise OutputReadError(
                f"{self._store.uri(self.key(window.start_us))} holds no readable window "
                f"document of {window.sensor_id!r}: {exc}",
                hint="restore an earlier version (the bucket is versioned) or delete it",
            ) from exc

    def _keep(self, start_us: int, page: dict[str, dict[str, Any]]) -> None:
        held = self._pages.pop(start_us, None)
        self._held += len(page) - (0 if held is None else len(held))
        self._pages[start_us] = page
        while len(self._pages) > 1 and self._held > self.remembered:
            _, dropped = self._pages.popitem(last=False)
            self._held -= len(dropped)


def late_line(
    record: Any,
    *,
    ids: dict[str, Any],
    reason: str,
    detail: str,
    key: str | None = None,
    window: WindowId | None = None,
    size_us: int = 0,
) -> dict[str, Any]:
    """One line of the late or unusable side output: the batch's ids, why, the whole
    record (whatever it is: an unusable one need not even be an object)."""
    if not isinstance(record, dict):
        record = {"sensor_data": record}
    return {
        **ids,
        "reading_key": key,
        "reason": reason,
        "detail": detail,
        "window_start": _iso(window.start_us) if window is not None else None,
        "window_end": _iso(window.start_us + size_us) if window is not None else None,
        "record": record.get("sensor_data", record),
        "lineage": record.get("lineage"),
        "quality": record.get("quality"),
    }


def late_detail(window: WindowId, size_us: int, watermark_us: int, allowed_us: int) -> str:
    return (
        f"reading of window {_iso(window.start_us)} of {window.sensor_id} came more than "
        f"the allowed lateness ({allowed_us / _US:g} s) after the window's end "
        f"{_iso(window.start_us + size_us)}: the watermark was {_instant(watermark_us)}"
    )


def _instant(at_us: int) -> str:
    """An instant's canonical text, or its number where no date spells it (a watermark
    a source's positions pushed beyond the years 1-9999)."""
    try:
        return instant_text(at_us)
    except (OverflowError, ValueError):
        return f"{at_us} µs since the epoch"


def late_key(name: str, earliest_us: int | None) -> str:
    return _side_key("late", name, earliest_us)


def unusable_key(name: str, earliest_us: int | None) -> str:
    return _side_key(UNUSABLE_PREFIX, name, earliest_us)


def _side_key(prefix: str, name: str, earliest_us: int | None) -> str:
    moment = None if earliest_us is None else datetime.fromtimestamp(earliest_us // _US, UTC)
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.=") else "_" for c in name)
    return f"{prefix}/{event_time_partition(moment)}/{safe[:200] or '_'}.jsonl.gz"


def json_safe(value: Any) -> Any:
    """``value`` as orjson writes it without raising: integers beyond 64 bits become
    text, keys that are not text become text; everything else is kept (a record that
    did not come through JSON may hold anything)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return repr(value)


def _lines(lines: list[dict[str, Any]]) -> bytes:
    try:
        return jsonl(lines, compress=True)
    except (TypeError, orjson.JSONEncodeError):  # something JSON cannot hold: spelt out
        return jsonl([json_safe(line) for line in lines], compress=True)


class LateStore:
    """Late and unusable side-output objects in the error bucket."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def write(self, key: str, lines: list[dict[str, Any]], metadata: dict[str, str]) -> None:
        self._store.put(
            key,
            _lines(lines),
            metadata={**metadata, "record-count": str(len(lines))},
            content_type="application/x-ndjson",
            gzipped=True,
        )
