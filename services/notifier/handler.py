"""The notifier service: its stage (stage.py) run by the shared sequencer.

The sequencer (``sensorpipe.stateful``) applies each source's batches whole and in
order, advances the watermark (decisions are made behind it), and commits: bursts are
published and set-aside records written, then the shard's checkpoint, then the acks. A
restart resumes from the checkpoint at once (docs/NOTIFICATIONS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from sensorpipe.config import BucketKind, PipelineConfig
from sensorpipe.runtime import ServiceContext
from sensorpipe.runtime.metrics import PREFIX
from sensorpipe.stateful import SequencedHandler, Timing, sequenced
from sensorpipe.store import ObjectStore, S3ObjectStore
from services.notifier.config import NotifierSettings, ResolvedSettings, resolve
from services.notifier.dedupe import NotificationLedger, NotificationSender, Published
from services.notifier.stage import NotifierStage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SERVICE = "notifier"

ANOMALIES = Counter(
    f"{PREFIX}_notifier_anomalies_total",
    "Anomalous records by what became of them (burst, no_burst, cooldown, duplicate, "
    "late, unusable)",
    ["outcome"],
)
NOTIFICATIONS = Counter(
    f"{PREFIX}_notifier_notifications_total",
    "Bursts published (sent) or found in the ledger (already_sent)",
    ["outcome"],
)
PENDING = Gauge(f"{PREFIX}_notifier_pending_anomalies", "Anomalies not decided yet")


class Metrics:
    """The stage's events as Prometheus samples."""

    def anomalies(self, outcome: str, count: int) -> None:
        if count:
            ANOMALIES.labels(outcome).inc(count)

    def notification(self, outcome: Published) -> None:
        NOTIFICATIONS.labels(outcome.value).inc()

    def pending(self, count: int) -> None:
        PENDING.set(count)


def build_handler(
    config: PipelineConfig,
    settings: ResolvedSettings,
    *,
    archival: ObjectStore,
    error: ObjectStore,
    sqs: SQSClient,
    shard: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> SequencedHandler:
    """The notifier handler of one shard.

    Parameters:
        config: the pipeline config (queues, shards).
        settings: the burst rule and this process's knobs, resolved.
        archival: the archival bucket (the ledger, the shard's checkpoint).
        error: the error bucket (late and unusable anomalies).
        sqs: where notifications are sent (the FIFO queue).
        shard: the notify shard this process consumes.
        clock: monotonic processing time.
    """
    ledger = NotificationLedger(archival, settings.record_prefix)
    sender = NotificationSender(
        sqs,
        sqs.get_queue_url(QueueName=config.queues.notifications)["QueueUrl"],
        ledger,
        max_body_bytes=config.queues.max_body_bytes,
    )
    stage = NotifierStage(
        settings.rules,
        sender,
        error,
        Metrics(),
        shard=shard,
        shards=len(config.queues.notify_shard_names()),
        service=SERVICE,
    )
    timing = Timing(
        grace_us=settings.rules.grace_us,
        idle_s=settings.idle_flush_s,
        idle_lift_us=0,  # a quiet source: what was seen of it is final
        gap_timeout_s=config.windowing.gap_timeout_seconds,
    )
    return sequenced(
        SERVICE,
        stage,
        timing,
        archival,
        config,
        shard=shard,
        max_in_flight=settings.max_in_flight,
        commit_interval_s=settings.commit_interval_s,
        tick_interval_s=0.25,  # idle decisions are checked this often
        clock=clock,
    )


def from_context(context: ServiceContext) -> SequencedHandler:
    config = context.config
    own = context.settings_of(NotifierSettings)

    def store(kind: BucketKind) -> S3ObjectStore:
        return S3ObjectStore(context.s3, config.buckets.name(kind), service=SERVICE)

    return build_handler(
        config,
        resolve(config, own),
        archival=store(BucketKind.ARCHIVAL),
        error=store(BucketKind.ERROR),
        sqs=context.sqs,
        shard=context.settings.shard,
    )
