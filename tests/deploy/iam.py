"""A small, honest IAM evaluator for the proof in ``test_iam.py``.

A recorded call (``sensorpipe.aws``'s call log: service, operation, bucket/key/prefix or
queue) becomes a request: the IAM action it needs, the ARN it touches and its condition
context (``s3:prefix`` for listings). A policy allows the request when an ``Allow``
statement matches the action (IAM actions are case-insensitive, ``*`` wildcards), the
resource (``fnmatch`` on the ARN, case-sensitive) and every condition, and no ``Deny``
statement matches. Conditions: ``StringEquals`` and ``StringLike`` on keys the request
carries (a key the request lacks fails the condition, as in IAM); any other operator or
``NotAction``/``NotResource`` is refused rather than guessed.

The mapping below is written from the AWS Service Authorization Reference, not from the
policies: several operations share one action (``HeadObject`` is ``s3:GetObject``,
``ListObjectsV2`` is ``s3:ListBucket``, the SQS ``...Batch`` calls are their single form).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# (service, operation) -> IAM action, and whether the ARN is the object's or the bucket's.
S3_OBJECT_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
}
S3_BUCKET_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "CreateBucket": "s3:CreateBucket",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
}
SQS_ACTIONS = {
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueUrl": "sqs:GetQueueUrl",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "SetQueueAttributes": "sqs:SetQueueAttributes",
    "CreateQueue": "sqs:CreateQueue",
}
# A concrete region and account: the policies' ``*:*`` must really match them.
REGION, ACCOUNT = "us-east-1", "000000000000"


class UnknownCall(AssertionError):
    """A recorded operation this mapping does not know: add it, from the AWS reference."""


class Unsupported(AssertionError):
    """A policy uses something this evaluator does not evaluate."""


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()

    def key(self, name: str) -> str | None:
        return dict(self.context).get(name)


def request_of(call: Mapping[str, Any]) -> Request:
    service, operation = call["service"], call["operation"]
    if service == "s3":
        bucket = call["bucket"]
        if operation in S3_OBJECT_ACTIONS:
            return Request(S3_OBJECT_ACTIONS[operation], f"arn:aws:s3:::{bucket}/{call['key']}")
        if operation in S3_BUCKET_ACTIONS:
            context = (("s3:prefix", call["prefix"]),) if "prefix" in call else ()
            return Request(S3_BUCKET_ACTIONS[operation], f"arn:aws:s3:::{bucket}", context)
    if service == "sqs" and operation in SQS_ACTIONS:
        return Request(SQS_ACTIONS[operation], f"arn:aws:sqs:{REGION}:{ACCOUNT}:{call['queue']}")
    raise UnknownCall(f"no IAM action known for {service}:{operation} (call {dict(call)})")


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class Grant:
    """One (statement, action, resource) triple a policy allows."""

    sid: str
    action: str
    resource: str
    condition: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, request: Request) -> bool:
        return (
            fnmatch.fnmatch(request.action.lower(), self.action.lower())
            and fnmatch.fnmatchcase(request.resource, self.resource)
            and conditions_hold(self.condition, request)
        )


def conditions_hold(condition: Mapping[str, Any], request: Request) -> bool:
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            value = request.key(key)
            if value is None:
                return False
            if operator == "StringEquals":
                ok = value in _listed(wanted)
            elif operator == "StringLike":
                ok = any(fnmatch.fnmatchcase(value, w) for w in _listed(wanted))
            else:
                raise Unsupported(f"condition operator {operator} is not evaluated here")
            if not ok:
                return False
    return True


def grants(policy: Mapping[str, Any], effect: str = "Allow") -> Iterator[Grant]:
    assert policy["Version"] == "2012-10-17", "policies must use the current language version"
    for i, statement in enumerate(policy["Statement"]):
        for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
            if unsupported in statement:
                raise Unsupported(f"statement {i} uses {unsupported}")
        if statement["Effect"] != effect:
            continue
        sid = statement.get("Sid", str(i))
        for action in _listed(statement["Action"]):
            for resource in _listed(statement["Resource"]):
                yield Grant(sid, action, resource, statement.get("Condition", {}))


def allowed(policy: Mapping[str, Any], request: Request) -> bool:
    if any(g.matches(request) for g in grants(policy, "Deny")):
        return False
    return any(g.matches(request) for g in grants(policy))
