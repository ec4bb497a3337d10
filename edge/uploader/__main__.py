"""``python -m edge.uploader``: send new sensor rows to the ingest queue.

  python -m edge.uploader --db data/sensor_data.db            # continuous
  python -m edge.uploader --db data/sensor_data.db --once     # drain what is there, exit
  python -m edge.uploader --db data/sensor_data.db --dry-run --once   # print, send nothing

Settings come from the pipeline config (--config, else $SENSORPIPE_PIPELINE_CONFIG, else
the packaged default); flags override them. Progress goes to stderr; --dry-run prints one
JSON line per batch that would be sent to stdout. Exit codes: 0 done, 1 runtime error,
2 bad arguments or configuration (always one line on stderr naming the flag or variable,
no traceback), 141 when the reader of stdout went away (``| head``), as every command.

The controller database is only ever opened read-only (never created); see
``edge.uploader.stamp`` for what happens while it is unreadable.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from edge.uploader.checkpoint import CheckpointStore, default_checkpoint_path
from edge.uploader.source import SOURCE_TABLES, SensorSource
from edge.uploader.stamp import ControllerReader
from edge.uploader.uploader import Uploader, UploadOptions
from sensorpipe.aws import queue_url, sqs_client
from sensorpipe.cli import bounded_int, command
from sensorpipe.config import ConfigError, PipelineConfig, load_pipeline_config
from sensorpipe.controller import ControllerError
from sensorpipe.errors import SensorPipeError
from sensorpipe.runtime.http import serve_http
from sensorpipe.runtime.logs import configure_logging
from sensorpipe.runtime.producer import EnvelopeProducer


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (exit 2), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"uploader: error: {message} (see --help)\n")


class _BadSetting(Exception):
    """A flag or variable with a value that cannot work; exit 2 with this line."""


_batch_size = bounded_int(1, 100_000)
_port = bounded_int(0, 65535)


def _env_port(environ: dict[str, str]) -> int | None:
    text = environ.get("SENSORPIPE_METRICS_PORT", "").strip()
    if not text:
        return None
    try:
        return _port(text) or None
    except argparse.ArgumentTypeError as exc:
        raise _BadSetting(f"SENSORPIPE_METRICS_PORT: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m edge.uploader",
        description="Send new rows of an edge sensor database to the pipeline's ingest queue.",
    )
    p.add_argument("--db", type=Path, help="sensor SQLite file (default: source.path)")
    p.add_argument("--config", type=Path, help="pipeline-config-v2.yaml")
    p.add_argument("--table", choices=SOURCE_TABLES, help="default: source.table_name")
    p.add_argument("--once", action="store_true", help="send what is there, then exit")
    p.add_argument("--dry-run", action="store_true", help="print batches; send and save nothing")
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        help="rows per batch, 1..100000 (default: uploader.batch_size)",
    )
    p.add_argument("--controller-db", type=Path, help="default: pipeline.controller_db")
    p.add_argument("--state-dir", type=Path, help="default: uploader.state_dir")
    p.add_argument("--checkpoint", type=Path, help="checkpoint file (default: in --state-dir)")
    p.add_argument("--log-json", action="store_true", help="JSON log lines on stderr")
    p.add_argument(
        "--metrics-port",
        type=_port,
        help="serve /metrics and /healthz here (default: $SENSORPIPE_METRICS_PORT, else off)",
    )
    return p


def _build(args: argparse.Namespace, config: PipelineConfig) -> Uploader:
    db = args.db or Path(config.source.path)
    table = args.table or config.source.table_name
    name = config.uploader.source_name
    checkpoint = args.checkpoint or default_checkpoint_path(
        args.state_dir or Path(config.uploader.state_dir), name, db, table
    )
    controller_db = args.controller_db or Path(config.pipeline.controller_db)
    # Read-only and opened per batch: never created, and a missing or broken file does
    # not stop the start (the last known scenario is used, or nothing is sent).
    controller = ControllerReader(controller_db, config.scenario_names())
    max_bytes = min(config.uploader.max_batch_bytes, config.queues.max_body_bytes)
    sender = None
    if not args.dry_run:
        sqs = sqs_client()
        ingest = config.queues.ingest
        sender = EnvelopeProducer(
            sqs=sqs,
            queue_url=queue_url(sqs, ingest),
            queue_name=ingest,
            max_body_bytes=max_bytes,
            compress=config.runtime.compress,
            columnar=config.runtime.columnar,
            service="uploader",
        )
    options = UploadOptions(
        source_name=name,
        batch_size=args.batch_size or config.uploader.batch_size,
        max_batch_bytes=max_bytes,
        poll_interval_s=config.uploader.poll_interval_seconds,
        compress=config.runtime.compress,
        columnar=config.runtime.columnar,
        dry_run=args.dry_run,
    )
    return Uploader(
        source=SensorSource(db, table),
        store=CheckpointStore(checkpoint),
        controller=controller,
        sender=sender,
        options=options,
        known_scenarios=config.scenario_names(),
        dry_run_out=sys.stdout,
    )


@command
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        metrics_port = (
            args.metrics_port if args.metrics_port is not None else _env_port(dict(os.environ))
        )
    except _BadSetting as exc:
        print(f"uploader: error: {exc}", file=sys.stderr)
        return 2
    configure_logging("uploader", json_lines=args.log_json)
    try:
        config = load_pipeline_config(args.config)
    except ConfigError as exc:
        print(f"uploader: configuration error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the current batch finishes (send + checkpoint), then we exit

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = time.monotonic()
    try:
        uploader = _build(args, config)
        if metrics_port:
            host = os.environ.get("SENSORPIPE_METRICS_HOST", "127.0.0.1")
            try:
                serve_http(host, metrics_port, uploader.health)
            except OSError as exc:
                print(
                    f"uploader: error: --metrics-port / SENSORPIPE_METRICS_PORT {metrics_port} "
                    f"on SENSORPIPE_METRICS_HOST {host!r}: cannot serve there ({exc})",
                    file=sys.stderr,
                )
                return 2
        print(
            f"uploader: {uploader.source.name} -> {config.queues.ingest}, checkpoint "
            f"{uploader.store.path} (generation {uploader.state.generation}, "
            f"last id {uploader.state.last_id})",
            file=sys.stderr,
        )
        totals = uploader.drain(stop) if args.once else uploader.run(stop)
    except (SensorPipeError, ControllerError) as exc:
        print(f"uploader: error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(
            f"uploader: error: SQS: {exc} (check the AWS_* variables and that the ingest "
            f"queue {config.queues.ingest} exists: sensorpipe-provision creates it)",
            file=sys.stderr,
        )
        return 1
    elapsed = max(time.monotonic() - started, 1e-9)
    print(
        f"uploader: {'would send' if args.dry_run else 'sent'} {totals.records} records in "
        f"{totals.batches} batches ({totals.messages} messages, {totals.bytes / 1024:.1f} KiB) "
        f"in {elapsed:.2f} s ({totals.records / elapsed:.0f} records/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
