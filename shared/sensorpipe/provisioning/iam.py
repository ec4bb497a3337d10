"""Least-privilege IAM policies, one per service, rendered from the pipeline config.

Each process of the pipeline gets a policy document that names exactly the queues it
reads or sends to and the bucket prefixes it reads or writes, as ARNs built from the
config's bucket and queue names (``arn:aws:sqs:*:*:<queue>``, ``arn:aws:s3:::<bucket>``,
``arn:aws:s3:::<bucket>/<prefix>*``). With SSE-KMS buckets, writers also get
``kms:GenerateDataKey`` and readers ``kms:Decrypt``, only through S3 and only for these
buckets (``kms:ViaService`` and the bucket-key encryption context).

``python -m sensorpipe.provisioning.iam --out deploy/iam`` writes ``<service>.json``
for every service (``--config`` for another pipeline, ``--check`` to fail when the
files differ from what the config renders). ``tests/deploy/test_iam.py`` proves the
policies against the AWS calls a real run makes (``SENSORPIPE_AWS_CALL_LOG``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sensorpipe.config import ConfigError, load_pipeline_config
from sensorpipe.config.pipeline import BucketKind, PipelineConfig, QueueSettings
from sensorpipe.stateful import CHECKPOINT_PREFIX

Policy = dict[str, Any]
Statement = dict[str, Any]

VERSION = "2012-10-17"
# The notifier's ledger prefix: NotifierSettings.record_prefix's default
# (services/notifier/config.py); a deployment that moves it renders with ``ledger_prefix``.
LEDGER_PREFIX = "notifications"
# What the router writes under each destination bucket, and the validator under error.
ROUTED_PREFIXES = {BucketKind.RAW: "raw", BucketKind.SCHEMATIZED: "schematized"}
ROUTED_PREFIXES[BucketKind.ARCHIVAL] = "archival"
SET_ASIDE_PREFIXES = ("rejected", "filtered")  # the validator's, in the error bucket
AGGREGATOR_ERROR_PREFIXES = ("late",)
NOTIFIER_ERROR_PREFIXES = ("late-anomalies", "unusable-anomalies")

CONSUME = [
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
]
SEND = ["sqs:GetQueueUrl", "sqs:SendMessage"]
STATUS = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
UPDATE_QUEUES = ["sqs:GetQueueUrl", "sqs:SetQueueAttributes"]
PROVISION_BUCKETS = [
    "s3:CreateBucket",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutLifecycleConfiguration",
]
SERVICES = (
    "enricher",
    "validator",
    "router",
    "aggregator",
    "notifier",
    "uploader",
    "dashboard",
    "replay",
    "provisioner",
)


# -- ARNs ---------------------------------------------------------------------------


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:*:*:{name}"


def bucket_arn(name: str) -> str:
    return f"arn:aws:s3:::{name}"


def objects_arn(bucket: str, prefix: str) -> str:
    """Every object whose key starts with ``prefix`` (give it its trailing ``/``)."""
    return f"arn:aws:s3:::{bucket}/{prefix}*"


def _stmt(sid: str, actions: Iterable[str], resources: Iterable[str], **extra: Any) -> Statement:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(set(actions)),
        "Resource": sorted(set(resources)),
        **extra,
    }


# -- building blocks ----------------------------------------------------------------


class _Names:
    """The config's names, as the policies need them."""

    def __init__(self, config: PipelineConfig, ledger_prefix: str) -> None:
        self.config = config
        self.q = config.queues
        self.ledger = ledger_prefix.strip("/") + "/"
        self.windows = config.windowing.output_prefix.strip("/") + "/"

    def bucket(self, kind: BucketKind) -> str:
        return self.config.buckets.name(kind)

    def objects(self, kind: BucketKind, prefixes: Iterable[str]) -> list[str]:
        return [objects_arn(self.bucket(kind), p.strip("/") + "/") for p in prefixes]

    def all_queues(self) -> list[str]:
        """Every queue of the pipeline and its DLQ (what status and provisioning see)."""
        names = [*self.q.consumer_queues(), self.q.notifications]
        return [n for name in names for n in (name, QueueSettings.dlq_name(name))]


def _consumer(sid: str, queues: list[str]) -> list[Statement]:
    """Read a queue (long polls, acks, retries, heartbeats) and move poison to its DLQ."""
    return [
        _stmt(f"Consume{sid}", CONSUME, map(queue_arn, queues)),
        _stmt(f"DeadLetter{sid}", SEND, (queue_arn(QueueSettings.dlq_name(q)) for q in queues)),
    ]


