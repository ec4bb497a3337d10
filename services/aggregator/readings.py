"""A batch's readings as columns: what the aggregator needs of every record, read once.

Records arrive as dicts (the envelope's JSON). One pass per column pulls out the sensor,
the exact instant (µs), the five metrics (NaN where missing) and the anomaly flag; the
rest of a record is looked at only for the few rows that become a window's first or
last reading, or a late line. Records that cannot be windowed (no sensor, no readable
timestamp) are set aside with the reason.

The quick path trusts what validation guarantees (numbers are numbers, not booleans);
batches of a scenario that does not validate, and any batch the quick path cannot read,
take the exact path, record by record, with the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sensorpipe.envelope import Envelope, Record
from sensorpipe.lineage import META_KEY as LINEAGE_META
from sensorpipe.records import METRICS, event_time_us
from services.aggregator.statistics import Floats, Ints, numeric
from services.aggregator.windows import Origin, Provenance

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Instants a datetime can spell in UTC (years 1 to 9999).
_MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICROSECOND
# What the router sends the aggregator: the reading, and its anomaly mark.
_ROUTED = pa.schema(
    [
        (
            "sensor_data",
            pa.struct(
                [("sensor_id", pa.string()), ("timestamp", pa.string())]
                + [(name, pa.float64()) for name in METRICS]
            ),
        ),
        ("anomalous", pa.bool_()),
    ]
)
_INSTANT = pa.timestamp("us", tz="UTC")
_QUALITY, _ANOMALOUS, _MARK = (
    itemgetter("quality"),
    itemgetter("anomalous"),
    itemgetter("anomalous"),
)
_LINEAGE, _LINEAGE_IDS = itemgetter("lineage"), itemgetter("batch_id", "node_id", "job_id_hash")


@dataclass(slots=True)
class Unusable:
    record: Record
    detail: str
    part: int  # index of its part in the batch


@dataclass(slots=True)
class Readings:
    """Row i is the i-th usable record of the batch, in the source's order."""

    names: list[str]  # distinct sensor ids; ``codes`` index into it
    codes: Ints
    at_us: Ints
    values: Floats  # (rows, K)
    anomalous: npt.NDArray[np.bool_]
    records: list[Record]
    parts: Ints  # each row's part (index into the batch)
    # The distinct (scenario, config version, lineage ids) of the batch's records, and
    # each row's: a window's provenance is the union over its rows.
    provenance: list[Provenance]
    origin: Ints
    unusable: list[Unusable] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def timestamp(self, row: int) -> str:
        return str(self.records[row]["sensor_data"]["timestamp"])

    def location(self, row: int) -> Any:
        return self.records[row]["sensor_data"].get("location")


def read_batch(parts: list[Envelope], *, validated: bool) -> Readings:
    """The columns of a batch (its parts in order); ``validated``: every part's scenario
    validated its records, so the quick path may be taken."""
    records: list[Record] = []
    part_of: list[int] = []
    for index, part in enumerate(parts):
        records.extend(part.records)
        part_of.extend([index] * len(part.records))
    if validated:
        try:
            return _quick(records, part_of, parts)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            pass  # something the quick path does not expect: read it record by record
    return _exact(records, part_of, parts)


def _quick(records: list[Record], part_of: list[int], parts: list[Envelope]) -> Readings:
    """Arrow reads the columns out of the records and parses the timestamps (C++: no
    Python object per value); what it cannot read raises, and the exact path takes over.
    Validation has parsed every timestamp with ``datetime.fromisoformat`` already, and
    Arrow reads the extended ISO-8601 form the same way (offsets included)."""
    if not records:
        empty = np.zeros((0, len(METRICS)))
        none = np.zeros(0, np.int64)
        return _columns([], [], none, none, empty, [], parts, [], validated=True)
    try:
        routed = pa.RecordBatch.from_pylist(records, schema=_ROUTED)
        table = cast(pa.StructArray, routed.column(0)).flatten()
        stamps = pc.cast(table[1], _INSTANT).cast(pa.int64())
    except (pa.ArrowException, KeyError) as exc:
        raise ValueError(f"not the quick path's columns: {exc}") from exc
    sensors = table[0].dictionary_encode()
    if sensors.null_count or stamps.null_count:
        raise ValueError("a reading without a sensor id or a timestamp")
    at_us = stamps.to_numpy()
    if at_us.min() < _MIN_US or at_us.max() > _MAX_US:
        raise ValueError("an instant outside years 1-9999")
    values = np.column_stack([table[i].to_numpy(zero_copy_only=False) for i in range(2, 7)])
    names = [str(name) for name in sensors.dictionary.to_pylist()]
    codes = sensors.indices.to_numpy().astype(np.int64)
    flags = routed.column(1)
    anomalous = None if flags.null_count else flags.to_numpy(zero_copy_only=False)
    return _columns(
        records, names, codes, at_us, values, part_of, parts, [], validated=True, marks=anomalous
    )


