"""Typed model of ``pipeline-config-v2.yaml``: buckets, queues, scenarios, stages.

Every value can be overridden from the environment with ``SENSORPIPE__`` plus the
upper-case key path joined by ``__`` (for example ``SENSORPIPE__WINDOWING__GRACE_SECONDS=5``);
the environment wins over the file. The loader applies the overrides (see
``sensorpipe.config.overrides``), so the model itself never reads the process environment.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensorpipe.config.errors import FieldProblem
from sensorpipe.scenarios import BUILTIN_SCENARIOS, DEFAULT_SCENARIO

SQS_MAX_MESSAGE_BYTES = 1024 * 1024  # SQS's largest message, body and attributes
# Room kept for the attributes a consumer adds when it moves a message to its DLQ: a
# reason of at most 1,024 characters (up to 4 bytes each in UTF-8) and two short names.
DLQ_HEADROOM_BYTES = 8 * 1024

_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}$")
_SCENARIO_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a config file must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Destination(StrEnum):
    """Where the router may send a batch's records."""

    RAW = "raw"
    SCHEMATIZED = "schematized"
    ARCHIVAL = "archival"
    AGGREGATOR = "aggregator"
    NOTIFIER = "notifier"


class BucketKind(StrEnum):
    RAW = "raw"
    SCHEMATIZED = "schematized"
    ERROR = "error"
    ARCHIVAL = "archival"
    AGGREGATED = "aggregated"


class PipelineSection(_Strict):
    name: str = "sensorpipe"
    version: str = "2.0.0"
    controller_db: str = "state/pipeline_config.db"
    default_scenario: str = DEFAULT_SCENARIO


class EncryptionSettings(_Strict):
    mode: Literal["sse-s3", "sse-kms"] = "sse-s3"
    kms_key_id: str | None = None

    @model_validator(mode="after")
    def _kms_needs_key(self) -> EncryptionSettings:
        if self.mode == "sse-kms" and not self.kms_key_id:
            raise FieldProblem(
                "kms_key_id", "mode 'sse-kms' needs kms_key_id (a key id, ARN or alias)"
            )
        return self


class LifecycleSettings(_Strict):
    """Days are counted from object creation; None disables that transition."""

    infrequent_access_days: int | None = Field(default=None, ge=30)
    glacier_days: int | None = Field(default=None, ge=1)
    expire_days: int | None = Field(default=None, ge=1)
    noncurrent_expire_days: int = Field(default=30, ge=1)
    abort_multipart_days: int = Field(default=7, ge=1)


def _default_lifecycles() -> dict[BucketKind, LifecycleSettings]:
    return {
        BucketKind.RAW: LifecycleSettings(
            infrequent_access_days=30, glacier_days=90, expire_days=365
        ),
        BucketKind.SCHEMATIZED: LifecycleSettings(infrequent_access_days=60, expire_days=730),
        BucketKind.ERROR: LifecycleSettings(infrequent_access_days=30, expire_days=365),
        BucketKind.ARCHIVAL: LifecycleSettings(
            infrequent_access_days=30, glacier_days=90, expire_days=2555
        ),
        BucketKind.AGGREGATED: LifecycleSettings(infrequent_access_days=90, expire_days=1095),
    }


class BucketSettings(_Strict):
    """Bucket names default to ``{prefix}-{kind}``; any of them can be named outright."""

    prefix: str = "sensorpipe"
    names: dict[BucketKind, str] = Field(default_factory=dict)
    encryption: EncryptionSettings = EncryptionSettings()
    lifecycle: dict[BucketKind, LifecycleSettings] = Field(default_factory=_default_lifecycles)

    def name(self, kind: BucketKind | str) -> str:
        kind = BucketKind(kind)
        return self.names.get(kind) or f"{self.prefix}-{kind.value}"

    def all_names(self) -> dict[BucketKind, str]:
        return {kind: self.name(kind) for kind in BucketKind}

    @model_validator(mode="after")
    def _valid_bucket_names(self) -> BucketSettings:
        for kind, name in self.all_names().items():
            if not _NAME.match(name) or ".." in name:
                raise FieldProblem(
                    f"names.{kind.value}" if kind in self.names else "prefix",
                    f"bucket name {name!r} for {kind.value} is not a valid S3 bucket name "
                    "(3-63 lower-case letters, digits, '.' or '-')",
                )
        return self


