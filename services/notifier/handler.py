"""The notifier's batch handler: anomalies in, one notification per burst out.

Per received batch: admit each message's anomalies into their location's state (judged
against the watermark as it stood before that message), make the decisions the
watermarks allow, publish the bursts, write late and unusable records to the error
bucket, persist every touched location's state, and only then acknowledge. Any failure
drops the touched states from memory (S3 holds the truth) and retries the messages.
After a start or a failed batch nothing is decided for a while (the hold), so messages
coming back late from SQS are not overtaken by newer ones (docs/NOTIFICATIONS.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from sensorpipe.config import BucketKind, ConfigError, PipelineConfig
from sensorpipe.envelope import Envelope, EnvelopeError
from sensorpipe.objects import ObjectWriter
from sensorpipe.records import stable_shard
from sensorpipe.runtime import ACK, BatchHandler, Message, Outcome, Reject, Retry, ServiceContext
from sensorpipe.runtime.metrics import PREFIX
from services.notifier.bursts import Admission, Anomaly, LocationState, UnusableRecord
from services.notifier.config import NotifierSettings, ResolvedSettings, resolve
from services.notifier.dedupe import NotificationLedger, NotificationSender, Published
from services.notifier.message import build_body, burst_id
from services.notifier.side_outputs import SideOutput
from services.notifier.state_store import StateStore, StoredState

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)
SERVICE = "notifier"

ANOMALIES = Counter(
    f"{PREFIX}_notifier_anomalies_total",
    "Anomalous records by what became of them (burst, no_burst, cooldown, duplicate, "
    "redelivered, late, unusable)",
    ["outcome"],
)
NOTIFICATIONS = Counter(
    f"{PREFIX}_notifier_notifications_total",
    "Bursts published (sent) or found in the ledger (already_sent)",
    ["outcome"],
)
PENDING = Gauge(f"{PREFIX}_notifier_pending_anomalies", "Anomalies not decided yet")
RECOVERING = Gauge(
    f"{PREFIX}_notifier_recovery_hold",
    "1 while decisions wait for redelivered messages (after start-up or a failed batch)",
)


def delivery_fingerprint(batch_id: str, keys: list[str]) -> str:
    """Identity of one message's anomalies for one location: a redelivery matches it."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(batch_id.encode())
    for key in sorted(keys):
        digest.update(b"\n" + key.encode())
    return digest.hexdigest()