def _exact(records: list[Record], part_of: list[int], parts: list[Envelope]) -> Readings:
    kept: list[Record] = []
    kept_parts: list[int] = []
    sensors: list[str] = []
    instants: list[int] = []
    unusable: list[Unusable] = []
    for record, part in zip(records, part_of, strict=True):
        data = record.get("sensor_data") if isinstance(record, dict) else None
        if not isinstance(data, dict):
            unusable.append(Unusable(record, "record has no sensor_data object", part))
            continue
        sensor, stamp = data.get("sensor_id"), data.get("timestamp")
        if not isinstance(sensor, str) or not sensor:
            unusable.append(Unusable(record, "reading has no sensor_id", part))
            continue
        at = event_time_us(stamp)
        if at is None:
            shown = repr(stamp[:64]) if isinstance(stamp, str) else "missing"
            unusable.append(Unusable(record, f"timestamp {shown} is not an ISO-8601 time", part))
            continue
        kept.append(record)
        kept_parts.append(part)
        sensors.append(sensor)
        instants.append(at)
    values = np.array(
        [[numeric(r["sensor_data"].get(m)) for m in METRICS] for r in kept], dtype=np.float64
    ).reshape(len(kept), len(METRICS))
    at_us = np.array(instants, dtype=np.int64)
    names = list(dict.fromkeys(sensors))  # distinct, in order of appearance
    index = {name: code for code, name in enumerate(names)}
    codes = np.fromiter(map(index.__getitem__, sensors), dtype=np.int64, count=len(sensors))
    return _columns(kept, names, codes, at_us, values, kept_parts, parts, unusable, validated=False)


def _columns(
    records: list[Record],
    names: list[str],
    codes: Ints,
    at_us: Ints,
    values: Floats,
    part_of: list[int],
    parts: list[Envelope],
    unusable: list[Unusable],
    *,
    validated: bool,
    marks: npt.NDArray[np.bool_] | None = None,
) -> Readings:
    if not all(name for name in names):
        raise ValueError("an empty sensor id")
    provenance, origin = _provenance(records, part_of, parts)
    anomalous = marks if marks is not None else _anomalous(records, validated=validated)
    infinite = np.isinf(values)
    if infinite.any():
        values = np.where(infinite, math.nan, values)
    return Readings(
        names=names,
        codes=codes,
        at_us=at_us,
        values=values,
        anomalous=anomalous,
        records=records,
        parts=np.array(part_of, dtype=np.int64),
        provenance=provenance,
        origin=origin,
        unusable=unusable,
    )


def _anomalous(records: list[Record], *, validated: bool) -> npt.NDArray[np.bool_]:
    """Per record: the router's ``anomalous`` (it sends the aggregator each reading and
    that flag), else the validator's mark (``quality.anomalous``), else the sensor's own
    flag (``anomaly_flag``)."""
    if validated:  # the marks are bools on every record: one C-level pass
        count = len(records)
        try:
            return np.fromiter(map(_ANOMALOUS, records), dtype=np.bool_, count=count)
        except KeyError:
            pass
        try:
            marks = map(_ANOMALOUS, map(_QUALITY, records))
            return np.fromiter(marks, dtype=np.bool_, count=count)
        except (KeyError, TypeError):
            pass
    return np.array([_is_anomalous(r) for r in records], dtype=np.bool_)


def _is_anomalous(record: Record) -> bool:
    routed = record.get("anomalous")
    if isinstance(routed, bool):
        return routed
    quality = record.get("quality")
    if isinstance(quality, dict) and "anomalous" in quality:
        return quality["anomalous"] is True
    return record["sensor_data"].get("anomaly_flag") in (1, True)


def _provenance(
    records: list[Record], part_of: list[int], parts: list[Envelope]
) -> tuple[list[Provenance], Ints]:
    """The distinct origins of the rows (one :class:`Provenance` each) and each row's.
    The batch id is the enricher's (lineage) one, the same however the batch was split
    or sharded later; without lineage it is the part's own id up to the router's shard
    suffix. The enricher also stamps those ids once per batch (``meta``): then no
    record needs to be looked at."""
    plain = [part.batch_id.split(".s", 1)[0] for part in parts]
    shared = [_shared_lineage(part) for part in parts]
    seen: dict[Origin, int] = {}
    if all(ids is not None for ids in shared):
        codes = [
            seen.setdefault(_origin(part, ids, plain[i]), len(seen))
            for i, (part, ids) in enumerate(zip(parts, shared, strict=True))
        ]
        origin = np.array(codes, dtype=np.int64)[np.array(part_of, dtype=np.int64)]
        return [Provenance({key}) for key in seen], origin
    try:  # every record has a complete lineage stamp: look the ids up at C speed
        stamps = list(map(_LINEAGE_IDS, map(_LINEAGE, records)))
    except (KeyError, TypeError):
        stamps = [_lineage_ids(r) for r in records]
    pairs = list(zip(part_of, stamps, strict=True))
    code_of: dict[tuple[int, Any], int] = {}
    for index, stamp in dict.fromkeys(pairs):  # the distinct (part, stamp), a few
        key = _origin(parts[index], stamp, plain[index])
        code_of[(index, stamp)] = seen.setdefault(key, len(seen))
    origin = np.fromiter(map(code_of.__getitem__, pairs), dtype=np.int64, count=len(pairs))
    return [Provenance({key}) for key in seen], origin


def _origin(part: Envelope, stamp: Any, plain: str) -> Origin:
    batch_id, node, job = stamp
    return (
        part.scenario,
        part.config_version,
        str(batch_id or plain),
        str(node) if node else None,
        str(job) if job else None,
    )


def _shared_lineage(part: Envelope) -> tuple[Any, Any, Any] | None:
    ids = part.meta.get(LINEAGE_META)
    if not isinstance(ids, dict):
        return None
    return (ids.get("batch_id"), ids.get("node_id"), ids.get("job_id_hash"))


def _lineage_ids(record: Record) -> tuple[Any, Any, Any]:
    lineage = record.get("lineage") if isinstance(record, dict) else None
    if not isinstance(lineage, dict):
        return (None, None, None)
    return (lineage.get("batch_id"), lineage.get("node_id"), lineage.get("job_id_hash"))
