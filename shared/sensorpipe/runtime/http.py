"""The per-service HTTP endpoint: ``/metrics`` for Prometheus and ``/healthz``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def serve_http(host: str, port: int, health: Callable[[], dict[str, Any]]) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; port 0 picks a free port (see server_port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            elif self.path.startswith("/healthz"):
                status = health()
                # "degraded" still does its work (an uploader under its last known
                # scenario): an orchestrator must not restart it for that.
                code = 200 if status.get("status") in ("ok", "degraded") else 503
                self._send(code, "application/json", orjson.dumps(status))
            else:
                self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet access log
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
