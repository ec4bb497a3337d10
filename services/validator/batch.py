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

import numpy as np
import pyarrow as pa

from sensorpipe.columns import rows_of
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
    table_digest,
)
from services.validator.anomalies import AnomalyDetector
from services.validator.columnar import READING, ColumnarSpec, Readings, quality_column
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


@dataclass(frozen=True, slots=True)
class Fate:
    """What becomes of one record (:meth:`BatchValidator.decide`): ``line`` for the error
    bucket when it is rejected (``errors`` set) or filtered (``rule`` set); else valid,
    anomalous for ``reasons``."""

    line: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    rule: str | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Pass:
    """What one validation pass over a batch holds fixed for all its records."""

    ids: dict[str, Any]  # the batch's ids, opening every error line
    latest: float  # the future bound, epoch seconds
    validated_at: str
    apply_filters: bool


@dataclass
class _Tally:
    """The outcomes of a batch's records, gathered in record order."""

    rejected: list[dict[str, Any]] = field(default_factory=list)
    filtered: list[dict[str, Any]] = field(default_factory=list)
    error_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    filter_counts: Counter[str] = field(default_factory=Counter)
    anomalous: int = 0

    def add(self, fate: Fate) -> None:
        if fate.errors:
            assert fate.line is not None
            self.error_counts.update((e["rule"], e["field"]) for e in fate.errors)
            self.rejected.append(fate.line)
        elif fate.rule is not None:
            assert fate.line is not None
            self.filter_counts[fate.rule] += 1
            self.filtered.append(fate.line)
        else:
            self.anomalous += bool(fate.reasons)


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
        self.columnar = ColumnarSpec(
            spec, self.compiled.checks, [rule.kind for rule in spec.cross_field_rules]
        )
        self.business_filter = BusinessFilter(filters)
        self.anomalies = AnomalyDetector(spec.anomaly_detection)

    def decide(
        self, record: Record, ids: dict[str, Any], latest: float, *, apply_filters: bool
    ) -> Fate:
        """The one decision over a record: rejected with every error, set aside by a
        business rule, or valid with its anomaly reasons. ``ids``: the batch's ids that
        open every error line; ``latest``: the future bound (epoch seconds)."""
        data = record.get("sensor_data")
        errors = self.compiled.errors(data, latest)
        if errors:
            # json_safe: a NaN or a 2**70 in the record is kept as text, not as null.
            line = {
                **ids,
                "record": data if isinstance(data, dict) else record,
                "errors": errors,
                "lineage": record.get("lineage"),
            }
            return Fate(json_safe(line), errors)
        assert isinstance(data, dict)  # errors() reports anything else
        rule = self.business_filter.match(data) if apply_filters else None
        if rule is not None:
            return Fate(self._filtered_line(record, ids, rule), rule=rule)
        return Fate(reasons=self.anomalies.reasons(data))

    @staticmethod
    def _filtered_line(record: Record, ids: dict[str, Any], rule: str) -> dict[str, Any]:
        line = {**ids, "record": record["sensor_data"], "rule": rule}
        safe: dict[str, Any] = json_safe({**line, "lineage": record.get("lineage")})
        return safe

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
        ``created_at`` if readable, else ``now``). A columnar envelope is validated on
        its columns (:mod:`services.validator.columnar`), with the same report."""
        moment = now or datetime.now(UTC)
        validated_at = moment.isoformat(timespec="milliseconds")
        latest = moment.timestamp() + self.compiled.max_future_skew_seconds
        ids = {
            "batch_id": envelope.batch_id,
            "scenario": envelope.scenario,
            "config_version": envelope.config_version,
            "spec_version": self.spec_version,
        }
        tally = _Tally()
        run = _Pass(ids, latest, validated_at, apply_filters)
        readings = Readings.of(envelope.table) if envelope.columnar else None
        if readings is None:
            forward = self._forward_records(envelope, run, tally)
            content = (
                content_digest(r.get("sensor_data") for r in envelope.records)
                if tally.rejected or tally.filtered
                else ""
            )
        else:
            forward = self._forward_columns(envelope, readings, run, tally)
            content = (
                table_digest(envelope.table.select([READING]))
                if tally.rejected or tally.filtered
                else ""
            )
        summary = {
            "batch_id": envelope.batch_id,
            "spec_version": self.spec_version,
            "validated_at": validated_at,
            "in": envelope.record_count,
            "valid": forward.record_count,
            "invalid": len(tally.rejected),
            "filtered": len(tally.filtered),
            "anomalous": tally.anomalous,
            "errors_by_rule": _totals(tally.error_counts, 0),
            "errors_by_field": _totals(tally.error_counts, 1),
            "filtered_by_rule": dict(sorted(tally.filter_counts.items())),
        }
        forward.hops.append({"stage": STAGE, "at": validated_at})
        forward.meta["validation"] = summary
        return BatchResult(
            forward,
            tally.rejected,
            tally.filtered,
            summary,
            tally.error_counts,
            self.compiled.timestamp_field,
            arrived_at=arrived_at or readable_event_time(envelope.created_at) or moment,
            content=content,
        )

    def _quality(self, validated_at: str, reasons: list[str]) -> dict[str, Any]:
        return {
            "spec_version": self.spec_version,
            "validated_at": validated_at,
            "anomalous": bool(reasons),
            "anomaly_reasons": reasons,
        }

    def _forward_records(self, envelope: Envelope, run: _Pass, tally: _Tally) -> Envelope:
        """Each record decided by :meth:`decide`; the valid ones with ``quality``."""
        valid: list[Record] = []
        for record in envelope.records:
            fate = self.decide(record, run.ids, run.latest, apply_filters=run.apply_filters)
            tally.add(fate)
            if fate.line is None:
                valid.append({**record, "quality": self._quality(run.validated_at, fate.reasons)})
        return envelope.with_records(valid)

    def _forward_columns(
        self, envelope: Envelope, readings: Readings, run: _Pass, tally: _Tally
    ) -> Envelope:
        """The rows the vectorised checks clear are valid without a dict; the others
        are decided one by one (:meth:`decide`). Business filters and anomaly reasons
        of the cleared rows are read from their columns."""
        table = envelope.table
        cleared = self.columnar.cleared(readings, run.latest)
        exact_rows = np.flatnonzero(~cleared).tolist()
        fates: dict[int, Fate] = {}
        if exact_rows:
            records = rows_of(table.take(exact_rows))
            for row, record in zip(exact_rows, records, strict=True):
                fates[row] = self.decide(
                    record, run.ids, run.latest, apply_filters=run.apply_filters
                )
        set_aside: dict[int, str] = {}
        if run.apply_filters and self.business_filter.rule_names:
            set_aside = self.business_filter.match_values(
                readings.values, np.flatnonzero(cleared).tolist()
            )
        if set_aside:
            rows = sorted(set_aside)
            for row, record in zip(rows, rows_of(table.take(rows)), strict=True):
                rule = set_aside[row]
                fates[row] = Fate(self._filtered_line(record, run.ids, rule), rule=rule)
        valid = cleared.copy()
        valid[list(set_aside)] = False
        for row in sorted(fates):
            fate = fates[row]
            tally.add(fate)
            valid[row] = fate.line is None
        reasons = self.anomalies.reasons_of_columns(
            valid & cleared,
            readings.equals_one("anomaly_flag")[0],
            lambda row: readings.values("anomaly_type")[row],
            readings.floats,
        )
        tally.anomalous += len(reasons)
        reasons.update((row, fate.reasons) for row, fate in fates.items() if fate.line is None)
        valid_rows = np.flatnonzero(valid)
        at = {int(row): i for i, row in enumerate(valid_rows.tolist())} if reasons else {}
        field, quality = quality_column(
            self.spec_version,
            run.validated_at,
            len(valid_rows),
            {at[row]: found for row, found in reasons.items()},
        )
        return envelope.with_table(_with_column(table.take(valid_rows), field, quality))


def _with_column(table: pa.Table, field: pa.Field[Any], array: pa.Array[Any]) -> pa.Table:
    """``table`` with the column ``field.name`` replaced, in its place, or added last
    (what ``{**record, name: value}`` does to each row)."""
    index = table.schema.get_field_index(field.name)
    if index < 0:
        return table.append_column(field, array)
    return table.set_column(index, field, array)


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
