"""The shared consumer runtime: loop, heartbeat, producer, metrics, logging."""

from sensorpipe.runtime.consumer import Consumer
from sensorpipe.runtime.handler import Acknowledger, BatchHandler
from sensorpipe.runtime.message import ACK, HOLD, Ack, Hold, Message, Outcome, Reject, Retry
from sensorpipe.runtime.producer import EnvelopeProducer
from sensorpipe.runtime.service import ServiceContext, ServiceSettings, run_service

__all__ = [
    "ACK",
    "HOLD",
    "Ack",
    "Acknowledger",
    "BatchHandler",
    "Consumer",
    "EnvelopeProducer",
    "Hold",
    "Message",
    "Outcome",
    "Reject",
    "Retry",
    "ServiceContext",
    "ServiceSettings",
    "run_service",
]
