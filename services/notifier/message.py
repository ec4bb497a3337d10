"""The notification a burst sends: its identity and its body.

The body is a pure function of the burst (no wall-clock time inside), so every replica,
restart or replay that finds the same burst builds the same bytes; when it was sent
travels in message attributes and object metadata instead.

Whatever characters a location (or any text of a record) holds, what is sent is valid:

- SQS takes only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF in a
  body and in attribute values (LocalStack and SQS answer ``InvalidMessageContents`` /
  ``InvalidParameterValue`` otherwise). orjson escapes control characters as ``\\u0000``
  text already; the body's U+FFFE and U+FFFF are escaped the same way
  (:func:`encode_body`), and an attribute value with any character outside that set is
  sent percent-encoded, its name listed in the ``percent-encoded`` attribute
  (:func:`sqs_attributes`). A raw NUL in the ``location`` attribute was what SQS refused.
- ``MessageGroupId``: 128 characters at most, alphanumeric and punctuation only: the
  location as ``sensorpipe.objects.key_segment`` makes it (percent-encoded, shortened
  with a digest of the whole location) (:func:`group_id`).
- The ledger key segment (:func:`location_slug`): the same function, never ``.`` or
  ``..``, at most :data:`_MAX_SLUG` characters.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any
from urllib.parse import quote

import orjson

from sensorpipe.objects import key_segment
from services.notifier.bursts import Burst
from services.notifier.config import BurstRules

NOTIFICATION_KIND = "anomaly-burst"
NOTIFICATION_VERSION = 1
_US = 1_000_000
_MAX_GROUP_ID = 128
# The longest ledger key segment for a location (S3 keys: 1,024 bytes at most).
_MAX_SLUG = 200
# What SQS refuses in a message body or an attribute value.
_NOT_FOR_SQS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
PERCENT_ENCODED = "percent-encoded"


def burst_id(location: str, start_reading_key: str) -> str:
    """Deterministic id of the burst starting at that reading at that location."""
    digest = hashlib.blake2b(f"{location}\x1f{start_reading_key}".encode(), digest_size=16)
    return f"burst-{digest.hexdigest()}"


def location_slug(location: str) -> str:
    """A location as one safe, bounded path segment (percent-encoded; distinct locations
    give distinct slugs)."""
    return key_segment(location, limit=_MAX_SLUG)


def group_id(location: str) -> str:
    """FIFO MessageGroupId: notifications of one location stay in order."""
    return key_segment(location, limit=_MAX_GROUP_ID)


def sqs_attributes(values: dict[str, str]) -> dict[str, dict[str, str]]:
    """String message attributes SQS accepts: a value with a character SQS refuses is
    sent percent-encoded, and named in the ``percent-encoded`` attribute."""
    out: dict[str, dict[str, str]] = {}
    encoded = []
    for name, value in values.items():
        if _NOT_FOR_SQS.search(value):
            value = quote(value, safe=" -_.:+", errors="surrogatepass")
            encoded.append(name)
        out[name] = {"DataType": "String", "StringValue": value}
    if encoded:
        out[PERCENT_ENCODED] = {"DataType": "String", "StringValue": ",".join(encoded)}
    return out


def attributes_size(attributes: dict[str, dict[str, str]]) -> int:
    """What attributes add to a message's size, as SQS counts it (name, type, value)."""
    return sum(
        len(name.encode()) + len(a["DataType"].encode()) + len(a["StringValue"].encode())
        for name, a in attributes.items()
    )


def _distinct(values: list[Any]) -> list[Any]:
    return sorted({v for v in values if isinstance(v, str) and v})


def _lineage(record: dict[str, Any]) -> dict[str, Any]:
    lineage = record.get("lineage")
    return lineage if isinstance(lineage, dict) else {}


def _reasons(record: dict[str, Any]) -> list[str]:
    quality = record.get("quality")
    raw = quality.get("anomaly_reasons", []) if isinstance(quality, dict) else []
    out = []
    for reason in raw if isinstance(raw, list) else []:
        if isinstance(reason, str):
            out.append(reason)
        elif isinstance(reason, dict):
            out.append(str(reason.get("rule") or reason.get("field") or reason.get("kind")))
    return out


def build_body(burst: Burst, rules: BurstRules, record_uri: str) -> dict[str, Any]:
    members = burst.members
    records = [a.record for a in members]
    data = [r["sensor_data"] for r in records]
    lineages = [_lineage(r) for r in records]
    reasons: Counter[str] = Counter(reason for r in records for reason in _reasons(r))
    return {
        "kind": NOTIFICATION_KIND,
        "version": NOTIFICATION_VERSION,
        "burst_id": burst_id(burst.location, burst.start.key),
        "location": burst.location,
        "window": {
            "start": data[0]["timestamp"],
            "end": data[-1]["timestamp"],
            "span_seconds": (burst.end.at_us - burst.start.at_us) / _US,
        },
        "rule": {
            "min_anomalies": rules.min_anomalies,
            "window_seconds": rules.window_us / _US,
            "cooldown_seconds": rules.cooldown_us / _US,
        },
        "anomaly_count": len(members),
        "sensor_ids": _distinct([d.get("sensor_id") for d in data]),
        "job_ids": _distinct([lin.get("job_id_hash") for lin in lineages]),
        "execution_ids": _distinct([lin.get("execution_id") for lin in lineages]),
        "node_ids": _distinct([lin.get("node_id") for lin in lineages]),
        "batch_ids": _distinct([a.batch_id for a in members]),
        "scenarios": _distinct([a.scenario for a in members]),
        "anomaly_reasons": dict(sorted(reasons.items())),
        "reading_keys": [a.key for a in members],
        "record": record_uri,
        "readings_included": len(members),
        "readings": records,
    }


def encode_body(body: dict[str, Any]) -> bytes:
    """The body's JSON (sorted keys), with U+FFFE and U+FFFF escaped: orjson escapes
    control characters itself, and these two are the only others SQS refuses that
    UTF-8 text can hold (they can only occur inside JSON strings, where an escape is the
    same text)."""
    encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    if b"\xef\xbf\xbe" in encoded or b"\xef\xbf\xbf" in encoded:
        encoded = encoded.replace(b"\xef\xbf\xbe", b"\\ufffe").replace(b"\xef\xbf\xbf", b"\\uffff")
    return encoded


def fit_message(body: dict[str, Any], max_bytes: int) -> bytes:
    """The SQS message body: the whole notification, or (if it would exceed the queue's
    limit) the same with as many readings as fit; the S3 record always has them all."""
    encoded = encode_body(body)
    if len(encoded) <= max_bytes:
        return encoded
    readings = body["readings"]
    low, high = 0, len(readings)
    while low < high:  # the largest prefix of readings that fits
        mid = (low + high + 1) // 2
        trial = {**body, "readings": readings[:mid], "readings_included": mid}
        if len(encode_body(trial)) <= max_bytes:
            low = mid
        else:
            high = mid - 1
    trimmed = {**body, "readings": readings[:low], "readings_included": low}
    if low == 0:  # even the key list is too long: the S3 record carries it
        trimmed["reading_keys"] = []
    return encode_body(trimmed)
