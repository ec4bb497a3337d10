"""A stand-in service for the process tests: ``burn`` spends a fixed amount of CPU at
start-up (something for a profiler to find), then ``/healthz`` answers on
``$SENSORPIPE_METRICS_PORT`` until SIGTERM, which exits 0."""

from __future__ import annotations

import os
import signal
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType

WORK = 10_000_000  # loop turns: a few tenths of a second


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


def burn(turns: int) -> int:
    total = 0
    for i in range(turns):
        total += i % 7
    return total


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit)
    burn(WORK)
    port = int(os.environ["SENSORPIPE_METRICS_PORT"])
    with HTTPServer(("127.0.0.1", port), Health) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
