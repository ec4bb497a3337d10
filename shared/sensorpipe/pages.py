"""Window pages: every window document of one minute and one aggregator shard, in one object.

The aggregator used to write one S3 object per (sensor, window); S3 PUTs were most of its
time and most of LocalStack's. Now each shard writes one object per window start, a
*page*, holding the window document of every sensor of that shard whose window starts
then::

    <output_prefix>/year=YYYY/month=MM/day=DD/hour=HH/window_start=<YYYYmmddTHHMMSSZ>/shard-<n>.jsonl.gz

A page is gzip JSON Lines, one window document per line (the aggregator's
``window_document``, unchanged), sorted by ``sensor_id``, keys sorted, gzip without a
timestamp: the same documents always give the same bytes, so a redo after a crash
rewrites a page with identical bytes. Sensors are sharded stably, so two shards never
hold the same sensor and never share a key (the shard is in the key).

A revision (a late reading within the allowed lateness) rewrites its window's page:
the revised document (``revision`` one higher) and the page's other documents as they
were. The bucket is versioned, so every revision stays readable; a reader that wants
the latest revision per (sensor_id, window_start), across shards and pages (a shard
count that changed, versions read together), takes :func:`latest_documents`.

Everyone who reads or writes the aggregated bucket goes through this module: the
aggregator, the dashboard, the demo, the benchmarks and the tests.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from sensorpipe.objects import hive_partition

_US = 1_000_000
PAGE_SUFFIX = ".jsonl.gz"
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


@lru_cache(maxsize=4096)  # every sensor of a minute shares its start
def _start_parts(start_us: int) -> tuple[str, str]:
    t = datetime.fromtimestamp(start_us // _US, UTC)
    name = f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}Z"
    return hive_partition(t), name


def page_key(prefix: str, start_us: int, shard: int) -> str:
    """The key of shard ``shard``'s page of the windows starting at ``start_us``."""
    partition, name = _start_parts(start_us)
    return f"{prefix.strip('/')}/{partition}/window_start={name}/shard-{shard}{PAGE_SUFFIX}"


def is_page_key(key: str) -> bool:
    """Whether ``key`` names a page (and not a checkpoint or anything else)."""
    return key.endswith(PAGE_SUFFIX) and "/window_start=" in key


def render_page(documents: Iterable[Mapping[str, Any]]) -> bytes:
    """The page of ``documents`` (at most one per sensor): gzip JSON Lines sorted by
    sensor_id, deterministic bytes."""
    by_sensor = sorted(documents, key=lambda doc: str(doc["sensor_id"]))
    sensors = [doc["sensor_id"] for doc in by_sensor]
    if len(set(sensors)) != len(sensors):
        raise ValueError("a page holds one document per sensor")
    data = b"".join(orjson.dumps(doc, option=_OPTIONS) + b"\n" for doc in by_sensor)
    return gzip.compress(data, compresslevel=6, mtime=0)


def page_metadata(documents: Iterable[Mapping[str, Any]], shard: int) -> dict[str, str]:
    """The page object's metadata: its window start, shard, record count (sum), sensor
    count and revision (the highest of its documents)."""
    docs = list(documents)
    return {
        "window-start": str(docs[0]["window_start"]) if docs else "",
        "shard": str(shard),
        "record-count": str(sum(int(doc["record_count"]) for doc in docs)),
        "sensor-count": str(len(docs)),
        "revision": str(max((int(doc.get("revision", 0)) for doc in docs), default=0)),
    }


def page_entries(body: bytes) -> list[dict[str, Any]]:
    """The window documents of a page (gzip or already decompressed), in page order.

    Raises ValueError when the body is not a page (not gzip JSON Lines of objects)."""
    try:
        data = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    except (OSError, EOFError) as exc:
        raise ValueError(f"not a gzip page: {exc}") from exc
    entries = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"line {number} is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or "sensor_id" not in doc:
            raise ValueError(f"line {number} is not a window document")
        entries.append(doc)
    return entries


def latest_documents(
    documents: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest revision of every window among ``documents`` (of any pages, shards or
    versions), by (sensor_id, window_start); equal revisions: the last one given."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in documents:
        ident = (str(doc["sensor_id"]), str(doc["window_start"]))
        held = latest.get(ident)
        if held is None or int(doc.get("revision", 0)) >= int(held.get("revision", 0)):
            latest[ident] = dict(doc)
    return latest
