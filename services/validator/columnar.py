"""The spec as vectorised checks over a columnar batch: which readings are certainly valid.

The exact checks (:mod:`services.validator.rules`) describe every error of a reading,
one Python call per field. On a batch held as an Arrow table (:mod:`sensorpipe.columns`)
this module first answers the common question for the whole batch at once, in Arrow's
and numpy's kernels: which rows pass every field check and every cross-field rule.
Like the generated predicate (:mod:`services.validator.fastpath`), a row it does not
clear is only "not certainly valid": the batch validator hands those rows, as dicts,
to the exact checks, which decide and describe. A row is cleared only where this
module is sure the exact checks would find nothing, so the two engines give the same
report (``tests/services/validator/test_columnar.py`` holds them to it).

How a field's values are cleared, by the spec's type and the column's:
- number / integer without an enum, over int64 or float64 (integer: int64 only):
  compared with the limits in numpy, as the fast path does (finite limits turn away
  inf, NaN fails every comparison, integers beyond 2**53 are left to the exact checks);
- timestamp over text: a strict ISO-8601 shape (``YYYY-MM-DDTHH:MM:SS[.ffffff]`` and ``Z``
  or ``±HH:MM``, year 1000 or later), read by Arrow's parser, within years 1-9999 and not
  later than the future bound; any other spelling goes to the exact reader;
- everything else (strings, booleans, enums): the exact field check run once per
  distinct value of the column (sensor ids, locations and versions repeat a few values),
  then looked up per row;
- a column of JSON text (values of mixed types: an edge writing 21 and 21.5, or text in
  one row of a number column): numbers read from the text where it is a JSON number,
  then compared; other fields checked once per distinct text;
- a column of another type than the spec's: not cleared where it holds a value.
Missing and null are both "no value" here: fine for an optional field, never cleared
for a required one (the exact checks say which of the two it was).
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sensorpipe.columns import JSON_TEXT, values_of
from sensorpipe.config.spec import FieldSpec, ValidationSpec
from sensorpipe.records import EARLIEST_US, LATEST_US
from services.validator.rules import INT64_MAX, INT64_MIN, FieldCheck

Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]

READING = "sensor_data"
_EXACT_INTEGERS = 2**53  # beyond this a float64 comparison could round the wrong way
_FINITE = float(np.finfo(np.float64).max)
_TIMESTAMP_SHAPE = (
    r"^[1-9]\d{3}-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
_UTC_MICROS = pa.timestamp("us", tz="UTC")
_JSON_INTEGER = r"^-?(?:0|[1-9]\d*)$"
_JSON_NUMBER = r"^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$"


class Readings:
    """The readings of a columnar batch: the ``sensor_data`` struct column's children.

    Args:
        rows: the batch's row count.
        present: where the record's ``sensor_data`` is an object.
        children: each key of the readings, its field (with the column's marks) and
            values (null where a row has no object, lacks the key or holds null).
    """

    def __init__(
        self, rows: int, present: Mask, children: dict[str, tuple[pa.Field[Any], pa.Array[Any]]]
    ) -> None:
        self.rows = rows
        self.present = present
        self.children = children
        self._values: dict[str, list[Any]] = {}

    @classmethod
    def of(cls, table: pa.Table) -> Readings | None:
        """The readings of ``table``, or None when its ``sensor_data`` is no struct
        column (no key, or values that are not all objects): then no row is cleared."""
        if READING not in table.column_names:
            return None
        column = table.column(READING)
        if not pa.types.is_struct(column.type):
            return None
        struct = cast(pa.StructArray, column.combine_chunks())
        present = _filled(struct.is_valid())
        children = {
            field.name: (field, child)
            for field, child in zip(struct.type, struct.flatten(), strict=True)
        }
        return cls(len(struct), present, children)

    def values(self, name: str) -> list[Any]:
        """A key's value in every row as Python, None where missing (``data.get(name)``)."""
        if name not in self._values:
            found = self.children.get(name)
            self._values[name] = [None] * self.rows if found is None else values_of(*found)
        return self._values[name]

    def floats(self, name: str) -> Floats:
        """A numeric key's values as float64, NaN where missing or not a number."""
        found = self.children.get(name)
        if found is not None and found[0].type in (pa.int64(), pa.float64()):
            return _float_values(found[1])
        values = np.full(self.rows, np.nan)
        if found is not None and _is_json(found[0]):
            numeric = _filled(pc.match_substring_regex(found[1], _JSON_NUMBER))
            if numeric.any():
                values[np.flatnonzero(numeric)] = _float_values(found[1].filter(pa.array(numeric)))
        return values

    def equals_one(self, name: str) -> tuple[Mask, Mask]:
        """Where ``data.get(name) == 1`` holds, and where that answer is known here."""
        found = self.children.get(name)
        known = np.ones(self.rows, dtype=np.bool_)
        if found is None:
            return np.zeros(self.rows, dtype=np.bool_), known
        field, array = found
        if _is_json(field):  # 1, 1.0 and true equal 1; no text, list or object does
            one = self.floats(name) == 1
            return one | _filled(pc.equal(array, pa.scalar("true", pa.string()))), known
        if field.type in (pa.int64(), pa.float64(), pa.bool_()):  # True == 1 in Python
            return _filled(pc.equal(array, pa.scalar(1).cast(field.type))), known
        return np.zeros(self.rows, dtype=np.bool_), known  # text, null: never 1

    def present_value(self, name: str) -> tuple[Mask, Mask]:
        """Where the key holds a value other than null and "", and where that is known."""
        found = self.children.get(name)
        known = np.ones(self.rows, dtype=np.bool_)
        if found is None:
            return np.zeros(self.rows, dtype=np.bool_), known
        field, array = found
        if _is_json(field):
            empty = pc.is_in(array, value_set=pa.array(["null", '""'], type=pa.string()))
            return _filled(array.is_valid()) & ~_filled(empty), known
        if field.type == pa.string():
            return _filled(pc.not_equal(array, pa.scalar("", pa.string()))), known
        return _filled(array.is_valid()), known


class ColumnarSpec:
    """The spec's field checks and cross-field rules over :class:`Readings`.

    Args:
        spec: the validation spec.
        checks: its exact field checks by name (``rules.compile_field``), run once per
            distinct value of the columns cleared that way.
        cross_field_kinds: the kinds of the spec's cross-field rules, in order.
    """

    def __init__(
        self, spec: ValidationSpec, checks: dict[str, FieldCheck], cross_field_kinds: list[str]
    ) -> None:
        self._fields = [(name, fs, checks[name]) for name, fs in spec.fields.items()]
        self._kinds = cross_field_kinds

    def cleared(self, readings: Readings, latest: float) -> Mask:
        """Rows whose reading the exact checks would find no error in."""
        ok = readings.present.copy()
        for name, spec, check in self._fields:
            if not ok.any():
                return ok
            ok &= _field_cleared(spec, check, readings.children.get(name), readings.rows, latest)
        for kind in self._kinds:
            if kind == "anomaly_type_requires_flag":
                one, one_known = readings.equals_one("anomaly_flag")
                other, other_known = readings.present_value("anomaly_type")
            else:  # status_code_matches_flag
                one, one_known = readings.equals_one("anomaly_flag")
                other, other_known = readings.equals_one("status_code")
            ok &= one_known & other_known & (one == other)
        return ok


def _field_cleared(
    spec: FieldSpec,
    check: FieldCheck,
    column: tuple[pa.Field[Any], pa.Array[Any]] | None,
    rows: int,
    latest: float,
) -> Mask:
    if column is None:  # no reading has the key
        return np.full(rows, not spec.required, dtype=np.bool_)
    field, array = column
    missing = _filled(array.is_null())
    if _is_json(field):
        missing |= _filled(pc.equal(array, pa.scalar("null", pa.string())))
        values_ok = _json_values_cleared(spec, check, array, latest)
    elif field.type == pa.null():
        values_ok = np.zeros(rows, dtype=np.bool_)
    else:
        values_ok = _values_cleared(spec, check, field.type, array, latest)
    return np.where(missing, not spec.required, values_ok)


def _json_values_cleared(
    spec: FieldSpec, check: FieldCheck, array: pa.Array[Any], latest: float
) -> Mask:
    """A column of JSON text (values of mixed types: an edge writing 21 and 21.5, or a
    row with text where numbers belong). Numbers are read from their text by Arrow
    where the text is a JSON number (an integer's has no fraction or exponent), and
    compared; any other field is checked once per distinct value."""
    if spec.type in ("number", "integer") and spec.enum is None:
        shape = _JSON_INTEGER if spec.type == "integer" else _JSON_NUMBER
        numeric = _filled(pc.match_substring_regex(array, shape))
        cleared = np.zeros(len(array), dtype=np.bool_)
        if numeric.any():
            values = _float_values(array.filter(pa.array(numeric)))
            cleared[np.flatnonzero(numeric)] = _in_limits(spec, values, integers=True)
        return cleared
    distinct = pc.unique(array.drop_null()).to_pylist()  # texts: nulls dropped
    passing = [
        text
        for text in distinct
        if text is not None
        and (value := orjson.loads(text)) is not None
        and check(value, latest) is None
    ]
    if not passing:
        return np.zeros(len(array), dtype=np.bool_)
    return _filled(pc.is_in(array, value_set=pa.array(passing, type=pa.string())))


def _in_limits(spec: FieldSpec, values: Floats, *, integers: bool) -> Mask:
    """Where numbers lie within the spec's limits (as the fast path compares them);
    ``integers``: some may be integers, cleared only where float64 holds them exactly."""
    if integers:
        lo = INT64_MIN if spec.min is None else max(spec.min, INT64_MIN)
        hi = INT64_MAX if spec.max is None else min(spec.max, INT64_MAX)
        return (np.abs(values) <= _EXACT_INTEGERS) & (values >= lo) & (values <= hi)
    lo = -_FINITE if spec.min is None else spec.min
    hi = _FINITE if spec.max is None else spec.max
    return (values >= lo) & (values <= hi)  # NaN fails both


def _values_cleared(
    spec: FieldSpec, check: FieldCheck, type_: pa.DataType, array: pa.Array[Any], latest: float
) -> Mask:
    """Where a present value passes the field's checks (anything at missing rows)."""
    rows = len(array)
    numeric = spec.type in ("number", "integer")
    if numeric and spec.enum is None and type_ == pa.int64():
        return _in_limits(spec, _float_values(array), integers=True)
    if spec.type == "number" and spec.enum is None and type_ == pa.float64():
        return _in_limits(spec, _float_values(array), integers=False)
    if spec.type == "timestamp":
        if type_ != pa.string():
            return np.zeros(rows, dtype=np.bool_)
        return _timestamps_cleared(array, latest)
    if not _same_type(spec.type, type_):
        return np.zeros(rows, dtype=np.bool_)
    return _distinct_values_cleared(check, array, latest)


def _same_type(kind: str, type_: pa.DataType) -> bool:
    """Whether a column of ``type_`` holds values of the spec's ``kind`` (the exact
    checks decide the rest: an integer column under a number field, say)."""
    if kind == "string":
        return bool(type_ == pa.string())
    if kind == "boolean":
        return bool(type_ == pa.bool_())
    if kind == "integer":
        return bool(type_ == pa.int64())
    return type_ in (pa.int64(), pa.float64())  # number


def _distinct_values_cleared(check: FieldCheck, array: pa.Array[Any], latest: float) -> Mask:
    distinct = pc.unique(array.drop_null())
    passing = [value for value in distinct.to_pylist() if check(value, latest) is None]
    if not passing:
        return np.zeros(len(array), dtype=np.bool_)
    return _filled(pc.is_in(array, value_set=pa.array(passing, type=array.type)))


def _timestamps_cleared(array: pa.Array[Any], latest: float) -> Mask:
    shaped = _filled(pc.match_substring_regex(array, _TIMESTAMP_SHAPE))
    cleared = np.zeros(len(array), dtype=np.bool_)
    if not shaped.any():
        return cleared
    try:
        stamps = pc.cast(array.filter(pa.array(shaped)), _UTC_MICROS)
    except pa.ArrowInvalid:  # a day no calendar has among them: each one read exactly
        return cleared
    at_us = stamps.cast(pa.int64()).to_numpy(zero_copy_only=False)
    # Later than ``latest`` (float seconds) is an error; integers compare exactly with
    # the bound's floor.
    bound = min(LATEST_US, math.floor(latest * 1_000_000))
    cleared[np.flatnonzero(shaped)] = (at_us >= EARLIEST_US) & (at_us <= bound)
    return cleared


def quality_column(
    spec_version: str, validated_at: str, rows: int, reasons: dict[int, list[str]]
) -> tuple[pa.Field[Any], pa.Array[Any]]:
    """The ``quality`` column of ``rows`` validated rows, as ``columns.table_of`` would
    make it of their ``quality`` dicts (``anomaly_reasons``, a list, is JSON text);
    ``reasons``: the anomaly reasons of the rows that have any."""
    texts = ["[]"] * rows
    anomalous = np.zeros(rows, dtype=np.bool_)
    for row, found in reasons.items():
        if found:
            texts[row] = orjson.dumps(found).decode()
            anomalous[row] = True
    fields: list[pa.Field[Any]] = [
        pa.field("spec_version", pa.string()),
        pa.field("validated_at", pa.string()),
        pa.field("anomalous", pa.bool_()),
        pa.field("anomaly_reasons", pa.string(), metadata={JSON_TEXT: b"1"}),
    ]
    array = pa.StructArray.from_arrays(
        [
            pa.array([spec_version] * rows, type=pa.string()),
            pa.array([validated_at] * rows, type=pa.string()),
            pa.array(anomalous),
            pa.array(texts, type=pa.string()),
        ],
        fields=fields,
    )
    return pa.field("quality", array.type), array


def _is_json(field: pa.Field[Any]) -> bool:
    return (field.metadata or {}).get(JSON_TEXT) == b"1"


def _filled(mask: pa.Array[Any]) -> Mask:
    """A boolean array as numpy, null as False."""
    filled = cast("pa.Array[Any]", pc.fill_null(mask, pa.scalar(False)))
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _float_values(array: pa.Array[Any]) -> Floats:
    values = array.cast(pa.float64(), safe=False).fill_null(math.nan)  # > 2**53: rounded
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
