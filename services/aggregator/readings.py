"""A batch's readings as columns: what the aggregator needs of every record, read once.

Records arrive as an Arrow table (a columnar envelope) or as dicts (a JSON one). From a
table the columns are taken as they are (:func:`_from_tables`: no dict per record);
from dicts one pass per column pulls out the sensor,
the exact instant (µs), the five metrics (NaN where missing) and the anomaly flag; the
rest of a record is looked at only for the few rows that become a window's first or
last reading, or a late line. Records that cannot be windowed (no sensor, no readable
timestamp) are set aside with the reason.

The quick path trusts what validation guarantees (numbers are numbers, not booleans);
batches of a scenario that does not validate, and any batch the quick path cannot read,
take the exact path, record by record, with the same result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sensorpipe.columns import ABSENT_IS_NULL, rows_of
from sensorpipe.envelope import Envelope, Record
from sensorpipe.lineage import META_KEY as LINEAGE_META
from sensorpipe.records import METRICS, event_time_us
from services.aggregator.output import json_safe
from services.aggregator.statistics import Floats, Ints
from services.aggregator.windows import Origin, Provenance

log = logging.getLogger(__name__)
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
# The largest metric magnitude the statistics take: squared deviations of a window's
# values, summed over millions of readings, stay finite (4e300 * 1e7 < 1.8e308).
LARGEST_VALUE = 1e150

# Why a record cannot be windowed (the ``reason`` of its unusable line and the code the
# aggregator counts it under).
NO_SENSOR_DATA = "no_sensor_data"
NO_SENSOR_ID = "no_sensor_id"
NO_EVENT_TIME = "no_event_time"
OUT_OF_RANGE = "event_time_out_of_range"
NOT_A_NUMBER = "metric_not_a_number"
UNUSABLE_REASONS = (NO_SENSOR_DATA, NO_SENSOR_ID, NO_EVENT_TIME, OUT_OF_RANGE, NOT_A_NUMBER)


@dataclass(slots=True)
class Unusable:
    record: Any  # as received: not necessarily even a dict
    reason: str  # one of UNUSABLE_REASONS
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
    records: Sequence[Record]  # a dict per row, made on demand when rows are tables
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
        """The row's location as documents and checkpoints can write it."""
        return json_safe(self.records[row]["sensor_data"].get("location"))


