"""``python -m benchmarks.forwarder``: a stage that only receives, forwards and deletes.

The transport ceiling of ``bench_e2e``: the pipeline's queue hops with the stages' work
taken out. It is a real consumer (``sensorpipe.runtime.run_service``: the same receiver
thread, heartbeat, producer and deletes as every service) whose handler sends each body
on untouched (``Message.passed_through``, never decoded) to every queue named in
``SENSORPIPE_FORWARD_TO`` in one producer call per queue (``forward_together``), or, with
none named, acknowledges it (a sink: the end of a path). It reads the queue named in
``SENSORPIPE_FORWARD_SOURCE``; both are queue names of the pipeline config it is given.

    SENSORPIPE_FORWARD_SOURCE=p-ingest SENSORPIPE_FORWARD_TO=p-enriched \\
        python -m benchmarks.forwarder --config pipeline-config-v2.yaml
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe.cli import command, load_settings
from sensorpipe.config import PipelineConfig
from sensorpipe.config.errors import SettingsError
from sensorpipe.envelope import Encoded
from sensorpipe.errors import SensorPipeError
from sensorpipe.runtime import (
    ACK,
    Ack,
    BatchHandler,
    EnvelopeProducer,
    Message,
    Outcome,
    ServiceContext,
    ServiceSettings,
    run_service,
)
from sensorpipe.runtime.forwarding import forward_together, queue_producer

SERVICE = "forwarder"


class ForwarderSettings(BaseSettings):
    """Which queue to read and where to send (environment ``SENSORPIPE_FORWARD_*``)."""

    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_FORWARD_", extra="ignore")

    source: str = ""  # the queue read (required; checked at start-up)
    to: str = ""  # comma-separated queue names sent to; empty: a sink


@dataclass
class _Passed:
    index: int
    encoded: list[Encoded]


class ForwardingHandler(BatchHandler):
    """Sends every received body on, untouched, to each target queue; then acks."""

    name = SERVICE

    def __init__(self, producers: list[EnvelopeProducer]) -> None:
        super().__init__()
        self._producers = producers

    def handle(self, messages: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome] = [ACK] * len(messages)
        for producer in self._producers:
            sent, _ = forward_together(producer, messages, _pass, service=SERVICE)
            # A failed send to any target retries the message (as the router does).
            outcomes = [s if isinstance(o, Ack) else o for o, s in zip(outcomes, sent, strict=True)]
        return outcomes


def _pass(index: int, message: Message) -> _Passed:
    return _Passed(index, [message.passed_through()])


@command
def main(argv: list[str] | None = None) -> int:
    try:
        own = load_settings(ForwarderSettings)
    except SettingsError as exc:
        print(f"sensorpipe-{SERVICE}: bad setting {exc}", file=sys.stderr)
        return 2
    targets = [name for name in own.to.split(",") if name]

    def source(_config: PipelineConfig, _settings: ServiceSettings) -> str:
        if not own.source:
            raise SensorPipeError(
                "SENSORPIPE_FORWARD_SOURCE is not set", hint="name the queue to read"
            )
        return own.source

    def handler(context: ServiceContext) -> ForwardingHandler:
        return ForwardingHandler([queue_producer(context, q, service=SERVICE) for q in targets])

    return run_service(SERVICE, source, handler, argv)


if __name__ == "__main__":
    sys.exit(main())
