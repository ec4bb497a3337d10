"""Errors of the replay tool.

Each one says what failed, where (queue, bucket, key), why, and what to do. The class
decides the exit code: :class:`ReplayUsageError` means the request or the configuration
is wrong (exit 2, nothing was changed); :class:`ReplayAwsError` means an AWS call failed
(exit 1; messages stay where they were, nothing is lost).
"""

from __future__ import annotations

from collections.abc import Iterable

from botocore.exceptions import NoCredentialsError, NoRegionError

from sensorpipe.errors import SensorPipeError


class ReplayError(SensorPipeError):
    """Root of every error the replay tool raises on purpose."""

    exit_code = 1


class ReplayUsageError(ReplayError):
    """The request cannot be carried out as asked; nothing was read or moved."""

    exit_code = 2


class InvalidArgumentError(ReplayUsageError):
    """An option value is malformed or out of range."""

    def __init__(self, option: str, value: str, problem: str, *, hint: str | None = None):
        self.option = option
        self.value = value
        super().__init__(f"{option} {value!r}: {problem}", hint=hint)


class UnknownQueueError(ReplayUsageError):
    """``--queue`` names no queue of this pipeline's configuration."""

    def __init__(self, queue: str, *, valid: Iterable[str], hint: str | None = None) -> None:
        self.queue = queue
        self.valid = list(valid)
        super().__init__(
            f"queue {queue!r} is not a queue of this pipeline",
            hint=hint or f"valid queues: {', '.join(self.valid)}",
        )


class UnknownScenarioError(ReplayUsageError):
    """``--scenario`` (or an object's recorded scenario) is not in the pipeline config."""

    def __init__(self, scenario: str, *, valid: Iterable[str], where: str = "--scenario"):
        self.scenario = scenario
        self.valid = sorted(valid)
        super().__init__(
            f"{where}: unknown scenario {scenario!r}",
            hint=f"valid scenarios: {', '.join(self.valid)}",
        )


class ResourceNotFoundError(ReplayUsageError):
    """A queue or bucket the configuration names does not exist (not provisioned, or
    the wrong configuration file / prefix)."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(
            f"{kind} {name!r} does not exist",
            hint="check --config (queue/bucket prefix) or run `sensorpipe-provision --config FILE`",
        )


class AwsSetupError(ReplayUsageError):
    """No credentials or region: the AWS environment is not configured."""

    def __init__(self, operation: str, resource: str, cause: object) -> None:
        self.operation = operation
        self.resource = resource
        super().__init__(
            f"{operation} on {resource}: {cause}",
            hint="set AWS_REGION and credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY); for LocalStack also AWS_ENDPOINT_URL",
        )


class ReplayAwsError(ReplayError):
    """An AWS call failed after botocore's own retries."""

    def __init__(self, operation: str, resource: str, cause: object) -> None:
        self.operation = operation
        self.resource = resource
        self.cause = str(cause)
        super().__init__(
            f"{operation} on {resource} failed: {cause}",
            hint="check AWS_ENDPOINT_URL, credentials and connectivity, "
            "then re-run (replay is safe to repeat; nothing unsent was removed)",
        )


class ReplaySendError(ReplayAwsError):
    """Some messages could not be sent to their destination; they were left in place.

    ``summary`` holds the report of what did move, so the caller can still show it.
    """

    def __init__(self, queue: str, failures: list[str], *, summary: list[str] | None = None):
        self.failures = failures
        self.summary = summary or []
        shown = "; ".join(failures[:3]) + (" ..." if len(failures) > 3 else "")
        super().__init__("SendMessageBatch", queue, f"{len(failures)} message(s) refused: {shown}")


_MISSING_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchBucket",
        "404",
    }
)


def aws_failure(operation: str, kind: str, name: str, exc: Exception) -> ReplayError:
    """The replay error for a failed boto3 call: a missing resource is a configuration
    problem (exit 2), anything else an AWS failure (exit 1)."""
    if isinstance(exc, NoCredentialsError | NoRegionError):
        return AwsSetupError(operation, f"{kind} {name}", exc)
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in _MISSING_CODES:
        return ResourceNotFoundError(kind, name)
    return ReplayAwsError(operation, f"{kind} {name}", exc)
