"""The scenario a batch is stamped with: the controller's, else the last one known.

The uploader reads the active scenario at the start of every batch. The controller file
is opened read-only and never created (``PipelineController.open_existing``): a deleted
file must not become a fresh one seeded ``raw``. Every scenario read is remembered beside
the checkpoint (``<checkpoint>.scenario.json``, written atomically), so while the file is
missing, corrupt or locked beyond the retry budget the uploader goes on sending under the
last known scenario and config version: it says so at WARNING once per change of state,
shows ``degraded`` in ``/healthz`` and sets ``sensorpipe_uploader_controller_available``
to 0. With no scenario known at all (the first start ever) it sends nothing and waits.
It never invents a scenario.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from edge.uploader import metrics
from edge.uploader.checkpoint import write_atomically
from edge.uploader.errors import CheckpointError, StampError
from sensorpipe.controller import (
    ActiveScenario,
    ControllerError,
    DatabaseLockedError,
    PipelineController,
)

log = logging.getLogger("edge.uploader")

_VERSION = 1
# A batch waits at most this long for a locked controller before using the last known.
DEFAULT_LOCK_TIMEOUT_S = 1.0


class ScenarioReader(Protocol):
    def active(self) -> ActiveScenario: ...


@dataclass(frozen=True, slots=True)
class Stamp:
    scenario: str
    config_version: int


def last_known_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}.scenario.json")


class LastKnownStore:
    """The last scenario read from the controller, durably."""

    def __init__(self, path: Path, *, write: bool = True) -> None:
        self.path = Path(path)
        self.write = write

    def load(self) -> Stamp | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != _VERSION:
                raise ValueError(f"version {data.get('version')!r} is not {_VERSION}")
            return Stamp(str(data["scenario"]), int(data["config_version"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Only a fallback: the next readable controller rewrites it.
            log.warning("last known scenario %s is unreadable (%s); ignoring it", self.path, exc)
            return None

    def save(self, stamp: Stamp, controller: str) -> None:
        if not self.write:
            return
        data = {
            "version": _VERSION,
            "scenario": stamp.scenario,
            "config_version": stamp.config_version,
            "controller": controller,
            "read_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        try:
            write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
        except OSError as exc:
            raise CheckpointError(
                f"cannot write the last known scenario {self.path}: {exc.strerror}",
                hint="check disk space and permissions of the state directory",
            ) from exc


class ControllerReader:
    """Reads an existing controller file read-only, reopening it after any error."""

    def __init__(
        self,
        path: Path,
        valid_scenarios: Collection[str],
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.valid_scenarios = tuple(valid_scenarios)
        self.lock_timeout_s = lock_timeout_s
        self._controller: PipelineController | None = None

    def active(self) -> ActiveScenario:
        try:
            if self._controller is None:
                self._controller = PipelineController.open_existing(
                    self.path, self.valid_scenarios, lock_timeout_s=self.lock_timeout_s
                )
            return self._controller.active()
        except ControllerError:
            self._controller = None  # a replaced or repaired file is opened afresh
            raise


class StampKeeper:
    """Decides each batch's stamp and whether the controller is available."""

    def __init__(
        self,
        controller: ScenarioReader,
        store: LastKnownStore,
        known_scenarios: Collection[str],
    ) -> None:
        self.controller = controller
        self.store = store
        self.known_scenarios = frozenset(known_scenarios)
        self.last: Stamp | None = store.load()
        self.available: bool | None = None  # None: not read yet
        self.problem: str | None = None  # why the controller is unavailable
        self._kind: str | None = None

    def stamp(self) -> Stamp:
        try:
            active = self.controller.active()
        except ControllerError as exc:
            return self._fallback(exc)
        self._available(active)
        stamp = Stamp(active.scenario, active.config_version)
        if active.scenario not in self.known_scenarios:
            raise StampError(
                f"active scenario {active.scenario!r} (config version {active.config_version}) "
                "has no route in the pipeline config; holding rows at the edge",
                hint="add the scenario to the config's scenarios table or switch to a known one",
            )
        if stamp != self.last:
            self.store.save(stamp, self.path)
            self.last = stamp
        return stamp

    @property
    def path(self) -> str:
        return str(getattr(self.controller, "path", getattr(self.controller, "db_path", "?")))

    def status(self) -> tuple[str, str | None]:
        """("ok" | "degraded" | "unhealthy", why) for /healthz."""
        if self.available is not False:
            return "ok", None
        if self.last is None:
            return "unhealthy", (
                f"controller unreadable ({self.problem}) and no scenario known yet: not sending"
            )
        return "degraded", (
            f"controller unreadable ({self.problem}); sending under the last known scenario "
            f"{self.last.scenario!r} (config version {self.last.config_version})"
        )

    def health(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "available": self.available,
            "problem": self.problem,
            "last_known": (
                {"scenario": self.last.scenario, "config_version": self.last.config_version}
                if self.last
                else None
            ),
        }

    def _available(self, active: ActiveScenario) -> None:
        metrics.CONTROLLER_AVAILABLE.set(1)
        if self.available is False:
            log.warning(
                "pipeline controller %s is readable again: scenario %r (config version %d)",
                self.path,
                active.scenario,
                active.config_version,
            )
        self.available, self.problem, self._kind = True, None, None

    def _fallback(self, exc: ControllerError) -> Stamp:
        metrics.CONTROLLER_AVAILABLE.set(0)
        kind = _kind(exc)
        self.available, self.problem = False, f"{kind}: {exc}"
        if kind != self._kind:
            self._kind = kind
            if self.last is None:
                log.warning(
                    "pipeline controller %s is %s (%s) and no scenario was ever read: "
                    "sending nothing until it is readable",
                    self.path,
                    kind,
                    exc,
                )
            else:
                log.warning(
                    "pipeline controller %s is %s (%s): sending under the last known scenario "
                    "%r (config version %d) until it is readable again",
                    self.path,
                    kind,
                    exc,
                    self.last.scenario,
                    self.last.config_version,
                )
        if self.last is None:
            raise StampError(  # details in the log line above, once per change of state
                f"no scenario known yet and the pipeline controller {self.path} is {kind}: "
                "not sending until it is readable",
                hint="create it with `pipeline-controller set SCENARIO --by WHO`; the uploader "
                "never invents a scenario",
            )
        return self.last


def _kind(exc: ControllerError) -> str:
    if isinstance(exc, DatabaseLockedError):
        return "locked"
    if exc.db_path is not None and not os.path.exists(exc.db_path):
        return "missing"
    return "unreadable"
