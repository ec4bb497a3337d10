"""Validation of one envelope, without I/O: what goes on, what is set aside, and why.

Every record of a batch ends in exactly one place, counted in the batch summary
(``in = valid + invalid + filtered``):
- invalid: one error line (the original reading, all its errors, ids, lineage) for the
  ``rejected/`` objects of the error bucket;
- filtered (valid, but matched by a business rule): one line with the rule's name for
  the ``filtered/`` objects;
- valid: forwarded with ``quality`` (spec version, time, anomalous and why).

Error objects are ``{kind}/{partition}/{batch}_{content}.jsonl[.gz]``: ``batch`` is the
batch id as ``objects.key_segment`` (safe and collision-free whatever the id), and
``content`` the digest of the batch's source rows, so two different batches sharing an
id keep both their objects while a redelivery overwrites its own with the same bytes.
A set-aside record is filed under its event-time hour, except when its time is what is
wrong (unreadable, out of range, in the future, missing): then under the hour it
*arrived* (the message's SentTimestamp at the validator, the same on every redelivery),
marked ``"partitioned_by": "arrival"``; its record is kept as it came.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sensorpipe.config import FilterRule, ValidationSpec
from sensorpipe.envelope import Envelope, Record
from sensorpipe.objects import (
    batch_object_metadata,
    content_digest,
    hive_partition,
    json_safe,
    jsonl,
    key_segment,
    readable_event_time,
)
from services.validator.anomalies import AnomalyDetector
from services.validator.filters import BusinessFilter
from services.validator.rules import CompiledSpec

STAGE = "validator"


@dataclass
class BatchResult:
    forward: Envelope
    rejected: list[dict[str, Any]]
    filtered: list[dict[str, Any]]
    summary: dict[str, Any]
    error_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    timestamp_field: str = "timestamp"  # partitions error objects by event time
    # When the batch arrived at the validator: the partition of records whose own time
    # is what is wrong. Defaults to the processing time.
    arrived_at: datetime | None = None
    # The digest of the batch's source rows (``objects.content_digest``), when it has
    # records to set aside.
    content: str = ""


@dataclass(frozen=True)
class ErrorObject:
    """One object of the error bucket: ``{kind}/{partition}/{batch_id}.jsonl[.gz]``."""

    key: str
    body: bytes
    metadata: dict[str, str]
    record_count: int


class BatchValidator:
    """The spec, filters and anomaly thresholds compiled once; reused for every batch."""

    def __init__(
        self,
        spec: ValidationSpec,
        filters: Sequence[FilterRule] = (),
        *,
        max_future_skew_seconds: float | None = None,
    ) -> None:
        self.spec_version = spec.spec_version
        self.compiled = CompiledSpec(spec, max_future_skew_seconds=max_future_skew_seconds)
        self.business_filter = BusinessFilter(filters)
        self.anomalies = AnomalyDetector(spec.anomaly_detection)

    def validate_envelope(
        self,
        envelope: Envelope,
        *,
        apply_filters: bool,
        now: datetime | None = None,
        arrived_at: datetime | None = None,
    ) -> BatchResult:
        """``now`` is the processing time (the future bound, ``validated_at``);
        ``arrived_at`` when the batch reached the validator (without it: the envelope's
        ``created_at`` if readable, else ``now``)."""
        moment = now or datetime.now(UTC)
        validated_at = moment.isoformat(timespec="milliseconds")
        latest = moment.timestamp() + self.compiled.max_future_skew_seconds
        ids = {
            "batch_id": envelope.batch_id,
            "scenario": envelope.scenario,
            "config_version": envelope.config_version,
            "spec_version": self.spec_version,
        }
        errors_of = self.compiled.errors
        match = self.business_filter.match if apply_filters else None
        reasons_of = self.anomalies.reasons
        valid: list[Record] = []
        rejected: list[dict[str, Any]] = []
        filtered: list[dict[str, Any]] = []
        error_counts: Counter[tuple[str, str]] = Counter()
        filter_counts: Counter[str] = Counter()
        anomalous = 0
        for record in envelope.records:
            data = record.get("sensor_data")
            errors = errors_of(data, latest)
            if errors:
                error_counts.update((e["rule"], e["field"]) for e in errors)
                # json_safe: a NaN or a 2**70 in the record is kept as text, not as null.
                rejected.append(
                    json_safe(
                        {
                            **ids,
                            "record": data if isinstance(data, dict) else record,
                            "errors": errors,
                            "lineage": record.get("lineage"),
                        }
                    )
                )
                continue
            assert isinstance(data, dict)  # errors_of reports anything else
            rule = match(data) if match is not None else None
            if rule is not None:
                filter_counts[rule] += 1
                filtered.append(
                    json_safe(
                        {**ids, "record": data, "rule": rule, "lineage": record.get("lineage")}
                    )
                )
                continue
            reasons = reasons_of(data)
            anomalous += bool(reasons)
            quality = {
                "spec_version": self.spec_version,
                "validated_at": validated_at,
                "anomalous": bool(reasons),
                "anomaly_reasons": reasons,
            }
            valid.append({**record, "quality": quality})
        summary = {
            "batch_id": envelope.batch_id,
            "spec_version": self.spec_version,
            "validated_at": validated_at,
            "in": len(envelope.records),
            "valid": len(valid),
            "invalid": len(rejected),
            "filtered": len(filtered),
            "anomalous": anomalous,
            "errors_by_rule": _totals(error_counts, 0),
            "errors_by_field": _totals(error_counts, 1),
            "filtered_by_rule": dict(sorted(filter_counts.items())),
        }
        forward = envelope.with_records(valid)
        forward.hops.append({"stage": STAGE, "at": validated_at})
        forward.meta["validation"] = summary
        content = (
            content_digest(r.get("sensor_data") for r in envelope.records)
            if rejected or filtered
            else ""
        )
        return BatchResult(
            forward,
            rejected,
            filtered,
            summary,
            error_counts,
            self.compiled.timestamp_field,
            arrived_at=arrived_at or readable_event_time(envelope.created_at) or moment,
            content=content,
        )


def _totals(counts: Counter[tuple[str, str]], position: int) -> dict[str, int]:
    out: Counter[str] = Counter()
    for key, n in counts.items():
        out[key[position]] += n
    return dict(sorted(out.items()))


def line_event_time(line: dict[str, Any], timestamp_field: str = "timestamp") -> datetime | None:
    """The reading time of an error line's record, or None if it has no readable one."""
    record = line.get("record")
    return readable_event_time(record.get(timestamp_field) if isinstance(record, dict) else None)


