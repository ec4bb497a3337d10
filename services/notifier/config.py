"""Settings of the notifier beyond the pipeline config's ``notification`` section.

The burst rule itself (``min_anomalies``, ``window_seconds``, ``cooldown_seconds``) lives in
``pipeline-config-v2.yaml``; the knobs here say how long to wait for out-of-order input.
Environment: ``SENSORPIPE_NOTIFIER_<NAME>``. Unset values follow the windowing section
(the same stream, the same lateness) and the queue's visibility timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe.config import PipelineConfig

_US = 1_000_000


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_NOTIFIER_", extra="ignore")

    # Event-time lateness tolerated per location; default windowing.grace_seconds.
    grace_seconds: float | None = Field(default=None, ge=0)
    # Wall-clock quiet time after which a location's pending anomalies are final;
    # default windowing.idle_flush_seconds.
    idle_flush_seconds: float | None = Field(default=None, gt=0)
    # After start-up no decision is made for this long, so messages a crashed
    # predecessor held come back first; default: visibility timeout + 2 s.
    recovery_hold_seconds: float | None = Field(default=None, ge=0)
    # Delivery fingerprints remembered per location to recognise redeliveries.
    remembered_deliveries: int = Field(default=256, ge=1, le=100_000)
    state_prefix: str = "notifier-state"
    record_prefix: str = "notifications"


@dataclass(frozen=True, slots=True)
class BurstRules:
    """The burst definition's parameters, in integer microseconds of event time."""

    min_anomalies: int
    window_us: int
    cooldown_us: int
    grace_us: int

    @classmethod
    def from_seconds(
        cls, min_anomalies: int, window_s: float, cooldown_s: float, grace_s: float
    ) -> BurstRules:
        return cls(
            min_anomalies=min_anomalies,
            window_us=round(window_s * _US),
            cooldown_us=round(cooldown_s * _US),
            grace_us=round(grace_s * _US),
        )


@dataclass(frozen=True, slots=True)
class ResolvedSettings:
    """Everything the handler needs, with every default filled in."""

    rules: BurstRules
    idle_flush_s: float
    recovery_hold_s: float
    remembered_deliveries: int
    state_prefix: str
    record_prefix: str


def resolve(config: PipelineConfig, settings: NotifierSettings | None = None) -> ResolvedSettings:
    own = settings or NotifierSettings()
    n = config.notification
    grace = own.grace_seconds if own.grace_seconds is not None else config.windowing.grace_seconds
    idle = (
        own.idle_flush_seconds
        if own.idle_flush_seconds is not None
        else config.windowing.idle_flush_seconds
    )
    hold = (
        own.recovery_hold_seconds
        if own.recovery_hold_seconds is not None
        else config.queues.visibility_timeout_seconds + 2.0
    )
    return ResolvedSettings(
        rules=BurstRules.from_seconds(n.min_anomalies, n.window_seconds, n.cooldown_seconds, grace),
        idle_flush_s=idle,
        recovery_hold_s=hold,
        remembered_deliveries=own.remembered_deliveries,
        state_prefix=own.state_prefix.strip("/"),
        record_prefix=own.record_prefix.strip("/"),
    )
