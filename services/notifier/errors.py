"""Errors of the notifier; each carries what an operator needs to act."""

from __future__ import annotations

from sensorpipe.errors import SensorPipeError


class NotifierError(SensorPipeError):
    """Root of the notifier's own errors."""


class PublishError(NotifierError):
    """A notification could not be sent or recorded; its input is retried."""

    def __init__(self, burst_id: str, location: str, cause: str) -> None:
        self.burst_id = burst_id
        self.location = location
        super().__init__(
            f"notification {burst_id} for location {location!r} failed: {cause}",
            hint="the input messages are not acknowledged; the burst is found again on retry",
        )


class UnsendableError(NotifierError):
    """SQS refuses a notification for what it holds; retrying cannot help. The stage
    records it in the error bucket (``unsendable-notifications/``) and goes on."""

    def __init__(self, burst_id: str, location: str, cause: str) -> None:
        self.burst_id = burst_id
        self.location = location
        self.cause = cause
        super().__init__(
            f"notification {burst_id} for location {location!r} was refused by SQS: {cause}",
            hint="the burst is kept in unsendable-notifications/ in the error bucket with "
            "its whole body; fix the cause and send it from there",
        )
