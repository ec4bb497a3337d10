"""The tests' own reader of window pages, in plain Python (gzip and json, not
``sensorpipe.pages``): what the aggregated bucket holds, whoever wrote it.

A page is ``.../window_start=<start>/shard-<n>.jsonl.gz``, gzip JSON Lines of window
documents; a window is identified by (sensor_id, window_start), and where several pages
hold one window (shards that changed, or a test that gathers versions) the highest
``revision`` is the window.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from typing import Any

PAGE_PREFIX = "1-minute/"


def is_page(key: str) -> bool:
    return key.endswith(".jsonl.gz") and "/window_start=" in key


def documents_of(body: bytes) -> list[dict[str, Any]]:
    """The documents of one page, in its order."""
    text = gzip.decompress(body).decode("utf-8")
    return [json.loads(line) for line in text.split("\n") if line]  # not splitlines: U+0085


def page_documents(
    objects: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every window document of the pages among ``objects`` (key -> body), by
    (sensor_id, window_start); the highest revision where several pages hold one."""
    items = objects.items() if isinstance(objects, Mapping) else objects
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, body in items:
        if not is_page(key):
            continue
        for doc in documents_of(body):
            ident = (doc["sensor_id"], doc["window_start"])
            if ident not in out or doc["revision"] > out[ident]["revision"]:
                out[ident] = doc
    return out


def pages_in(objects: Mapping[str, Any]) -> list[str]:
    """The page keys among ``objects``' keys, sorted."""
    return sorted(key for key in objects if is_page(key))