def _kms(config: PipelineConfig, *, write: list[str], read: list[str]) -> list[Statement]:
    """SSE-KMS: GenerateDataKey to write, Decrypt to read, via S3 for these buckets only."""
    enc = config.buckets.encryption
    if enc.mode != "sse-kms" or not enc.kms_key_id:
        return []
    key = enc.kms_key_id
    condition: dict[str, Any] = {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}
    if key.startswith("arn:aws:kms:") and ":key/" in key:
        resource = key
    elif key.startswith("alias/") or ":alias/" in key:
        resource = "arn:aws:kms:*:*:key/*"
        alias = "alias/" + key.split("alias/", 1)[1]
        condition["ForAnyValue:StringEquals"] = {"kms:ResourceAliases": [alias]}
    else:
        resource = f"arn:aws:kms:*:*:key/{key}"
    out = []
    for sid, action, buckets in (
        ("KmsWrite", "kms:GenerateDataKey", write),
        ("KmsRead", "kms:Decrypt", read),
    ):
        if buckets:
            # With bucket keys (provisioning enables them) the context is the bucket's ARN.
            context = {"kms:EncryptionContext:aws:s3:arn": sorted(map(bucket_arn, set(buckets)))}
            scoped = {**condition, "StringLike": {**condition["StringLike"], **context}}
            out.append(_stmt(sid, [action], [resource], Condition=scoped))
    return out


def _document(statements: list[Statement]) -> Policy:
    return {"Version": VERSION, "Statement": statements}


# -- the services -------------------------------------------------------------------


def _enricher(n: _Names) -> list[Statement]:
    return [
        *_consumer("Ingest", [n.q.ingest]),
        _stmt("SendEnriched", SEND, [queue_arn(n.q.enriched)]),
    ]


def _validator(n: _Names) -> list[Statement]:
    error = n.bucket(BucketKind.ERROR)
    return [
        *_consumer("Enriched", [n.q.enriched]),
        _stmt("SendValidated", SEND, [queue_arn(n.q.validated)]),
        _stmt("WriteSetAside", ["s3:PutObject"], n.objects(BucketKind.ERROR, SET_ASIDE_PREFIXES)),
        *_kms(n.config, write=[error], read=[]),
    ]


def _router(n: _Names) -> list[Statement]:
    shards = [*n.q.aggregate_shard_names(), *n.q.notify_shard_names()]
    writes = [a for kind, p in ROUTED_PREFIXES.items() for a in n.objects(kind, [p])]
    return [
        *_consumer("Validated", [n.q.validated]),
        _stmt("SendShards", SEND, map(queue_arn, shards)),
        _stmt("WriteDestinations", ["s3:PutObject"], writes),
        *_kms(n.config, write=[n.bucket(k) for k in ROUTED_PREFIXES], read=[]),
    ]


def _stateful(
    n: _Names,
    service: str,
    queues: list[str],
    state: BucketKind,
    outputs: list[str],
    late: tuple[str, ...],
) -> list[Statement]:
    """A sharded stage: its outputs and checkpoints in ``state`` (read back: revisions,
    the ledger, restarts), set-aside readings in the error bucket."""
    bucket = n.bucket(state)
    owned = [
        *(objects_arn(bucket, p) for p in outputs),
        objects_arn(bucket, f"{CHECKPOINT_PREFIX}/{service}-shard-"),
    ]
    return [
        *_consumer(service.capitalize(), queues),
        _stmt("ReadWriteState", ["s3:GetObject", "s3:PutObject"], owned),
        # Without ListBucket a missing key answers 403, not 404: a first checkpoint, a
        # window not written yet and an unsent burst would read as failures.
        _stmt("MissingKeysAre404", ["s3:ListBucket"], [bucket_arn(bucket)]),
        _stmt("WriteSetAside", ["s3:PutObject"], n.objects(BucketKind.ERROR, late)),
        *_kms(n.config, write=[bucket, n.bucket(BucketKind.ERROR)], read=[bucket]),
    ]


def _aggregator(n: _Names) -> list[Statement]:
    queues = n.q.aggregate_shard_names()
    return _stateful(
        n, "aggregator", queues, BucketKind.AGGREGATED, [n.windows], AGGREGATOR_ERROR_PREFIXES
    )


def _notifier(n: _Names) -> list[Statement]:
    queues = n.q.notify_shard_names()
    own = _stateful(n, "notifier", queues, BucketKind.ARCHIVAL, [n.ledger], NOTIFIER_ERROR_PREFIXES)
    return [*own, _stmt("SendNotifications", SEND, [queue_arn(n.q.notifications)])]


def _uploader(n: _Names) -> list[Statement]:
    return [_stmt("SendIngest", SEND, [queue_arn(n.q.ingest)])]


