"""Checks on everything a caller passes in, run before any SQL sees it."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from sensorpipe.controller.errors import (
    InvalidOperatorError,
    InvalidReasonError,
    InvalidScenarioNameError,
    UnknownScenarioError,
)

# Scenario names end up in S3 keys, metrics and logs: keep them boring.
SCENARIO_NAME_PATTERN = "[a-z][a-z0-9_-]{0,62}"
MAX_OPERATOR_LENGTH = 200
MAX_REASON_LENGTH = 2000

_SCENARIO_NAME = re.compile(SCENARIO_NAME_PATTERN)


def validate_scenario_name(
    scenario: str, allowed: Collection[str] | None = None, *, db_path: Path | None = None
) -> str:
    """Check the pattern (and membership in ``allowed``) before any SQL sees the name."""
    if not isinstance(scenario, str) or not _SCENARIO_NAME.fullmatch(scenario):
        raise InvalidScenarioNameError(
            str(scenario), pattern=SCENARIO_NAME_PATTERN, db_path=db_path
        )
    if allowed is not None and scenario not in allowed:
        raise UnknownScenarioError(scenario, valid=allowed, db_path=db_path)
    return scenario


def validate_operator(by: str, *, db_path: Path | None = None) -> str:
    """The ``--by`` value, stripped; every change must say who made it."""
    operator = by.strip() if isinstance(by, str) else ""
    if not operator:
        raise InvalidOperatorError(
            "the operator (--by) is empty; every change must say who made it",
            db_path=db_path,
            hint='pass --by "your name or team"',
        )
    if len(operator) > MAX_OPERATOR_LENGTH or _has_control_characters(operator):
        raise InvalidOperatorError(
            f"the operator (--by) {operator[:40]!r} is too long or has control characters",
            db_path=db_path,
            hint=f"use at most {MAX_OPERATOR_LENGTH} printable characters",
        )
    return operator


def metadata_json(
    reason: str | None, extra: Mapping[str, Any] | None = None, *, db_path: Path | None = None
) -> str:
    """The ``metadata`` column: extra fields plus the reason, as a JSON object."""
    metadata: dict[str, Any] = dict(extra or {})
    problem = None
    if "reason" in metadata:
        problem = "extra metadata must not contain 'reason'; pass it as the reason"
    elif not all(isinstance(key, str) for key in metadata):
        problem = "extra metadata keys must be strings"
    elif reason is not None and (
        len(reason) > MAX_REASON_LENGTH or _has_control_characters(reason)
    ):
        problem = f"the reason is longer than {MAX_REASON_LENGTH} or has control characters"
    if reason is not None and reason.strip():
        metadata["reason"] = reason.strip()
    try:
        text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problem = problem or f"extra metadata is not JSON: {exc}"
    if problem is not None:
        raise InvalidReasonError(problem, db_path=db_path)
    return text


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)
