"""Errors of the consumer runtime."""

from __future__ import annotations

from sensorpipe.errors import SensorPipeError


class RuntimeFailure(SensorPipeError):
    """Root of the runtime's own errors."""


class SendError(RuntimeFailure):
    """SQS refused some messages of a batch even after retries."""

    def __init__(self, queue: str, failures: list[str]) -> None:
        self.queue = queue
        self.failures = failures
        super().__init__(
            f"sending to {queue} failed for {len(failures)} message(s): {'; '.join(failures[:3])}",
            hint="the batch was not acknowledged and will be retried",
        )
