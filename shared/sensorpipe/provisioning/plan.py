"""What provisioning does, as a list of described steps (printed by --dry-run).

Every step is idempotent: running the plan twice changes nothing and fails nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sensorpipe.config.pipeline import (
    SQS_MAX_MESSAGE_BYTES,
    BucketKind,
    LifecycleSettings,
    PipelineConfig,
    QueueSettings,
)
from sensorpipe.stateful import CHECKPOINT_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PublicAccessBlockConfigurationTypeDef
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True)
class Step:
    description: str
    run: Callable[[], object]


# Where the stateful stages keep their checkpoints (sensorpipe.stateful): the
# aggregator's in the aggregated bucket, the notifier's in the archival one.
CHECKPOINT_BUCKETS = (BucketKind.AGGREGATED, BucketKind.ARCHIVAL)


def lifecycle_rules(kind: BucketKind, settings: LifecycleSettings) -> list[Any]:
    transitions = []
    if settings.infrequent_access_days:
        transitions.append({"Days": settings.infrequent_access_days, "StorageClass": "STANDARD_IA"})
    if settings.glacier_days:
        transitions.append({"Days": settings.glacier_days, "StorageClass": "GLACIER"})
    rule: dict[str, Any] = {
        "ID": f"sensorpipe-{kind.value}",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": settings.noncurrent_expire_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": settings.abort_multipart_days},
    }
    if transitions:
        rule["Transitions"] = transitions
    if settings.expire_days:
        rule["Expiration"] = {"Days": settings.expire_days}
    rules = [rule]
    if kind in CHECKPOINT_BUCKETS:
        # A shard's checkpoint is rewritten several times a second: keep a day of its
        # versions (to roll back to), not a bucket's worth of months.
        rules.append(
            {
                "ID": f"sensorpipe-{kind.value}-checkpoints",
                "Status": "Enabled",
                "Filter": {"Prefix": f"{CHECKPOINT_PREFIX}/"},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            }
        )
    return rules


def encryption_rule(config: PipelineConfig) -> Any:
    enc = config.buckets.encryption
    if enc.mode == "sse-kms":
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": enc.kms_key_id}
        return {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


PUBLIC_ACCESS_BLOCK: PublicAccessBlockConfigurationTypeDef = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def bucket_steps(config: PipelineConfig, s3: S3Client, region: str) -> list[Step]:
    steps: list[Step] = []
    for kind, name in config.buckets.all_names().items():
        rules = lifecycle_rules(kind, config.buckets.lifecycle.get(kind, LifecycleSettings()))
        enc = encryption_rule(config)

        def create(name: str = name) -> None:
            args: dict[str, Any] = {"Bucket": name}
            if region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                s3.create_bucket(**args)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    raise

        steps += [
            Step(f"s3: create bucket {name} ({kind.value}) in {region}", create),
            Step(
                f"s3: {name}: block all public access",
                partial(
                    s3.put_public_access_block,
                    Bucket=name,
                    PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK,
                ),
            ),
            Step(
                f"s3: {name}: versioning Enabled",
                partial(
                    s3.put_bucket_versioning,
                    Bucket=name,
                    VersioningConfiguration={"Status": "Enabled"},
                ),
            ),
            Step(
                f"s3: {name}: default encryption {json.dumps(enc, sort_keys=True)}",
                partial(
                    s3.put_bucket_encryption,
                    Bucket=name,
                    ServerSideEncryptionConfiguration={"Rules": [enc]},
                ),
            ),
            Step(
                f"s3: {name}: lifecycle {json.dumps(rules, sort_keys=True)}",
                partial(
                    s3.put_bucket_lifecycle_configuration,
                    Bucket=name,
                    LifecycleConfiguration={"Rules": rules},
                ),
            ),
        ]
    return steps


def _ensure_queue(sqs: SQSClient, name: str, attributes: dict[str, str]) -> str:
    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    mutable = {k: v for k, v in attributes.items() if k not in ("FifoQueue",)}
    sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)  # type: ignore[arg-type]
    return url


def queue_attributes(q: QueueSettings, *, fifo: bool, dlq: bool) -> dict[str, str]:
    attrs = {
        "VisibilityTimeout": str(q.visibility_timeout_seconds),
        "MessageRetentionPeriod": str(q.dlq_retention_seconds if dlq else q.retention_seconds),
        # A DLQ takes SQS's largest message: a poison message moved there keeps its body
        # and gains three attributes (the reason among them), so a body that just fit
        # its stage queue must still fit its DLQ, or it could only wait out the redrive.
        "MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES if dlq else q.max_body_bytes),
        "ReceiveMessageWaitTimeSeconds": "20",
        "SqsManagedSseEnabled": "true",
    }
    if fifo:
        attrs["FifoQueue"] = "true"
        attrs["ContentBasedDeduplication"] = "false"
    return attrs


def _ensure_with_redrive(
    sqs: SQSClient, name: str, attributes: dict[str, str], dlq: str, max_receive_count: int
) -> None:
    dlq_url = sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
    _ensure_queue(sqs, name, {**attributes, "RedrivePolicy": json.dumps(redrive)})


def queue_steps(config: PipelineConfig, sqs: SQSClient) -> list[Step]:
    """Two steps per queue: its DLQ first (the redrive policy needs the DLQ's ARN),
    then the queue itself with its RedrivePolicy."""
    q = config.queues
    steps: list[Step] = []
    for name in [*q.consumer_queues(), q.notifications]:
        fifo = name.endswith(".fifo")
        dlq = QueueSettings.dlq_name(name)
        dlq_attrs = queue_attributes(q, fifo=fifo, dlq=True)
        attrs = queue_attributes(q, fifo=fifo, dlq=False)
        steps += [
            Step(
                f"sqs: dead-letter queue {dlq} {json.dumps(dlq_attrs, sort_keys=True)}",
                partial(_ensure_queue, sqs, dlq, dlq_attrs),
            ),
            Step(
                f"sqs: queue {name} {json.dumps(attrs, sort_keys=True)} "
                f"RedrivePolicy {{deadLetterTargetArn: arn of {dlq}, "
                f"maxReceiveCount: {q.redrive_receive_count}}}",
                partial(_ensure_with_redrive, sqs, name, attrs, dlq, q.redrive_receive_count),
            ),
        ]
    return steps


def build_plan(config: PipelineConfig, s3: S3Client, sqs: SQSClient, region: str) -> list[Step]:
    return [*bucket_steps(config, s3, region), *queue_steps(config, sqs)]