# What a timestamp can be wrong by and still be the reading's time: only a missing
# offset (it is read as UTC). Any other error of the field makes the time unusable.
_TIME_STILL_USABLE = frozenset({"timestamp_timezone"})


def _event_time_of(line: dict[str, Any], timestamp_field: str) -> datetime | None:
    """The event time an error line is filed under; None when that time is the problem."""
    for error in line.get("errors", ()):
        if error["field"] == timestamp_field and error["rule"] not in _TIME_STILL_USABLE:
            return None
    return line_event_time(line, timestamp_field)


def error_objects(result: BatchResult, *, compress: bool = True) -> list[ErrorObject]:
    """The error-bucket objects of a batch: one per kind and partition.

    Keys and bytes depend only on the batch content and its arrival, so a redelivered
    batch overwrites its objects with identical bytes.
    """
    summary = result.summary
    batch = key_segment(str(summary["batch_id"]))
    suffix = ".jsonl.gz" if compress else ".jsonl"
    arrived = (result.arrived_at or datetime.now(UTC)).astimezone(UTC)
    # Only the hour (the partition) records the arrival: a re-upload of the same rows in
    # the same hour must write the same bytes.
    arrival = {"partitioned_by": "arrival"}
    objects: list[ErrorObject] = []
    for kind, lines in (("rejected", result.rejected), ("filtered", result.filtered)):
        groups: dict[str, list[dict[str, Any]]] = {}
        times: dict[str, list[datetime]] = {}
        for line in lines:
            moment = _event_time_of(line, result.timestamp_field)
            if moment is None:
                partition = hive_partition(arrived)
                line = {**line, **arrival}
            else:
                partition = hive_partition(moment)
                times.setdefault(partition, []).append(moment)
            groups.setdefault(partition, []).append(line)
        for partition in sorted(groups):
            group = groups[partition]
            first = group[0]
            metadata = {
                "kind": kind,
                "spec-version": str(summary["spec_version"]),
                **batch_object_metadata(
                    scenario=str(first["scenario"]),
                    config_version=first["config_version"],
                    batch_id=str(summary["batch_id"]),
                    record_count=len(group),
                    event_times=times.get(partition, []),
                ),
            }
            objects.append(
                ErrorObject(
                    key=f"{kind}/{partition}/{batch}_{result.content}{suffix}",
                    body=jsonl(group, compress=compress),
                    metadata=metadata,
                    record_count=len(group),
                )
            )
    return objects
