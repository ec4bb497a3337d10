"""Create the pipeline's buckets and queues, idempotently, with a printable plan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config.pipeline import PipelineConfig
from sensorpipe.provisioning.plan import Step, build_plan

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

__all__ = ["Step", "build_plan", "provision"]


def provision(
    config: PipelineConfig,
    *,
    s3: S3Client | None = None,
    sqs: SQSClient | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Run (or with ``dry_run`` only describe) every step; returns the descriptions."""
    s3 = s3 or s3_client()
    sqs = sqs or sqs_client()
    region = s3.meta.region_name or "us-east-1"
    steps = build_plan(config, s3, sqs, region)
    if not dry_run:
        for step in steps:
            step.run()
    return [step.description for step in steps]
