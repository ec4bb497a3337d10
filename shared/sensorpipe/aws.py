"""boto3 clients with the standard configuration and nothing hard-coded.

Endpoint, region and credentials come from the usual AWS chain (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_SQS``, ``AWS_REGION``, profiles, instance roles), so LocalStack,
moto's server and real AWS need no code change. botocore's own ``standard`` retry mode
handles throttling and transient 5xx errors.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# The read timeout must outlast a 20 s long poll.
_BASE = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
    s3={"addressing_style": "path"},
)


def _region(region: str | None) -> str | None:
    # botocore reads AWS_DEFAULT_REGION; AWS_REGION is the variable most tools document.
    return region or os.environ.get("AWS_REGION") or None


def sqs_client(region: str | None = None) -> SQSClient:
    return boto3.session.Session().client("sqs", region_name=_region(region), config=_BASE)


def s3_client(region: str | None = None) -> S3Client:
    return boto3.session.Session().client("s3", region_name=_region(region), config=_BASE)


def queue_url(sqs: SQSClient, name: str) -> str:
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]