class NotifierHandler(BatchHandler):
    name = SERVICE
    tick_interval_s = 0.25  # idle flushes are checked this often: they bound the latency

    def __init__(
        self,
        config: PipelineConfig,
        settings: ResolvedSettings,
        *,
        shard: int,
        sqs: SQSClient,
        s3: S3Client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.rules = settings.rules
        self.shard = shard
        self.shards = len(config.queues.notify_shard_names())
        self.clock = clock
        archival = config.buckets.name(BucketKind.ARCHIVAL)
        self.error_bucket = config.buckets.name(BucketKind.ERROR)
        self.store = StateStore(s3, archival, settings.state_prefix, service=SERVICE)
        ledger = NotificationLedger(s3, archival, settings.record_prefix, service=SERVICE)
        self.sender = NotificationSender(
            sqs,
            sqs.get_queue_url(QueueName=config.queues.notifications)["QueueUrl"],
            ledger,
            max_body_bytes=config.queues.max_body_bytes,
        )
        self.writer = ObjectWriter(s3, service=SERVICE)
        self.states: dict[str, StoredState] = {}
        self.last_arrival: dict[str, float] = {}
        self.retry_base_s = config.runtime.retry_base_seconds
        self.retry_max_s = config.runtime.retry_max_seconds
        self.hold_until = clock() + settings.recovery_hold_s
        self.holding = settings.recovery_hold_s > 0
        for location in self.store.stored_locations():
            if self._owns(location):
                self._state(location)
        RECOVERING.set(1 if self.holding else 0)
        self._update_pending()

    @classmethod
    def from_context(cls, context: ServiceContext) -> NotifierHandler:
        try:
            own = NotifierSettings()
        except ValidationError as exc:
            raise ConfigError(
                f"bad SENSORPIPE_NOTIFIER_* setting: {exc}", file=None, key="environment"
            ) from exc
        return cls(
            context.config,
            resolve(context.config, own),
            shard=context.settings.shard,
            sqs=context.sqs,
            s3=context.s3,
        )

    # -- the consumer loop's hooks -------------------------------------------------

    def handle(self, messages: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        envelopes: list[tuple[Envelope, bool]] = []
        for message in messages:
            try:
                envelopes.append((message.envelope(), message.receive_count > 1))
                outcomes.append(ACK)
            except EnvelopeError as exc:
                outcomes.append(Reject(f"not a batch envelope: {exc}"))
        touched: set[str] = set()
        try:
            side = [self._admit(env, again, touched) for env, again in envelopes]
            self._decide(touched)
            for output in side:
                output.write(self.writer, self.error_bucket, service=SERVICE)
            self._persist(touched)
        except Exception as exc:
            log.exception("batch failed; %d location state(s) will be re-read", len(touched))
            self._forget(touched)
            self._hold_for_retries(messages)
            retry = Retry(f"notifier: {type(exc).__name__}: {exc}")
            return [retry if o is ACK else o for o in outcomes]
        finally:
            self._update_pending()
        return outcomes

    def on_tick(self) -> None:
        now = self.clock()
        touched: set[str] = set()
        if self.holding:
            if now < self.hold_until:
                return
            self.holding = False
            RECOVERING.set(0)
            log.info("hold over: deciding on %d location(s)", len(self.states))
            for location, stored in self.states.items():
                stored.state.advance(self.rules.grace_us)
                self.last_arrival[location] = now
                touched.add(location)
        for location, stored in self.states.items():
            state = stored.state
            quiet_for = now - self.last_arrival.get(location, now)
            if state.pending and quiet_for >= self.settings.idle_flush_s:
                state.flush_idle()
                touched.add(location)
        if not touched:
            return
        try:
            self._decide(touched)
            self._persist(touched)
        except Exception:
            log.exception("idle flush failed; %d location state(s) will be re-read", len(touched))
            self._forget(touched)
        finally:
            self._update_pending()

    # -- steps -----------------------------------------------------------------------

    def _hold_for_retries(self, messages: list[Message]) -> None:
        """After a failed batch, decide nothing until its messages are back (as after a
        restart): otherwise newer input could overtake them and make them late."""
        back_off = max(
            min(self.retry_max_s, self.retry_base_s * 2 ** max(0, m.receive_count - 1))
            for m in messages
        )
        self.hold_until = max(self.hold_until, self.clock() + back_off + 2.0)
        self.holding = True
        RECOVERING.set(1)

    def _lateness_bound(self, state: LocationState, redelivered: bool) -> int | None:
        """The watermark a message's anomalies are judged against.

        Outside a hold it is the location's watermark. During a hold the watermark stands
        still (nothing is decided), and a redelivered message (received before the crash
        or failure) is judged against it; fresh input is judged as if it had moved on,
        as it would have without the interruption.
        """
        if not self.holding or redelivered or state.max_seen_us is None:
            return state.watermark_us
        running = state.max_seen_us - self.rules.grace_us
        return running if state.watermark_us is None else max(state.watermark_us, running)

    def _owns(self, location: str) -> bool:
        return stable_shard(location, self.shards) == self.shard

    def _state(self, location: str) -> StoredState:
        stored = self.states.get(location)
        if stored is None:
            stored = self.store.load(location)
            self.states[location] = stored
            self.last_arrival.setdefault(location, self.clock())
        return stored

    def _admit(self, envelope: Envelope, redelivered: bool, touched: set[str]) -> SideOutput:
        side = SideOutput(envelope.batch_id, envelope.created_at)
        by_location: dict[str, list[Anomaly]] = {}
        for record in envelope.records:
            try:
                anomaly = Anomaly.from_record(record, envelope.batch_id, envelope.scenario)
            except UnusableRecord as exc:
                side.add_unusable(record, str(exc))
                continue
            if not self._owns(anomaly.location):
                reason = (
                    f"misrouted: location belongs to notify shard "
                    f"{stable_shard(anomaly.location, self.shards)}, this is shard {self.shard}"
                )
                side.add_unusable(record, reason)
                continue
            by_location.setdefault(anomaly.location, []).append(anomaly)
        ANOMALIES.labels("unusable").inc(len(side.unusable))
        for location, anomalies in by_location.items():
            touched.add(location)  # before any change, so a failure forgets it
            self._admit_location(location, anomalies, side, redelivered)
        return side

    def _admit_location(
        self, location: str, anomalies: list[Anomaly], side: SideOutput, redelivered: bool
    ) -> None:
        state = self._state(location).state
        fingerprint = delivery_fingerprint(side.batch_id, [a.key for a in anomalies])
        if fingerprint in state.deliveries:
            ANOMALIES.labels("redelivered").inc(len(anomalies))
            return
        bound = self._lateness_bound(state, redelivered)
        for anomaly in anomalies:
            admission = state.admit_judged(anomaly, late_at_or_before=bound)
            if admission is Admission.LATE:
                side.add_late(anomaly, state)
            if admission is not Admission.ACCEPTED:
                ANOMALIES.labels(admission.value).inc()
            state.saw(anomaly.at_us)
        if not self.holding:
            state.advance(self.rules.grace_us)
        state.remember_delivery(fingerprint, self.settings.remembered_deliveries)
        self.last_arrival[location] = self.clock()

    def _decide(self, locations: set[str]) -> None:
        if self.holding:
            return
        for location in sorted(locations):
            detection = self.states[location].state.detect(self.rules)
            ANOMALIES.labels("no_burst").inc(len(detection.no_burst))
            ANOMALIES.labels("cooldown").inc(len(detection.cooled))
            for burst in detection.bursts:
                identity = burst_id(location, burst.start.key)
                body = build_body(burst, self.rules, self.sender.ledger.uri(location, identity))
                outcome = self.sender.publish(burst, body)
                NOTIFICATIONS.labels(outcome.value).inc()
                ANOMALIES.labels("burst").inc(len(burst.members))
                log.info(
                    "burst %s at %r: %d anomalies %s..%s (%s)",
                    identity,
                    location,
                    len(burst.members),
                    body["window"]["start"],
                    body["window"]["end"],
                    "sent" if outcome is Published.SENT else "already sent before",
                )

    def _persist(self, locations: set[str]) -> None:
        for location in sorted(locations):
            self.store.save(self.states[location])

    def _forget(self, locations: set[str]) -> None:
        for location in locations:
            self.states.pop(location, None)

    def _update_pending(self) -> None:
        PENDING.set(sum(len(s.state.pending) for s in self.states.values()))