def _dashboard(n: _Names) -> list[Statement]:
    """Read-only: queue depths, and the newest objects of three prefixes."""
    reads = {
        BucketKind.ERROR: "rejected/",
        BucketKind.ARCHIVAL: n.ledger,
        BucketKind.AGGREGATED: n.windows,
    }
    out = [_stmt("QueueDepths", STATUS, map(queue_arn, n.all_queues()))]
    for kind, prefix in reads.items():
        bucket = n.bucket(kind)
        sid = kind.value.capitalize()
        condition = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
        out.append(
            _stmt(f"List{sid}", ["s3:ListBucket"], [bucket_arn(bucket)], Condition=condition)
        )
        out.append(_stmt(f"Read{sid}", ["s3:GetObject"], [objects_arn(bucket, prefix)]))
    buckets = [n.bucket(k) for k in reads]
    return [*out, *_kms(n.config, write=[], read=buckets)]


def _replay(n: _Names) -> list[Statement]:
    """``status`` (every queue and bucket), ``dlq`` (DLQ back to its queue) and
    ``archive`` (stored readings and set-aside records back to ingest)."""
    sources = [*n.q.consumer_queues(), n.q.notifications]
    stored = [a for kind, p in ROUTED_PREFIXES.items() for a in n.objects(kind, [p])]
    stored += n.objects(BucketKind.ERROR, SET_ASIDE_PREFIXES)
    archive_buckets = [*(n.bucket(k) for k in ROUTED_PREFIXES), n.bucket(BucketKind.ERROR)]
    all_buckets = list(n.config.buckets.all_names().values())
    return [
        _stmt("Status", STATUS, map(queue_arn, n.all_queues())),
        _stmt("ListBuckets", ["s3:ListBucket"], map(bucket_arn, all_buckets)),
        _stmt(
            "DrainDeadLetters",
            [
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
            ],
            (queue_arn(QueueSettings.dlq_name(q)) for q in sources),
        ),
        _stmt("SendBack", SEND, map(queue_arn, sources)),
        _stmt("ReadStored", ["s3:GetObject"], stored),
        *_kms(n.config, write=[], read=archive_buckets),
    ]


def _provisioner(n: _Names) -> list[Statement]:
    """Create buckets and queues; a DLQ's ARN is read for its queue's RedrivePolicy, and
    an existing queue whose attributes differ is updated in place."""
    buckets = n.config.buckets.all_names().values()
    consumer = n.q.consumer_queues()
    dlqs = [QueueSettings.dlq_name(q) for q in [*consumer, n.q.notifications]]
    return [
        _stmt("Buckets", PROVISION_BUCKETS, map(bucket_arn, buckets)),
        _stmt("CreateQueues", ["sqs:CreateQueue"], map(queue_arn, n.all_queues())),
        _stmt("DeadLetterArns", STATUS, map(queue_arn, dlqs)),
        _stmt("UpdateExisting", UPDATE_QUEUES, map(queue_arn, n.all_queues())),
    ]


_BUILDERS = {
    "enricher": _enricher,
    "validator": _validator,
    "router": _router,
    "aggregator": _aggregator,
    "notifier": _notifier,
    "uploader": _uploader,
    "dashboard": _dashboard,
    "replay": _replay,
    "provisioner": _provisioner,
}


def render_policies(
    config: PipelineConfig, *, ledger_prefix: str = LEDGER_PREFIX
) -> dict[str, Policy]:
    """Every service's policy document, by service name (``deploy/iam/<name>.json``)."""
    names = _Names(config, ledger_prefix)
    return {service: _document(_BUILDERS[service](names)) for service in SERVICES}


def policy_text(policy: Policy) -> str:
    """The committed form: two-space indented JSON, keys in a fixed order, final newline."""
    return json.dumps(policy, indent=2) + "\n"


def render_files(config: PipelineConfig, out: Path) -> dict[Path, str]:
    return {out / f"{name}.json": policy_text(doc) for name, doc in render_policies(config).items()}


def stale_files(config: PipelineConfig, out: Path) -> list[Path]:
    """Files under ``out`` that are missing or differ from what ``config`` renders."""
    return [
        path
        for path, text in render_files(config, out).items()
        if not path.is_file() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sensorpipe.provisioning.iam",
        description="Render one least-privilege IAM policy per service from the pipeline config.",
    )
    parser.add_argument("--config", type=Path, help="pipeline-config-v2.yaml (default: packaged)")
    parser.add_argument(
        "--out", type=Path, default=Path("deploy/iam"), help="folder of <service>.json"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the files are not up to date"
    )
    args = parser.parse_args(argv)
    try:
        config = load_pipeline_config(args.config)
    except ConfigError as exc:
        print(f"sensorpipe-iam: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(config, args.out)
        for path in stale:
            print(f"sensorpipe-iam: {path} is not what the config renders; re-run without --check")
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for path, text in render_files(config, args.out).items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
