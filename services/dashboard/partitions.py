"""Finding the newest objects of a bucket laid out in event-time partitions.

Every stage files objects under ``year=/month=/day=/hour=`` (Hive style, zero-padded, so
names sort in time order). The newest data is found by walking those four levels newest
first instead of listing a whole bucket, and each level is listed with a delimiter:
listings stay short (LocalStack also stops a long flat listing of ``=`` keys after
1,000 keys). Hive's default partition (no event time) comes last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from sensorpipe.objects import HIVE_DEFAULT_PARTITION

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_LEVELS = 4  # year, month, day, hour
_DEFAULT_VALUE = HIVE_DEFAULT_PARTITION.split("/", 1)[0].split("=", 1)[1]


def _level(s3: S3Client, bucket: str, prefix: str) -> tuple[list[str], list[str]]:
    """(sub-prefixes, object keys) directly under ``prefix``."""
    prefixes: list[str] = []
    keys: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    )
    for page in pages:
        prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        keys.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return prefixes, keys


def _newest_first(prefixes: list[str]) -> list[str]:
    def order(prefix: str) -> tuple[bool, str]:
        value = prefix.rstrip("/").rsplit("=", 1)[-1]
        return (value != _DEFAULT_VALUE, prefix)

    return sorted(prefixes, key=order, reverse=True)


def hours_newest_first(s3: S3Client, bucket: str, prefix: str) -> Iterator[str]:
    """The hour partitions under ``prefix`` (e.g. ``rejected/``), newest first."""

    def walk(current: str, depth: int) -> Iterator[str]:
        if depth == _LEVELS:
            yield current
            return
        children, _ = _level(s3, bucket, current)
        for child in _newest_first(children):
            yield from walk(child, depth + 1)

    yield from walk(prefix, 0)


def keys_under(
    s3: S3Client, bucket: str, prefix: str, *, descend: Callable[[str], bool] = lambda p: True
) -> list[str]:
    """Every key below ``prefix``, one level per listing; ``descend`` chooses which
    sub-prefixes are entered (e.g. one sensor's)."""
    keys: list[str] = []
    pending = [prefix]
    while pending:
        children, here = _level(s3, bucket, pending.pop())
        keys.extend(here)
        pending.extend(child for child in children if descend(child))
    return keys