class QueueSettings(_Strict):
    """Queue names are ``{prefix}-{stage}``; sharded stages get ``-{index}`` suffixes."""

    prefix: str = "sensorpipe"
    visibility_timeout_seconds: int = Field(default=60, ge=5, le=43200)
    # The consumer gives a message up (to the DLQ, with the reason) when a retry would
    # follow its receive number this many. The queue's own RedrivePolicy is set higher
    # (redrive_receive_count): receives lost in transit (a ReceiveMessage response cut
    # by the network, a process killed holding the message) count too, and SQS's
    # redrive moves a message without any reason; it is only the backstop for a message
    # that kills every consumer that takes it.
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    retention_seconds: int = Field(default=345600, ge=60, le=1209600)
    dlq_retention_seconds: int = Field(default=1209600, ge=60, le=1209600)
    # At most SQS's 1 MiB less DLQ_HEADROOM_BYTES: the room a poison message needs for
    # the reason the consumer adds on its way to the DLQ (which takes the full 1 MiB).
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, le=SQS_MAX_MESSAGE_BYTES - DLQ_HEADROOM_BYTES
    )
    aggregate_shards: int = Field(default=1, ge=1, le=64)
    notify_shards: int = Field(default=1, ge=1, le=64)

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not _QUEUE_NAME.match(value) or len(value) > 50:
            raise ValueError("queue prefix must be 1-50 letters, digits, '-' or '_'")
        return value

    def name(self, stage: str, shard: int | None = None) -> str:
        base = f"{self.prefix}-{stage}"
        return base if shard is None else f"{base}-{shard}"

    @property
    def ingest(self) -> str:
        return self.name("ingest")

    @property
    def enriched(self) -> str:
        return self.name("enriched")

    @property
    def validated(self) -> str:
        return self.name("validated")

    @property
    def notifications(self) -> str:
        # FIFO: a deterministic de-duplication id stops a burst notifying twice.
        return self.name("notifications") + ".fifo"

    def aggregate_shard_names(self) -> list[str]:
        return [self.name("aggregate", i) for i in range(self.aggregate_shards)]

    def notify_shard_names(self) -> list[str]:
        return [self.name("notify", i) for i in range(self.notify_shards)]

    def consumer_queues(self) -> list[str]:
        """Every queue a service consumes from (each gets a DLQ)."""
        return [
            self.ingest,
            self.enriched,
            self.validated,
            *self.aggregate_shard_names(),
            *self.notify_shard_names(),
        ]

    @property
    def redrive_receive_count(self) -> int:
        """The RedrivePolicy's maxReceiveCount: well past the consumer's own give-up."""
        return min(max(3 * self.max_receive_count, self.max_receive_count + 10), 1000)

    @staticmethod
    def dlq_name(queue: str) -> str:
        if queue.endswith(".fifo"):
            return queue[: -len(".fifo")] + "-dlq.fifo"
        return queue + "-dlq"


class ScenarioRoute(_Strict):
    """One row of the routing table: which stages act, where records go."""

    description: str = ""
    lineage: bool = False
    validate_records: bool = Field(default=False, alias="validate")
    filter: bool = False
    destinations: list[Destination] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioRoute:
        if self.filter and not self.validate_records:
            raise FieldProblem(
                "filter", "filter: true needs validate: true (filters run on valid records)"
            )
        needs_validation = {Destination.AGGREGATOR, Destination.NOTIFIER} & set(self.destinations)
        if needs_validation and not self.validate_records:
            names = sorted(d.value for d in needs_validation)
            raise FieldProblem(
                "destinations", f"destinations {names} need validate: true (typed, checked records)"
            )
        if len(set(self.destinations)) != len(self.destinations):
            raise FieldProblem("destinations", "destinations lists a destination twice")
        return self


def _default_routes() -> dict[str, ScenarioRoute]:
    d = Destination
    return {
        "raw": ScenarioRoute(
            description="records as received to the raw bucket", destinations=[d.RAW]
        ),
        "schematized": ScenarioRoute(
            description="validated records; invalid ones to the error bucket",
            validate_records=True,
            destinations=[d.SCHEMATIZED],
        ),
        "filtered": ScenarioRoute(
            description="schematized plus business-rule filters",
            validate_records=True,
            filter=True,
            destinations=[d.SCHEMATIZED],
        ),
        "lineage": ScenarioRoute(
            description="records enriched with lineage to the archival bucket",
            lineage=True,
            destinations=[d.ARCHIVAL],
        ),
        "aggregated": ScenarioRoute(
            description="validated records into 1-minute windows",
            lineage=True,
            validate_records=True,
            destinations=[d.AGGREGATOR],
        ),
        "multi-destination": ScenarioRoute(
            description="lineage archive plus 1-minute windows",
            lineage=True,
            validate_records=True,
            destinations=[d.ARCHIVAL, d.AGGREGATOR],
        ),
        "notification": ScenarioRoute(
            description="multi-destination plus anomaly burst notifications",
            lineage=True,
            validate_records=True,
            destinations=[d.ARCHIVAL, d.AGGREGATOR, d.NOTIFIER],
        ),
    }


