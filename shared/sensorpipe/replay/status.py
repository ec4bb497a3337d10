"""Pipeline status: queue depths (including every DLQ) and bucket object counts.

Counts are SQS's approximate ones (GetQueueAttributes) and a paginated listing of
each bucket's current objects. A queue or bucket that does not exist is shown as
missing rather than failing the whole report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.config.pipeline import PipelineConfig, QueueSettings
from sensorpipe.replay.errors import ResourceNotFoundError, aws_failure

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

_COUNT_ATTRIBUTES: Any = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


@dataclass(frozen=True, slots=True)
class QueueStatus:
    name: str
    role: str  # "consumer", "dlq" or "output"
    source: str | None  # for a DLQ: the queue it serves
    exists: bool
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed

    @property
    def dlq_holds_messages(self) -> bool:
        return self.role == "dlq" and self.total > 0


@dataclass(frozen=True, slots=True)
class BucketStatus:
    kind: str
    name: str
    exists: bool
    objects: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    queues: list[QueueStatus]
    buckets: list[BucketStatus]

    @property
    def dlq_messages(self) -> int:
        return sum(q.total for q in self.queues if q.role == "dlq")

    def to_dict(self) -> dict[str, Any]:
        return {
            "queues": [{**asdict(q), "total": q.total} for q in self.queues],
            "buckets": [asdict(b) for b in self.buckets],
            "dlq_messages": self.dlq_messages,
        }


def queue_roles(config: PipelineConfig) -> list[tuple[str, str, str | None]]:
    """(name, role, source queue) for every queue of the pipeline, each queue then its DLQ."""
    out: list[tuple[str, str, str | None]] = []
    q = config.queues
    for name in q.consumer_queues():
        out += [(name, "consumer", None), (QueueSettings.dlq_name(name), "dlq", name)]
    out += [(q.notifications, "output", None)]
    out += [(QueueSettings.dlq_name(q.notifications), "dlq", q.notifications)]
    return out


def queue_status(sqs: SQSClient, name: str, role: str, source: str | None) -> QueueStatus:
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=_COUNT_ATTRIBUTES)
    except (BotoCoreError, ClientError) as exc:
        error = aws_failure("GetQueueAttributes", "queue", name, exc)
        if isinstance(error, ResourceNotFoundError):
            return QueueStatus(name, role, source, exists=False)
        raise error from exc
    values = attrs.get("Attributes", {})
    return QueueStatus(
        name,
        role,
        source,
        exists=True,
        visible=int(values.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(values.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(values.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


def bucket_status(s3: S3Client, kind: str, name: str, *, page_size: int = 1000) -> BucketStatus:
    objects = size = 0
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=name, PaginationConfig={"PageSize": page_size}
    )
    try:
        for page in pages:
            contents = page.get("Contents", [])
            objects += len(contents)
            size += sum(o.get("Size", 0) for o in contents)
    except (BotoCoreError, ClientError) as exc:
        error = aws_failure("ListObjectsV2", "bucket", name, exc)
        if isinstance(error, ResourceNotFoundError):
            return BucketStatus(kind, name, exists=False)
        raise error from exc
    return BucketStatus(kind, name, exists=True, objects=objects, bytes=size)


def collect_status(config: PipelineConfig, sqs: SQSClient, s3: S3Client) -> PipelineStatus:
    queues = [queue_status(sqs, *row) for row in queue_roles(config)]
    buckets = [
        bucket_status(s3, kind.value, name) for kind, name in config.buckets.all_names().items()
    ]
    return PipelineStatus(queues, buckets)


def render_table(status: PipelineStatus, *, color: bool = False) -> str:
    """A fixed-width table; a DLQ holding messages is marked ``!`` (and red with color)."""
    width = max([len(q.name) for q in status.queues] + [len(b.name) for b in status.buckets] + [5])
    lines = [f"  {'queue':<{width}}  {'role':<8}  {'visible':>8}  {'in-flight':>9}  {'delayed':>8}"]
    for q in status.queues:
        mark = "!" if q.dlq_holds_messages else " "
        if q.exists:
            counts = f"{q.visible:>8}  {q.in_flight:>9}  {q.delayed:>8}"
        else:
            counts = f"{'missing (not provisioned)':>29}"
        line = f"{mark} {q.name:<{width}}  {q.role:<8}  {counts}"
        if q.dlq_holds_messages and color:
            line = f"\033[1;31m{line}\033[0m"
        lines.append(line)
    lines += ["", f"  {'bucket':<{width}}  {'kind':<11}  {'objects':>8}  {'bytes':>12}"]
    for b in status.buckets:
        counts = f"{b.objects:>8}  {b.bytes:>12}" if b.exists else f"{'missing':>22}"
        lines.append(f"  {b.name:<{width}}  {b.kind:<11}  {counts}")
    holding = [q for q in status.queues if q.dlq_holds_messages]
    lines.append("")
    if holding:
        lines.append(f"! {status.dlq_messages} message(s) in {len(holding)} dead-letter queue(s)")
        lines.extend(
            f"  inspect: sensorpipe-replay dlq --queue {q.source} --dry-run" for q in holding
        )
    else:
        lines.append("dead-letter queues: empty")
    missing = [q.name for q in status.queues if not q.exists]
    missing += [b.name for b in status.buckets if not b.exists]
    if missing:
        lines.append(f"missing: {', '.join(missing)} (run sensorpipe-provision --config FILE)")
    return "\n".join(lines)
