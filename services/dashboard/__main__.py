"""``python -m services.dashboard``: serve the dashboard until SIGTERM/SIGINT.

Exit codes: 0 stopped; 2 a bad setting or configuration file (named in the message).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from pydantic import ValidationError

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import ConfigError, load_pipeline_config
from sensorpipe.runtime.logs import configure_logging
from services.dashboard.config import DashboardSettings
from services.dashboard.server import serve_dashboard
from services.dashboard.sources import PipelineView

log = logging.getLogger("services.dashboard")


def main() -> int:
    configure_logging("dashboard", level="INFO", json_lines=False)
    try:
        settings = DashboardSettings()
        config = load_pipeline_config()
    except ValidationError as exc:
        print(f"sensorpipe-dashboard: bad setting: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"sensorpipe-dashboard: configuration error: {exc}", file=sys.stderr)
        return 2
    view = PipelineView(config, settings, s3_client(), sqs_client())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = serve_dashboard(view, settings.host, settings.port)
    log.info("dashboard on http://%s:%d/", settings.host, server.server_port)
    stop.wait()
    server.shutdown()
    log.info("dashboard stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
