"""The notification of a burst (services/notifier/message.py): its id depends on the
location and the first reading only, its body on the burst only, and a body over the
queue's limit carries as many readings as fit."""

from __future__ import annotations

from datetime import timedelta

import orjson

from services.notifier.bursts import Anomaly, Burst
from services.notifier.config import BurstRules
from services.notifier.message import (
    build_body,
    burst_id,
    encode_body,
    fit_message,
    group_id,
    location_slug,
)
from tests.services.notifier.stream import START, reading

RULES = BurstRules.from_seconds(3, 60, 120, 10)


def burst(count: int = 3, location: str = "Chicago", batch_id: str = "b1") -> Burst:
    members = []
    for i in range(count):
        record = reading(location, f"S{i % 4}", START + timedelta(seconds=i), i, batch_id=batch_id)
        record["quality"]["anomaly_reasons"] = ["temperature_high"] + (["vibration"] if i else [])
        members.append(Anomaly.from_record(record, batch_id, "notification"))
    return Burst(location, tuple(members))


def test_the_body_is_a_function_of_the_burst() -> None:
    found = burst()
    body = build_body(found, RULES, "s3://archival/notifications/Chicago/x.json")
    assert encode_body(body) == encode_body(build_body(burst(), RULES, body["record"]))
    assert body["kind"] == "anomaly-burst" and body["version"] == 1
    assert body["window"] == {
        "start": "2026-11-22T01:00:00.000+00:00",
        "end": "2026-11-22T01:00:02.000+00:00",
        "span_seconds": 2.0,
    }
    assert body["rule"] == {"min_anomalies": 3, "window_seconds": 60.0, "cooldown_seconds": 120.0}
    assert body["anomaly_count"] == body["readings_included"] == 3
    assert body["sensor_ids"] == ["S0", "S1", "S2"]
    assert body["batch_ids"] == ["b1"] and body["scenarios"] == ["notification"]
    assert body["anomaly_reasons"] == {"temperature_high": 3, "vibration": 2}
    assert body["reading_keys"] == [a.key for a in found.members]
    assert body["readings"] == [a.record for a in found.members]
    assert body["job_ids"] == [found.members[0].record["lineage"]["job_id_hash"]]


def test_the_burst_id_names_the_location_and_the_first_reading_only() -> None:
    one, other_batch = burst(), burst(4, batch_id="replay-b1")
    assert burst_id("Chicago", one.start.key) == burst_id("Chicago", other_batch.start.key)
    assert burst_id("Chicago", one.start.key) != burst_id("Denver", one.start.key)
    assert burst_id("Chicago", one.start.key) != burst_id("Chicago", one.members[1].key)
    assert burst_id("Chicago", one.start.key).startswith("burst-")
    assert len(burst_id("Chicago", one.start.key)) == len("burst-") + 32


def test_an_oversized_body_carries_as_many_readings_as_fit() -> None:
    found = burst(400)
    body = build_body(found, RULES, "s3://archival/notifications/Chicago/x.json")
    limit = 64 * 1024
    assert len(encode_body(body)) > limit
    fitted = fit_message(body, limit)
    assert len(fitted) <= limit
    note = orjson.loads(fitted)
    assert 0 < note["readings_included"] < 400 == note["anomaly_count"]
    assert note["readings"] == body["readings"][: note["readings_included"]]
    assert note["reading_keys"] == body["reading_keys"]  # the whole list still fits
    bare = orjson.loads(fit_message(body, 2048))
    assert bare["readings_included"] == 0 and bare["reading_keys"] == []
    assert fit_message(burst_body := build_body(burst(), RULES, "r"), limit) == encode_body(
        burst_body
    )


def test_a_long_location_gets_a_bounded_stable_group_id() -> None:
    long = "Ä" * 200
    assert len(group_id(long)) <= 128
    assert group_id(long) == group_id(long) != group_id("Ä" * 199)
    assert group_id("Texas Wind Farm") == "Texas%20Wind%20Farm"


def test_group_ids_and_slugs_are_valid_bounded_and_distinct_for_any_location() -> None:
    import string

    allowed = set(string.ascii_letters + string.digits + string.punctuation)
    locations = ["a/b", "a%2Fb", "..", ".", "%2E%2E", "\x00", "a\nb", "😀" * 128, "x" * 1000]
    locations += ["x" * 999 + "y", "a+b", "\u202eabc"]
    slugs = [location_slug(loc) for loc in locations]
    assert len(set(slugs)) == len(locations)
    for slug, group in zip(slugs, map(group_id, locations), strict=True):
        assert 0 < len(group) <= 128 and set(group) <= allowed
        assert 0 < len(slug) <= 200 and "/" not in slug and slug not in (".", "..")
        assert slug.isascii() and slug.isprintable()


def test_the_body_escapes_what_sqs_refuses_and_reads_back_the_same() -> None:
    found = burst(location="odd\ufffe\uffff\x00")
    body = build_body(found, RULES, "r")
    encoded = encode_body(body)
    text = encoded.decode()
    assert "\ufffe" not in text and "\uffff" not in text and "\x00" not in text
    assert orjson.loads(encoded) == body
