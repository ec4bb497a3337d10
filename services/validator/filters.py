"""Business-rule filters of scenarios with ``filter: true`` (``config.filters``).

A record that any rule matches is set aside under the first matching rule's name: it is
kept in the error bucket under ``filtered/`` and counted, never silently dropped. Rules
compare one field of the reading (``sensor_data``); a comparison between incompatible
types (a missing field against a number) does not match.

``is_null`` matches a missing or null field; with ``value: false`` it matches a present one.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from sensorpipe.config import FilterRule

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}

Predicate = Callable[[dict[str, Any]], bool]


def _same_kind(a: Any, b: Any) -> bool:
    """Booleans never equal numbers here (JSON true is not 1)."""
    return isinstance(a, bool) == isinstance(b, bool)


ValueTest = Callable[[Any], bool]


def compile_rule(rule: FilterRule) -> Predicate:
    """The rule over a reading: its test of the one field it reads."""
    field, test = rule.field, compile_test(rule)
    return lambda data: test(data.get(field))


def compile_test(rule: FilterRule) -> ValueTest:
    """The rule over the value of its field (None when missing or null)."""
    target, op = rule.value, rule.op
    if op == "is_null":
        want_null = target is None or target is True
        return lambda value: (value is None) == want_null
    if op in ("in", "not_in"):
        members = list(target) if isinstance(target, (list, tuple, set)) else [target]
        inside = op == "in"

        def membership(value: Any) -> bool:
            hit = any(value == m and _same_kind(value, m) for m in members)
            return hit == inside

        return membership
    compare = _COMPARE[op]

    def compared(value: Any) -> bool:
        if value is None or not _same_kind(value, target):
            return op == "ne"
        try:
            return bool(compare(value, target))
        except TypeError:
            return False

    return compared


class BusinessFilter:
    def __init__(self, rules: Sequence[FilterRule]) -> None:
        self._rules = tuple((rule.name, compile_rule(rule)) for rule in rules)
        self._tests = tuple((rule.name, rule.field, compile_test(rule)) for rule in rules)
        self.rule_names = tuple(name for name, _ in self._rules)

    def match(self, data: dict[str, Any]) -> str | None:
        """Name of the first rule that sets the reading aside, or None to keep it."""
        for name, predicate in self._rules:
            if predicate(data):
                return name
        return None

    def match_values(
        self, values_of: Callable[[str], list[Any]], rows: Sequence[int]
    ) -> dict[int, str]:
        """:meth:`match` for many readings held as columns: ``values_of(field)`` gives
        a field's value in every row (None when missing); the rows of ``rows`` that a
        rule sets aside, each with its first matching rule's name."""
        found: dict[int, str] = {}
        for name, field, test in self._tests:
            values = values_of(field)
            for row in rows:
                if row not in found and test(values[row]):
                    found[row] = name
        return found