def placeable_range(size_us: int) -> tuple[int, int]:
    """The instants a reading may have for windows of ``size_us``: its window starts at or
    after 0001-01-01 and ends by 9999-12-31T23:59:59.999999 (UTC), so every instant of
    the window, its start and its end can be spelt as a datetime and a key."""
    first = -(-_MIN_US // size_us) * size_us  # the first window start >= year 1
    last = _MAX_US // size_us * size_us - 1  # the last instant of a window ending by then
    return first, last


def read_batch(parts: list[Envelope], *, validated: bool, size_us: int = 60_000_000) -> Readings:
    """The columns of a batch (its parts in order); ``validated``: every part's scenario
    validated its records, so the quick path may be tried; ``size_us``: the window
    length, which bounds the instants a reading may have (:func:`placeable_range`)."""
    bounds = placeable_range(size_us)
    if validated and parts and all(part.columnar for part in parts):
        try:
            return _from_tables(parts, bounds)
        except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            log.debug("columnar batch read record by record: %s", exc)
    records: list[Record] = []
    part_of: list[int] = []
    for index, part in enumerate(parts):
        records.extend(part.records)
        part_of.extend([index] * len(part.records))
    if validated:
        try:
            return _quick(records, part_of, parts, bounds)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            pass  # something the quick path does not expect: read it record by record
    return _exact(records, part_of, parts, bounds)


def _quick(
    records: list[Record], part_of: list[int], parts: list[Envelope], bounds: tuple[int, int]
) -> Readings:
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
    if at_us.min() < bounds[0] or at_us.max() > bounds[1]:
        raise ValueError("an instant outside the windows of years 1-9999")
    values = np.column_stack([table[i].to_numpy(zero_copy_only=False) for i in range(2, 7)])
    if int(np.isnan(values).sum()) != sum(table[i].null_count for i in range(2, 7)):
        raise ValueError("a NaN metric value (not null)")
    _check_quick_values(records, values)
    names = [str(name) for name in sensors.dictionary.to_pylist()]
    codes = sensors.indices.to_numpy().astype(np.int64)
    flags = routed.column(1)
    anomalous = None if flags.null_count else flags.to_numpy(zero_copy_only=False)
    return _columns(
        records, names, codes, at_us, values, part_of, parts, [], validated=True, marks=anomalous
    )


class TableRows(Sequence[Record]):
    """The records of a batch's tables, one dict made when a row is asked for (a
    window's first reading, a late line), never all of them."""

    def __init__(self, tables: list[pa.Table]) -> None:
        self._tables = tables
        self._ends = np.cumsum([t.num_rows for t in tables], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, row: int) -> Record:  # type: ignore[override]
        if not 0 <= row < len(self):
            raise IndexError(row)
        index = int(np.searchsorted(self._ends, row, side="right"))
        start = int(self._ends[index - 1]) if index else 0
        return rows_of(self._tables[index].slice(row - start, 1))[0]


def _from_tables(parts: list[Envelope], bounds: tuple[int, int]) -> Readings:
    """The quick path over columnar parts: each part's ``sensor_data`` children and
    ``anomalous`` column taken as Arrow arrays. Anything but the types validation and
    the router guarantee (string sensor ids and timestamps, numeric metrics, a boolean
    mark on every row) raises, and the batch is read record by record instead."""
    tables = [part.table for part in parts]
    sensor_ids, stamps, metrics, marks = [], [], [], []
    for table in tables:
        data = table.column("sensor_data")
        kind = table.schema.field("sensor_data").type
        if not pa.types.is_struct(kind) or data.null_count:
            raise TypeError("not every record has a sensor_data object")
        sensor_ids.append(_child(data, kind, "sensor_id", pa.string()))
        stamps.append(_child(data, kind, "timestamp", pa.string()))
        metrics.append([_child(data, kind, name, pa.float64()) for name in METRICS])
        mark = table.column("anomalous")
        if mark.type != pa.bool_() or mark.null_count:
            raise TypeError("not a boolean anomaly mark on every row")
        marks.append(mark)
    sensors = pa.chunked_array(sensor_ids, pa.string()).combine_chunks().dictionary_encode()
    instants = pc.cast(pa.chunked_array(stamps, pa.string()), _INSTANT).cast(pa.int64())
    if sensors.null_count or instants.null_count:
        raise ValueError("a reading without a sensor id or a timestamp")
    at_us = instants.to_numpy()
    if len(at_us) and (at_us.min() < bounds[0] or at_us.max() > bounds[1]):
        raise ValueError("an instant outside the windows of years 1-9999")
    columns = [
        pa.chunked_array([part[i] for part in metrics], pa.float64()) for i in range(len(METRICS))
    ]
    values = np.column_stack([c.to_numpy() for c in columns]).reshape(len(at_us), len(METRICS))
    if int(np.isnan(values).sum()) != sum(c.null_count for c in columns):
        raise ValueError("a NaN metric value (not null)")
    if np.any(np.abs(values) > LARGEST_VALUE):
        raise ValueError("a metric value beyond the statistics' range")
    part_of = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables]).tolist()
    anomalous = pa.chunked_array(marks, pa.bool_()).to_numpy()
    return _columns(
        TableRows(tables),
        [str(name) for name in sensors.dictionary.to_pylist()],
        sensors.indices.to_numpy().astype(np.int64),
        at_us,
        values,
        part_of,
        parts,
        [],
        validated=True,
        marks=anomalous,
    )


def _child(
    data: pa.ChunkedArray[Any], kind: pa.StructType, name: str, wanted: pa.DataType
) -> pa.ChunkedArray[Any]:
    """A ``sensor_data`` child as ``wanted`` (metrics: float64 from int64 or float64;
    a metric no record holds: nulls). Any other type raises."""
    index = kind.get_field_index(name)
    if index < 0:
        if wanted != pa.float64():
            raise KeyError(f"no {name} column")
        return pa.chunked_array([pa.nulls(len(data), pa.float64())])
    field_ = kind.field(index)
    if (field_.metadata or {}).keys() - {ABSENT_IS_NULL}:  # JSON text: not one type
        raise TypeError(f"{name} is not one typed column")
    child = cast("pa.ChunkedArray[Any]", pc.struct_field(data, index))
    numeric = (pa.float64(), pa.int64(), pa.null())
    if child.type == wanted or (wanted == pa.float64() and child.type in numeric):
        return child.cast(wanted)
    raise TypeError(f"{name} is {child.type}")


def _check_quick_values(records: list[Record], values: Floats) -> None:
    """What Arrow reads as a float but the exact path would not take: a value beyond
    :data:`LARGEST_VALUE`, and a boolean (read as 0.0 or 1.0: only rows holding a 0 or
    a 1 are looked at, in Python)."""
    if np.any(np.abs(values) > LARGEST_VALUE):
        raise ValueError("a metric value beyond the statistics' range")
    for row in np.flatnonzero(((values == 0.0) | (values == 1.0)).any(axis=1)).tolist():
        data = records[row]["sensor_data"]
        if any(type(data.get(name)) is bool for name in METRICS):
            raise ValueError("a boolean metric value")