class FilterRule(_Strict):
    """A business rule of the ``filtered`` scenario: records it matches are set aside."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    field: str
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null"]
    value: Any = None
    description: str = ""


class SourceSettings(_Strict):
    path: str = "data/sensor_data.db"
    table_name: Literal["sensor_readings", "sensor_data"] = "sensor_readings"


class UploaderSettings(_Strict):
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    max_batch_bytes: int = Field(default=240 * 1024, ge=1024, le=1024 * 1024)
    poll_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    state_dir: str = "state"
    source_name: str = "edge"


class ValidationSettings(_Strict):
    spec_path: str | None = None
    max_future_skew_seconds: float = Field(default=300, ge=0)


class WindowingSettings(_Strict):
    """Event-time rules of the stateful stages (docs/WINDOWS.md)."""

    window_seconds: int = Field(default=60, ge=1, le=86400)
    # How far out of order (event time) a source writes its rows: a window closes once
    # every source has written readings this much past its end.
    grace_seconds: float = Field(default=10, ge=0)
    # A source that sent nothing for this long (processing time) no longer holds the
    # watermark back: its last windows close.
    idle_flush_seconds: float = Field(default=30, gt=0)
    # A reading arriving after its window was written revises the window if it is at
    # most this much past the window's end (against the watermark); later ones go to
    # late/. Seven days: an edge node offline for a long weekend, or a batch parked in a
    # DLQ over one and replayed after, still lands exactly; closed windows cost nothing
    # to keep revisable (the written document is the state).
    allowed_lateness_seconds: float = Field(default=604_800, ge=0)
    # A missing batch of a source (in a DLQ, or held back by retries at another stage)
    # holds that source's progress back at most this long; then its readings revise
    # whenever they arrive. Ten minutes outlast one stage's whole retry ladder (5 tries,
    # back-off 5-40 s, 60 s visibility) and a crashed stage's redelivery.
    gap_timeout_seconds: float = Field(default=600, gt=0)
    output_prefix: str = "1-minute"


class NotificationSettings(_Strict):
    min_anomalies: int = Field(default=3, ge=1)
    window_seconds: float = Field(default=60, gt=0)
    cooldown_seconds: float = Field(default=300, ge=0)


class RuntimeSettings(_Strict):
    """Knobs of the shared consumer loop, the same for every service."""

    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    max_messages: int = Field(default=10, ge=1, le=10)
    max_in_flight: int = Field(default=50, ge=1)
    heartbeat_fraction: float = Field(default=0.5, gt=0, lt=1)
    retry_base_seconds: int = Field(default=5, ge=0)
    retry_max_seconds: int = Field(default=300, ge=0, le=43200)
    # Below Docker's default 10 s stop grace; long polls are capped one second under it.
    shutdown_timeout_seconds: float = Field(default=9, gt=0, le=3600)
    compress: bool = True
    # How envelopes carry their records: "arrow" (columns, sensorpipe.columns) or "json"
    # (one object per record, gzip when `compress`). Every stage reads both.
    body_format: Literal["arrow", "json"] = "arrow"
    # The stateful stages hold messages until a checkpoint includes them, leased this
    # long at a time (renewed while held; capped at the queue's visibility timeout): a
    # crashed shard's unacknowledged messages come back within it, not a whole timeout.
    lease_seconds: int = Field(default=10, ge=2, le=43200)
    # A handler call (a batch, or a tick) still running after this long is *stalled*:
    # /healthz answers 503 (an orchestrator restarts the process) and the heartbeat
    # stops renewing, so its messages come back to the queue for another consumer
    # instead of staying leased by a process that will never settle them.
    stall_timeout_seconds: float = Field(default=300, gt=0, le=43200)

    @property
    def columnar(self) -> bool:
        return self.body_format == "arrow"

    def lease(self, queues: QueueSettings) -> int:
        return min(self.lease_seconds, queues.visibility_timeout_seconds)


class PipelineConfig(_Strict):
    """The whole pipeline configuration (``pipeline-config-v2.yaml``)."""

    version: Literal[2] = 2
    pipeline: PipelineSection = PipelineSection()
    buckets: BucketSettings = BucketSettings()
    queues: QueueSettings = QueueSettings()
    source: SourceSettings = SourceSettings()
    uploader: UploaderSettings = UploaderSettings()
    validation: ValidationSettings = ValidationSettings()
    windowing: WindowingSettings = WindowingSettings()
    notification: NotificationSettings = NotificationSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    scenarios: dict[str, ScenarioRoute] = Field(default_factory=_default_routes)
    filters: list[FilterRule] = Field(default_factory=list)

    @field_validator("scenarios")
    @classmethod
    def _scenario_names(cls, value: dict[str, ScenarioRoute]) -> dict[str, ScenarioRoute]:
        for name in value:
            if not _SCENARIO_NAME.match(name):
                raise ValueError(
                    f"scenario name {name!r} must be lower-case letters, digits, '-' or '_'"
                )
        missing = [s for s in BUILTIN_SCENARIOS if s not in value]
        if missing:
            raise ValueError(
                f"built-in scenarios {missing} have no route; every built-in scenario "
                "needs a row (copy it from the packaged default)"
            )
        return value

    @model_validator(mode="after")
    def _default_scenario_known(self) -> PipelineConfig:
        if self.pipeline.default_scenario not in self.scenarios:
            raise FieldProblem(
                "pipeline.default_scenario",
                f"pipeline.default_scenario {self.pipeline.default_scenario!r} is not a "
                f"scenario of this file ({sorted(self.scenarios)})",
            )
        return self

    def route(self, scenario: str) -> ScenarioRoute | None:
        return self.scenarios.get(scenario)

    def scenario_names(self) -> list[str]:
        return sorted(self.scenarios)
