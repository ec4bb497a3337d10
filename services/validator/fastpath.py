"""One generated predicate that says whether a reading passes the whole spec.

Calling a closure per field costs more than the checks themselves, so for the common
case (a valid reading) the spec is turned into the source of a single function with
every check inlined. Only identifiers the generator makes up appear in that source;
every value from the spec (field names, limits, enums, patterns) is bound in the
function's namespace, so a spec cannot inject code. A False answer only means "not
certainly valid": the caller then runs the per-field checks that report each error.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sensorpipe.config.spec import FieldSpec, ValidationSpec

AllValid = Callable[[dict[str, Any], float], bool]
_FINITE = sys.float_info.max  # finite limits also turn away inf (and NaN fails any <=)


_REMEMBERED = 4096


def _remembering(search: Callable[[str], Any]) -> tuple[set[str], Callable[[str], bool]]:
    """Pattern fields (sensor ids, locations, versions) repeat a few values endlessly:
    a set of values already seen to match is cheaper than running the regex again."""
    seen: set[str] = set()

    def matches(value: str) -> bool:
        if search(value) is None:
            return False
        if len(seen) < _REMEMBERED:
            seen.add(value)
        return True

    return seen, matches


def _frozen(values: list[Any] | None) -> frozenset[Any] | None:
    try:
        return None if values is None else frozenset(values)
    except TypeError:
        return None


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# C0 control characters and DEL: invalid in text unless the spec allows them.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> bool:
    return CONTROL_CHARACTER.search(value) is None


def _condition(
    i: int, spec: FieldSpec, env: dict[str, Any], full_check: Any, *, allow_control: bool
) -> str:
    """A Python expression over ``v`` that is True only when every check passes."""
    allowed = _frozen(spec.enum)
    if spec.type == "timestamp" or (spec.enum is not None and allowed is None):
        # Timestamps need parsing, unhashable enums a list scan: call the full check.
        env[f"full{i}"] = full_check
        return f"full{i}(v, latest) is None"
    parts: list[str]
    if spec.type in ("number", "integer"):
        # Integers: within the spec's limits and 64 bits; floats: within the limits,
        # which are finite, so inf fails them and NaN fails any comparison.
        env[f"ilo{i}"] = _INT64_MIN if spec.min is None else max(spec.min, _INT64_MIN)
        env[f"ihi{i}"] = _INT64_MAX if spec.max is None else min(spec.max, _INT64_MAX)
        whole = f"(type(v) is int and ilo{i} <= v <= ihi{i})"
        if spec.type == "integer":
            parts = [whole]
        else:
            env[f"lo{i}"] = -_FINITE if spec.min is None else spec.min
            env[f"hi{i}"] = _FINITE if spec.max is None else spec.max
            parts = [f"((type(v) is float and lo{i} <= v <= hi{i}) or {whole})"]
    elif spec.type == "string":
        parts = ["type(v) is str"]
        if not allow_control:
            # Printable text has no control character; other text (RTL marks) is searched.
            env["no_control"] = _no_control
            parts.append("(v.isprintable() or no_control(v))")
    else:
        parts = ["type(v) is bool"]
    if allowed is not None:
        env[f"allowed{i}"] = allowed
        parts.append(f"v in allowed{i}")
    if spec.pattern is not None:
        env[f"seen{i}"], env[f"matches{i}"] = _remembering(re.compile(spec.pattern).search)
        parts.append(f"(v in seen{i} or matches{i}(v))")
    return " and ".join(parts)


def generate_all_valid(
    spec: ValidationSpec,
    full_checks: Mapping[str, Any],
    record_checks: Sequence[Callable[[dict[str, Any]], Any]],
) -> AllValid:
    env: dict[str, Any] = {"type": type}
    lines = ["    get = data.get"]
    for i, (name, field) in enumerate(spec.fields.items()):
        env[f"name{i}"] = name
        condition = _condition(
            i, field, env, full_checks[name], allow_control=spec.strings.allow_control_characters
        )
        lines.append(f"    v = get(name{i})")
        if field.required:
            lines.append(f"    if v is None or not ({condition}): return False")
        else:
            lines.append(f"    if v is not None and not ({condition}): return False")
    for j, check in enumerate(record_checks):
        env[f"record{j}"] = check
        lines.append(f"    if record{j}(data) is not None: return False")
    lines.append("    return True")
    # Bound as keyword defaults, the spec's values are fast locals, not global lookups.
    signature = ", ".join(f"{key}={key}" for key in env)
    source = "\n".join([f"def all_valid(data, latest, *, {signature}):", *lines]) + "\n"
    namespace: dict[str, Any] = dict(env)
    exec(compile(source, f"<all_valid {spec.name} {spec.spec_version}>", "exec"), namespace)  # noqa: S102
    function: AllValid = namespace["all_valid"]
    return function
