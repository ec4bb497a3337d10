"""Validation of one envelope, without I/O: what goes on, what is set aside, and why.

Every record of a batch ends in exactly one place, counted in the batch summary
(``in = valid + invalid + filtered``):
- invalid: one error line (the original reading, all its errors, ids, lineage) for the
  ``rejected/`` objects of the error bucket;
- filtered (valid, but matched by a business rule): one line with the rule's name for
  the ``filtered/`` objects;
- valid: forwarded with ``quality`` (spec version, time, anomalous and why).
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
    event_time_partition,
    jsonl,
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
        self, envelope: Envelope, *, apply_filters: bool, now: datetime | None = None
    ) -> BatchResult:
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
                rejected.append(
                    {
                        **ids,
                        "record": data if isinstance(data, dict) else record,
                        "errors": errors,
                        "lineage": record.get("lineage"),
                    }
                )
                continue
            assert isinstance(data, dict)  # errors_of reports anything else
            rule = match(data) if match is not None else None
            if rule is not None:
                filter_counts[rule] += 1
                filtered.append(
                    {**ids, "record": data, "rule": rule, "lineage": record.get("lineage")}
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
        return BatchResult(
            forward, rejected, filtered, summary, error_counts, self.compiled.timestamp_field
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


def safe_key_part(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in value) or "_"


def error_objects(result: BatchResult, *, compress: bool = True) -> list[ErrorObject]:
    """The error-bucket objects of a batch: one per kind and event-time partition.

    Keys and bytes depend only on the batch content, so a redelivered batch overwrites
    its objects with identical bytes.
    """
    summary = result.summary
    batch = safe_key_part(str(summary["batch_id"]))
    suffix = ".jsonl.gz" if compress else ".jsonl"
    objects: list[ErrorObject] = []
    for kind, lines in (("rejected", result.rejected), ("filtered", result.filtered)):
        groups: dict[str, list[dict[str, Any]]] = {}
        times: dict[str, list[datetime]] = {}
        for line in lines:
            moment = line_event_time(line, result.timestamp_field)
            partition = event_time_partition(moment)
            groups.setdefault(partition, []).append(line)
            if moment is not None:
                times.setdefault(partition, []).append(moment)
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
                    key=f"{kind}/{partition}/{batch}{suffix}",
                    body=jsonl(group, compress=compress),
                    metadata=metadata,
                    record_count=len(group),
                )
            )
    return objects
