"""Settings of the notifier beyond the pipeline config's ``notification`` section.

The burst rule itself (``min_anomalies``, ``window_seconds``, ``cooldown_seconds``) lives in
``pipeline-config-v2.yaml``; the knobs here say how long to wait for out-of-order input.
Environment: ``SENSORPIPE_NOTIFIER_<NAME>``. Unset values follow the windowing section
(the same stream, the same lateness).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe.config import PipelineConfig

_US = 1_000_000


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_NOTIFIER_", extra="ignore")

    # Event-time lateness tolerated; default windowing.grace_seconds.
    grace_seconds: float | None = Field(default=None, ge=0)
    # A source quiet this long (processing time) stops holding decisions back: what
    # was seen of it is final; default windowing.idle_flush_seconds.
    idle_flush_seconds: float | None = Field(default=None, gt=0)
    # The checkpoint (and the bursts decided) is written after every received batch and
    # on idle ticks; within one received batch, also once this much time passed.
    commit_interval_seconds: float = Field(default=0.25, ge=0, le=60)
    max_in_flight: int = Field(default=500, ge=20, le=100_000)
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
    commit_interval_s: float
    max_in_flight: int
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
    return ResolvedSettings(
        rules=BurstRules.from_seconds(n.min_anomalies, n.window_seconds, n.cooldown_seconds, grace),
        idle_flush_s=idle,
        commit_interval_s=own.commit_interval_seconds,
        max_in_flight=own.max_in_flight,
        record_prefix=own.record_prefix.strip("/"),
    )
