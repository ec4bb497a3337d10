"""Values the controller returns: a log row, the outcome of a set, a change seen by watch."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sensorpipe.controller.errors import CorruptConfigRowError


@dataclass(frozen=True, slots=True)
class ActiveScenario:
    """One row of the log; the newest is the active scenario, its id the config version."""

    scenario: str
    config_version: int
    updated_at: datetime
    updated_by: str
    reason: str | None
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "config_version": self.config_version,
            "updated_at": self.updated_at.isoformat(timespec="microseconds"),
            "updated_by": self.updated_by,
            "reason": self.reason,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class SetResult:
    """Outcome of ``set``: ``changed`` is False when the scenario was already active.

    ``previous`` is None only if the log was empty (rows removed by hand).
    """

    changed: bool
    previous: ActiveScenario | None
    current: ActiveScenario


@dataclass(frozen=True, slots=True)
class Change:
    """A scenario change seen by ``watch``: from, to, who, why, when."""

    previous: ActiveScenario | None
    current: ActiveScenario

    @property
    def from_scenario(self) -> str | None:
        return self.previous.scenario if self.previous is not None else None

    @property
    def to_scenario(self) -> str:
        return self.current.scenario

    @property
    def who(self) -> str:
        return self.current.updated_by

    @property
    def why(self) -> str | None:
        return self.current.reason

    @property
    def when(self) -> datetime:
        return self.current.updated_at

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.from_scenario, "to": self.to_scenario, **self.current.to_dict()}


def parse_row(db_path: Path, row: Any) -> ActiveScenario:
    """Turn ``(id, pipeline_type, updated_at, updated_by, metadata)`` into a value."""
    row_id, scenario, updated_at, updated_by, metadata_text = row
    try:
        when = datetime.fromisoformat(str(updated_at))
        metadata = json.loads(metadata_text)
    except (TypeError, ValueError) as exc:
        raise CorruptConfigRowError(db_path=db_path, row_id=int(row_id), problem=str(exc)) from exc
    if not isinstance(metadata, dict):
        raise CorruptConfigRowError(
            db_path=db_path, row_id=int(row_id), problem="metadata is not a JSON object"
        )
    reason = metadata.get("reason")
    return ActiveScenario(
        scenario=str(scenario),
        config_version=int(row_id),
        updated_at=when if when.tzinfo is not None else when.replace(tzinfo=UTC),
        updated_by=str(updated_by),
        reason=reason if isinstance(reason, str) else None,
        metadata=MappingProxyType(metadata),
    )
