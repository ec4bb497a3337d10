"""What every stage agrees on about a record.

A record in an envelope is a dict: ``sensor_data`` holds the source row untouched
(with its ``id``); ``lineage`` (enricher) and ``quality`` (validator) are added beside
it, never inside it.
"""

from __future__ import annotations

import hashlib
from typing import Any

METRICS: tuple[str, ...] = ("temperature", "humidity", "pressure", "vibration", "voltage")


def reading_key(sensor_data: dict[str, Any]) -> str:
    """Identity of a reading: the same sensor at the same instant is the same reading,
    however often it is redelivered, replayed or re-uploaded."""
    return f"{sensor_data.get('sensor_id')}|{sensor_data.get('timestamp')}"


def stable_shard(key: str, shards: int) -> int:
    """Shard of ``key`` among ``shards``: stable across processes and Python runs
    (``hash()`` is salted per process, so it cannot be used)."""
    if shards <= 1:
        return 0
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards
