"""Provisioning against the running LocalStack: every setting read back, idempotent."""

from __future__ import annotations

import functools
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import BucketKind, PipelineConfig, load_pipeline_config
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.provisioning import provision
from tests.conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.integration

EXPECTED_LIFECYCLE = {
    # kind: (infrequent access days, glacier days, expire days)
    "raw": (30, 90, 365),
    "schematized": (60, None, 730),
    "error": (30, None, 365),
    "archival": (30, 90, 2555),
    "aggregated": (90, None, 1095),
}


@functools.cache
def _clients() -> tuple[S3Client, SQSClient]:
    # Creating a boto3 client costs ~0.1 s; a snapshot reads ~50 settings.
    return s3_client(), sqs_client()


def bucket_settings(name: str) -> dict[str, Any]:
    s3 = _clients()[0]
    return {
        "versioning": s3.get_bucket_versioning(Bucket=name).get("Status"),
        "encryption": s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"][
            "Rules"
        ],
        "public_access_block": s3.get_public_access_block(Bucket=name)[
            "PublicAccessBlockConfiguration"
        ],
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"],
    }


def queue_settings(name: str) -> dict[str, str]:
    sqs = _clients()[1]
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {str(k): v for k, v in attributes.items()}


def _stable(attributes: dict[str, str]) -> dict[str, str]:
    """Queue attributes without the counters and timestamps that move on their own."""
    moving = ("Approximate", "LastModifiedTimestamp", "CreatedTimestamp")
    return {k: v for k, v in attributes.items() if not k.startswith(moving)}


def snapshot(config: PipelineConfig) -> dict[str, Any]:
    q = config.queues
    names = [*q.consumer_queues(), q.notifications]
    return {
        "buckets": {name: bucket_settings(name) for name in config.buckets.all_names().values()},
        "queues": {
            n: _stable(queue_settings(n)) for n in [*names, *map(QueueSettings.dlq_name, names)]
        },
    }


