"""``python -m services.dashboard``: serve the dashboard until SIGTERM/SIGINT.

Flags and settings (``SENSORPIPE_DASHBOARD_<NAME>``) are parsed first, then the
pipeline config is read; only then are clients made and the port bound. ``--help``
prints the usage and starts nothing.

Exit codes: 0 stopped; 2 a bad flag, setting or configuration file (named in one line
on stderr); 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.cli import command, load_settings
from sensorpipe.config import ConfigError, load_pipeline_config
from sensorpipe.config.errors import SettingsError
from sensorpipe.runtime.logs import configure_logging
from services.dashboard.config import DashboardSettings
from services.dashboard.server import serve_dashboard
from services.dashboard.sources import PipelineView

PROG = "sensorpipe-dashboard"

log = logging.getLogger("services.dashboard")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve the read-only pipeline dashboard (scenario, queues, throughput, "
        "lag, rejected records, notifications, windows). Every flag can also be set as "
        "SENSORPIPE_DASHBOARD_<FLAG>.",
    )
    parser.add_argument(
        "--config", type=Path, help="pipeline-config-v2.yaml (default: $SENSORPIPE_PIPELINE_CONFIG)"
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve on (default 8090; 0: any free)")
    return parser


def _flags(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    given = {"host": ("--host", args.host), "port": ("--port", args.port)}
    return {field: flag for field, flag in given.items() if flag[1] is not None}


@command
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(DashboardSettings, _flags(args))
        config = load_pipeline_config(args.config)
    except SettingsError as exc:
        print(f"{PROG}: bad setting {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging("dashboard", level="INFO", json_lines=False)
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
