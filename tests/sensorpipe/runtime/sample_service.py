"""A minimal real service for the runtime's process-level tests (not shipped).

``python -m tests.sensorpipe.runtime.sample_service [--config FILE]`` consumes
``$SAMPLE_QUEUE`` (default: the config's ingest queue) through ``run_service``. For each
batch it appends one line per message to ``$SAMPLE_RECORD_FILE``::

    processing <batch_id> <pid>     before the work (may repeat after a hand-back)
    acked <batch_id> <pid>          after the delete succeeded (must never repeat)

then sleeps ``$SAMPLE_BATCH_DELAY_S`` seconds between the two, so a SIGTERM lands in
the middle of a batch. It holds its messages and acks them itself, so the "acked" line
is written only once the delete really happened.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sensorpipe.config import PipelineConfig
from sensorpipe.envelope import ATTR_BATCH_ID
from sensorpipe.runtime import (
    HOLD,
    BatchHandler,
    Message,
    Outcome,
    ServiceContext,
    ServiceSettings,
    run_service,
)


class RecordingHandler(BatchHandler):
    name = "sample"

    def __init__(self, record_file: Path, delay_s: float) -> None:
        super().__init__()
        self.record_file = record_file
        self.delay_s = delay_s

    def _record(self, verb: str, messages: list[Message]) -> None:
        pid = os.getpid()
        lines = "".join(f"{verb} {m.attributes.get(ATTR_BATCH_ID)} {pid}\n" for m in messages)
        # One O_APPEND write per batch: lines from two processes never interleave.
        fd = os.open(self.record_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def handle(self, messages: list[Message]) -> list[Outcome]:
        self._record("processing", messages)
        time.sleep(self.delay_s)
        assert self.acknowledger is not None
        self.acknowledger.ack(messages)
        self._record("acked", messages)
        return [HOLD] * len(messages)


def _queue(config: PipelineConfig, _settings: ServiceSettings) -> str:
    return os.environ.get("SAMPLE_QUEUE") or config.queues.ingest


def _handler(_context: ServiceContext) -> BatchHandler:
    record_file = Path(os.environ.get("SAMPLE_RECORD_FILE", "sample-records.log"))
    return RecordingHandler(record_file, float(os.environ.get("SAMPLE_BATCH_DELAY_S", "0.2")))


if __name__ == "__main__":
    raise SystemExit(run_service("sample", _queue, _handler))