@pytest.fixture(scope="module")
def provisioned(localstack: str, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return make_pipeline(tmp_path_factory.mktemp("provisioned"), localstack)


def test_buckets_have_versioning_encryption_and_public_access_block(
    provisioned: Pipeline,
) -> None:
    names = provisioned.config.buckets.all_names()
    assert set(names) == set(BucketKind)
    for name in names.values():
        settings = bucket_settings(name)
        assert settings["versioning"] == "Enabled", name
        assert settings["encryption"][0]["ApplyServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "AES256"
        }
        assert settings["public_access_block"] == {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }


@pytest.mark.parametrize("kind", list(EXPECTED_LIFECYCLE))
def test_lifecycle_rules(provisioned: Pipeline, kind: str) -> None:
    rules = {r["ID"]: r for r in bucket_settings(provisioned.bucket(kind))["lifecycle"]}
    checkpoints = rules.pop(f"sensorpipe-{kind}-checkpoints", None)
    if kind in ("aggregated", "archival"):  # they hold the stateful stages' checkpoints
        assert checkpoints is not None
        assert checkpoints["Filter"] == {"Prefix": "_checkpoints/"}
        assert checkpoints["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
        assert "Expiration" not in checkpoints and "Transitions" not in checkpoints
    else:
        assert checkpoints is None
    (rule,) = rules.values()
    infrequent, glacier, expire = EXPECTED_LIFECYCLE[kind]
    expected_transitions = [{"Days": infrequent, "StorageClass": "STANDARD_IA"}]
    if glacier:
        expected_transitions.append({"Days": glacier, "StorageClass": "GLACIER"})
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": ""}
    assert sorted(rule["Transitions"], key=lambda t: t["Days"]) == expected_transitions
    assert rule["Expiration"] == {"Days": expire}
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_every_queue_has_a_dlq_with_redrive_and_longer_retention(provisioned: Pipeline) -> None:
    q = provisioned.config.queues
    consumer_queues = q.consumer_queues()
    assert consumer_queues == [
        q.ingest,
        q.enriched,
        q.validated,
        *q.aggregate_shard_names(),
        *q.notify_shard_names(),
    ]
    for name in [*consumer_queues, q.notifications]:
        attrs = queue_settings(name)
        dlq_attrs = queue_settings(QueueSettings.dlq_name(name))
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq_attrs["QueueArn"], name
        # the consumer gives up at 5 with a reason; SQS's reasonless redrive is a backstop
        assert q.max_receive_count == 5 and int(redrive["maxReceiveCount"]) == 15
        assert attrs["VisibilityTimeout"] == "60"
        assert attrs["MessageRetentionPeriod"] == str(q.retention_seconds) == "345600"
        assert dlq_attrs["MessageRetentionPeriod"] == str(q.dlq_retention_seconds) == "1209600"
        assert int(dlq_attrs["MessageRetentionPeriod"]) > int(attrs["MessageRetentionPeriod"])
        assert attrs["MaximumMessageSize"] == str(q.max_body_bytes)
        # SQS's largest message: a poison body that fit its queue fits with its reason
        assert dlq_attrs["MaximumMessageSize"] == str(1024 * 1024)
        assert attrs["ReceiveMessageWaitTimeSeconds"] == "20"
        assert attrs["SqsManagedSseEnabled"] == dlq_attrs["SqsManagedSseEnabled"] == "true"
        assert attrs["DelaySeconds"] == "0"
        assert "RedrivePolicy" not in dlq_attrs
    fifo = queue_settings(q.notifications)
    assert (fifo["FifoQueue"], fifo["ContentBasedDeduplication"]) == ("true", "false")
    # A FIFO queue's DLQ must be FIFO too.
    assert queue_settings(QueueSettings.dlq_name(q.notifications))["FifoQueue"] == "true"


def test_running_twice_changes_nothing_and_fails_nothing(provisioned: Pipeline) -> None:
    before = snapshot(provisioned.config)
    descriptions = provision(provisioned.config, s3=s3_client(), sqs=sqs_client())
    assert descriptions == provision(provisioned.config, dry_run=True)
    assert snapshot(provisioned.config) == before


def test_a_changed_setting_is_applied_to_existing_queues(localstack: str, tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path, localstack)
    text = (
        pipeline.config_path.read_text()
        .replace("visibility_timeout_seconds: 60", "visibility_timeout_seconds: 90")
        .replace("max_receive_count: 5", "max_receive_count: 7")
    )
    pipeline.config_path.write_text(text)
    changed = load_pipeline_config(pipeline.config_path, env={})
    provision(changed, s3=s3_client(), sqs=sqs_client())
    attrs = queue_settings(changed.queues.ingest)
    assert attrs["VisibilityTimeout"] == "90"
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] in (21, "21")  # 3 x 7


def test_dry_run_creates_nothing(localstack: str, tmp_path: Path) -> None:
    prefix = f"dry{uuid.uuid4().hex[:10]}"
    config = load_pipeline_config(
        env={"SENSORPIPE__BUCKETS__PREFIX": prefix, "SENSORPIPE__QUEUES__PREFIX": prefix}
    )
    s3, sqs = _clients()
    steps = provision(config, s3=s3, sqs=sqs, dry_run=True)
    # 5 steps per bucket; per queue (5 consumer queues + notifications) its DLQ and itself.
    assert len(steps) == 5 * 5 + 6 * 2
    assert all(prefix in step for step in steps)
    for name in config.buckets.all_names().values():
        with pytest.raises(ClientError):
            s3.head_bucket(Bucket=name)
    assert sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []) == []


def test_sse_kms_config_plans_the_kms_rule(localstack: str) -> None:
    config = load_pipeline_config(
        env={
            "SENSORPIPE__BUCKETS__ENCRYPTION__MODE": "sse-kms",
            "SENSORPIPE__BUCKETS__ENCRYPTION__KMS_KEY_ID": "alias/sensorpipe",
        }
    )
    steps = provision(config, s3=s3_client(), sqs=sqs_client(), dry_run=True)
    encryption = [s for s in steps if "default encryption" in s]
    assert len(encryption) == 5
    for step in encryption:
        rule = json.loads(step.split("default encryption ", 1)[1])
        assert rule == {
            "ApplyServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": "alias/sensorpipe",
            },
            "BucketKeyEnabled": True,
        }
