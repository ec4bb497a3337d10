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


def compile_rule(rule: FilterRule) -> Predicate:
    field, target, op = rule.field, rule.value, rule.op
    if op == "is_null":
        want_null = target is None or target is True
        return lambda data: (data.get(field) is None) == want_null
    if op in ("in", "not_in"):
        members = list(target) if isinstance(target, (list, tuple, set)) else [target]
        inside = op == "in"

        def membership(data: dict[str, Any]) -> bool:
            value = data.get(field)
            hit = any(value == m and _same_kind(value, m) for m in members)
            return hit == inside

        return membership
    compare = _COMPARE[op]

    def compared(data: dict[str, Any]) -> bool:
        value = data.get(field)
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
        self.rule_names = tuple(name for name, _ in self._rules)

    def match(self, data: dict[str, Any]) -> str | None:
        """Name of the first rule that sets the reading aside, or None to keep it."""
        for name, predicate in self._rules:
            if predicate(data):
                return name
        return None
