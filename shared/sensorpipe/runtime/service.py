"""Start-up of a consumer service: config, logging, clients, metrics, signals, loop.

Each service's ``__main__`` calls :func:`run_service` with its name, the queue it reads
and a factory for its handler; everything else is the same everywhere.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe import __version__
from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.config import ConfigError, PipelineConfig, load_pipeline_config
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.errors import SensorPipeError
from sensorpipe.runtime.consumer import Consumer
from sensorpipe.runtime.handler import BatchHandler
from sensorpipe.runtime.http import serve_http
from sensorpipe.runtime.logs import configure_logging
from sensorpipe.runtime.metrics import BUILD_INFO

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)


class ServiceSettings(BaseSettings):
    """Per-process settings (environment ``SENSORPIPE_<NAME>``, or flags)."""

    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_", extra="ignore")

    pipeline_config: Path | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    shard: int = Field(default=0, ge=0)


@dataclass
class ServiceContext:
    """What a handler factory gets: the config and ready-made clients."""

    name: str
    config: PipelineConfig
    settings: ServiceSettings
    sqs: SQSClient
    s3: S3Client


QueueChooser = Callable[[PipelineConfig, ServiceSettings], str]
HandlerFactory = Callable[[ServiceContext], BatchHandler]


def _parse(argv: list[str] | None, name: str) -> ServiceSettings:
    parser = argparse.ArgumentParser(prog=f"sensorpipe-{name}", description=f"The {name} service.")
    parser.add_argument("--config", type=Path, help="pipeline-config-v2.yaml to use")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics and /healthz")
    parser.add_argument("--metrics-host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--shard", type=int, help="shard index for sharded stages")
    parser.add_argument("--log-format", choices=["text", "json"])
    args = parser.parse_args(argv)
    overrides = {
        "pipeline_config": args.config,
        "metrics_port": args.metrics_port,
        "metrics_host": args.metrics_host,
        "shard": args.shard,
        "log_format": args.log_format,
    }
    return ServiceSettings(**{k: v for k, v in overrides.items() if v is not None})


def run_service(
    name: str,
    choose_queue: QueueChooser,
    make_handler: HandlerFactory,
    argv: list[str] | None = None,
) -> int:
    try:
        settings = _parse(argv, name)
    except ValidationError as exc:
        print(f"sensorpipe-{name}: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(name, level=settings.log_level, json_lines=settings.log_format == "json")
    try:
        config = load_pipeline_config(settings.pipeline_config)
        context = ServiceContext(name, config, settings, sqs_client(), s3_client())
        handler = make_handler(context)
        queue = choose_queue(config, settings)
        consumer = Consumer(
            context.sqs,
            queue,
            handler,
            config.runtime,
            service=name,
            dlq_name=QueueSettings.dlq_name(queue),
        )
    except ConfigError as exc:
        print(f"sensorpipe-{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    except (SensorPipeError, BotoCoreError, ClientError) as exc:
        # e.g. the queue does not exist yet (not provisioned) or AWS is unreachable.
        print(f"sensorpipe-{name}: cannot start: {exc}", file=sys.stderr)
        return 1
    BUILD_INFO.info({"version": __version__, "service": name})

    def _stop(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        consumer.stop()

    # Before /healthz answers: whoever saw it healthy may SIGTERM it at once.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = serve_http(settings.metrics_host, settings.metrics_port, consumer.health)
    log.info(
        "%s consuming %s; metrics on http://%s:%d/metrics",
        name,
        queue,
        settings.metrics_host,
        server.server_port,
    )
    consumer.run()
    server.shutdown()
    log.info("%s stopped cleanly", name)
    return 0
