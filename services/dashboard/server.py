"""The dashboard's HTTP server: the page, its script and style, and the JSON it reads.

    GET /                 the page (static/index.html)
    GET /app.js, /app.css its script and style
    GET /api/overview     scenario, history, queues, throughput, rejected, notifications
    GET /api/windows      newest windows; ?sensor_id=ID for one sensor
    GET /healthz          {"status": "ok"}

Read-only, loopback by default, and a strict Content-Security-Policy: the page runs only
its own script and talks only to this server; data is inserted as text, never as HTML.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from services.dashboard.sources import PipelineView

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_MAX_SENSOR_ID = 128


def serve_dashboard(view: PipelineView, host: str, port: int) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; port 0 picks a free port (see server_port)."""
    assets = {path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in _ASSETS.items()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path in assets:
                body, kind = assets[url.path]
                self._send(200, kind, body)
            elif url.path == "/api/overview":
                self._json(200, view.overview())
            elif url.path == "/api/windows":
                sensor = parse_qs(url.query).get("sensor_id", [""])[0].strip()
                if len(sensor) > _MAX_SENSOR_ID:
                    self._json(400, {"error": f"sensor_id longer than {_MAX_SENSOR_ID}"})
                    return
                self._json(200, view.windows(sensor or None))
            elif url.path == "/healthz":
                self._json(200, {"status": "ok", "service": "dashboard"})
            elif url.path == "/favicon.ico":
                self._send(204, "image/x-icon", b"")  # none, and no 404 in the console
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _json(self, code: int, data: Any) -> None:
            self._send(code, "application/json", orjson.dumps(data, default=str))

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in _SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="dashboard-http", daemon=True).start()
    return server
