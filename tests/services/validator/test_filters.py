"""Business-rule filters of the ``filtered`` scenario."""

from __future__ import annotations

from typing import Any

import pytest

from sensorpipe.config import FilterRule
from services.validator.filters import BusinessFilter, compile_rule
from tests.services.validator.rows import reading


def rule(op: str, value: Any = None, field: str = "temperature") -> FilterRule:
    return FilterRule(name=f"r_{op}", field=field, op=op, value=value)


@pytest.mark.parametrize(
    ("op", "value", "temperature", "matches"),
    [
        ("eq", 20, 20, True),
        ("eq", 20, 20.5, False),
        ("ne", 20, 21, True),
        ("ne", 20, 20, False),
        ("lt", 20, 19.9, True),
        ("lt", 20, 20, False),
        ("le", 20, 20, True),
        ("gt", 20, 20.1, True),
        ("gt", 20, 20, False),
        ("ge", 20, 20, True),
        ("in", [1, 2, 3], 2, True),
        ("in", [1, 2, 3], 4, False),
        ("not_in", [1, 2, 3], 4, True),
        ("not_in", [1, 2, 3], 1, False),
    ],
)
def test_operators(op: str, value: Any, temperature: float, matches: bool) -> None:
    assert compile_rule(rule(op, value))(reading(1, temperature=temperature)) is matches


def test_is_null_matches_missing_and_null_and_can_be_inverted() -> None:
    is_null = compile_rule(rule("is_null", field="pressure"))
    assert is_null(reading(1, pressure=None))
    assert is_null(reading(1, pressure="<missing>"))
    assert not is_null(reading(1, pressure=1000.0))
    not_null = compile_rule(rule("is_null", False, field="pressure"))
    assert not_null(reading(1, pressure=1000.0))
    assert not not_null(reading(1, pressure=None))


def test_incompatible_types_do_not_match() -> None:
    assert not compile_rule(rule("lt", 20, field="location"))(reading(1))
    assert not compile_rule(rule("gt", 20, field="pressure"))(reading(1, pressure=None))
    # JSON true is not the number 1.
    assert not compile_rule(rule("eq", True, field="status_code"))(reading(1, status_code=1))
    assert not compile_rule(rule("in", [True], field="status_code"))(reading(1, status_code=1))


def test_the_first_matching_rule_names_the_reason() -> None:
    business = BusinessFilter(
        [
            FilterRule(name="faulty", field="status_code", op="eq", value=1),
            FilterRule(name="hot", field="temperature", op="gt", value=30),
        ]
    )
    assert business.match(reading(1)) is None
    assert business.match(reading(1, temperature=35.0)) == "hot"
    assert business.match(reading(1, temperature=35.0, status_code=1)) == "faulty"
    assert business.rule_names == ("faulty", "hot")


def test_no_rules_match_nothing() -> None:
    assert BusinessFilter([]).match(reading(1, status_code=1)) is None