def _exact(
    records: list[Record], part_of: list[int], parts: list[Envelope], bounds: tuple[int, int]
) -> Readings:
    kept: list[Record] = []
    kept_parts: list[int] = []
    sensors: list[str] = []
    instants: list[int] = []
    rows: list[list[float]] = []
    unusable: list[Unusable] = []
    for record, part in zip(records, part_of, strict=True):
        placed = _place(record, bounds)
        if isinstance(placed, Unusable):
            placed.part = part
            unusable.append(placed)
            continue
        sensor, at, row = placed
        kept.append(record)
        kept_parts.append(part)
        sensors.append(sensor)
        instants.append(at)
        rows.append(row)
    values = np.array(rows, dtype=np.float64).reshape(len(kept), len(METRICS))
    at_us = np.array(instants, dtype=np.int64)
    names = list(dict.fromkeys(sensors))  # distinct, in order of appearance
    index = {name: code for code, name in enumerate(names)}
    codes = np.fromiter(map(index.__getitem__, sensors), dtype=np.int64, count=len(sensors))
    return _columns(kept, names, codes, at_us, values, kept_parts, parts, unusable, validated=False)


def _place(record: Any, bounds: tuple[int, int]) -> tuple[str, int, list[float]] | Unusable:
    """A record's sensor, instant and metric values, or why it cannot be windowed."""
    data = record.get("sensor_data") if isinstance(record, dict) else None
    if not isinstance(data, dict):
        what = type(record).__name__ if not isinstance(record, dict) else "a record"
        return _unusable(record, NO_SENSOR_DATA, f"{what} without a sensor_data object")
    sensor, stamp = data.get("sensor_id"), data.get("timestamp")
    if not isinstance(sensor, str) or not sensor:
        shown = "missing" if sensor is None else f"{_shown(sensor)} (not non-empty text)"
        return _unusable(record, NO_SENSOR_ID, f"sensor_id is {shown}")
    at = event_time_us(stamp)
    if at is None and not _spelt_in_range(stamp):
        shown = _shown(stamp) if stamp is not None else "missing"
        return _unusable(
            record, NO_EVENT_TIME, f"timestamp {shown} is not an ISO-8601 time in years 1-9999"
        )
    if at is None or not bounds[0] <= at <= bounds[1]:
        return _unusable(
            record,
            OUT_OF_RANGE,
            f"timestamp {_shown(stamp)} is outside the windows of years 1-9999 (UTC) that "
            "window documents and keys can spell",
        )
    row = []
    for name in METRICS:
        value, problem = metric_value(data.get(name))
        if problem:
            return _unusable(
                record, NOT_A_NUMBER, f"metric {name!r} is {_shown(data.get(name))}: {problem}"
            )
        row.append(value)
    return sensor, at, row


def _spelt_in_range(stamp: Any) -> bool:
    """An ISO-8601 time in years 1-9999 as written (its UTC instant may not be)."""
    try:
        datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return False
    return True


def metric_value(value: Any) -> tuple[float, str | None]:
    """A metric value as a float (NaN when null or absent: *missing*), or the problem
    that makes its reading unusable."""
    if value is None:
        return math.nan, None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan, f"{type(value).__name__}, not a number"
    try:
        number = float(value)
    except OverflowError:
        return math.nan, f"beyond +-{LARGEST_VALUE:g}"
    if not math.isfinite(number):
        return math.nan, "not a finite number"
    if abs(number) > LARGEST_VALUE:
        return math.nan, f"beyond +-{LARGEST_VALUE:g}"
    return number, None


def _unusable(record: Any, reason: str, detail: str) -> Unusable:
    return Unusable(record, reason, detail, -1)


def _shown(value: Any) -> str:
    """A value for a message: its repr, cut to 64 characters."""
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _columns(
    records: Sequence[Record],
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


def _anomalous(records: Sequence[Record], *, validated: bool) -> npt.NDArray[np.bool_]:
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
    records: Sequence[Record], part_of: list[int], parts: list[Envelope]
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
        pairs = list(zip(part_of, stamps, strict=True))
        distinct = list(dict.fromkeys(pairs))  # the distinct (part, stamp), a few
    except (KeyError, TypeError):  # a stamp incomplete, or with an object or list inside
        stamps = [_lineage_ids(r) for r in records]
        pairs = list(zip(part_of, stamps, strict=True))
        distinct = list(dict.fromkeys(pairs))
    code_of: dict[tuple[int, Any], int] = {}
    for index, stamp in distinct:
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


def _lineage_ids(record: Record) -> tuple[str | None, str | None, str | None]:
    """A record's lineage ids as text (hashable, whatever the stamp holds)."""
    lineage = record.get("lineage") if isinstance(record, dict) else None
    if not isinstance(lineage, dict):
        return (None, None, None)
    ids = (lineage.get("batch_id"), lineage.get("node_id"), lineage.get("job_id_hash"))
    return (_text(ids[0]), _text(ids[1]), _text(ids[2]))


def _text(value: Any) -> str | None:
    return str(value) if value else None
