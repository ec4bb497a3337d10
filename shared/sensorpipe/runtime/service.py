"""Start-up of a consumer service: settings, config, logging, clients, metrics, signals, loop.

Each service's ``__main__`` calls :func:`run_service` with its name, the queue it reads,
a factory for its handler and the class of its own settings; everything else is the
same everywhere. Flags, the shared :class:`ServiceSettings` and the stage's settings are
parsed once, first, before the config file is read or any client made: a bad value
stops start-up with exit 2 and one line naming the variable or flag, as a bad config
file does. The handler factory finds the parsed settings in :class:`ServiceContext`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe import __version__
from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.cli import load_settings
from sensorpipe.columns import use_system_allocator
from sensorpipe.config import ConfigError, PipelineConfig, load_pipeline_config
from sensorpipe.config.errors import SettingProblem, SettingsError
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

StageSettingsT = TypeVar("StageSettingsT", bound=BaseSettings)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ServiceSettings(BaseSettings):
    """Per-process settings (environment ``SENSORPIPE_<NAME>``, or flags)."""

    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_", extra="ignore")

    pipeline_config: Path | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    shard: int = Field(default=0, ge=0)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)} (any case)")
        return value.upper()


@dataclass
class ServiceContext:
    """What a handler factory gets: the config, the settings parsed at start-up and
    ready-made clients.

    ``stage_settings`` holds the stage's own settings model (``AggregatorSettings``, ...)
    when :func:`run_service` was given its class; handlers read it with
    :meth:`settings_of` and never parse settings themselves.
    """

    name: str
    config: PipelineConfig
    settings: ServiceSettings
    sqs: SQSClient
    s3: S3Client
    stage_settings: BaseSettings | None = None

    def settings_of(self, kind: type[StageSettingsT]) -> StageSettingsT:
        """The stage's settings parsed at start-up. A context built by hand (a test)
        without them gets ``kind``'s values from the environment."""
        if self.stage_settings is None:
            return kind()
        if not isinstance(self.stage_settings, kind):
            raise TypeError(
                f"{self.name}: stage settings are {type(self.stage_settings).__name__}, "
                f"not {kind.__name__}: pass stage_settings={kind.__name__} to run_service"
            )
        return self.stage_settings


QueueChooser = Callable[[PipelineConfig, ServiceSettings], str]
HandlerFactory = Callable[[ServiceContext], BatchHandler]


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"sensorpipe-{name}",
        description=f"The {name} service. Every flag can also be set as SENSORPIPE_<FLAG> "
        f"(e.g. SENSORPIPE_METRICS_PORT); the {name}'s own knobs are environment variables.",
    )
    parser.add_argument("--config", type=Path, help="pipeline-config-v2.yaml to use")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics and /healthz")
    parser.add_argument("--metrics-host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--shard", type=int, help="shard index for sharded stages")
    parser.add_argument("--log-format", choices=["text", "json"])
    return parser


def _flags(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    given = {
        "pipeline_config": ("--config", args.config),
        "metrics_port": ("--metrics-port", args.metrics_port),
        "metrics_host": ("--metrics-host", args.metrics_host),
        "shard": ("--shard", args.shard),
        "log_format": ("--log-format", args.log_format),
    }
    return {field: flag for field, flag in given.items() if flag[1] is not None}


def startup_settings(
    name: str, argv: list[str] | None, stage_settings: type[BaseSettings] | None = None
) -> tuple[ServiceSettings, BaseSettings | None]:
    """Parse the flags, the shared settings and the stage's own, once, before anything
    else; every bad value of either model is reported together in one SettingsError."""
    args = _parser(name).parse_args(argv)
    problems: list[SettingProblem] = []
    settings: ServiceSettings | None = None
    own: BaseSettings | None = None
    try:
        settings = load_settings(ServiceSettings, _flags(args))
    except SettingsError as exc:
        problems += exc.problems
    if stage_settings is not None:
        try:
            own = load_settings(stage_settings)
        except SettingsError as exc:
            problems += exc.problems
    if problems or settings is None:
        raise SettingsError(problems)
    return settings, own


def run_service(
    name: str,
    choose_queue: QueueChooser,
    make_handler: HandlerFactory,
    argv: list[str] | None = None,
    *,
    stage_settings: type[BaseSettings] | None = None,
) -> int:
    """Run the ``name`` service until SIGTERM/SIGINT. Exit codes: 0 stopped cleanly,
    1 cannot start (AWS unreachable, queue missing), 2 a bad flag, setting or
    configuration file (one line on stderr naming it), 141 stdout closed early."""
    try:
        settings, own = startup_settings(name, argv, stage_settings)
    except SettingsError as exc:
        print(f"sensorpipe-{name}: bad setting {exc}", file=sys.stderr)
        return 2
    configure_logging(name, level=settings.log_level, json_lines=settings.log_format == "json")
    use_system_allocator()
    try:
        config = load_pipeline_config(settings.pipeline_config)
        queue = choose_queue(config, settings)  # a bad --shard stops here, before any I/O
        context = ServiceContext(name, config, settings, sqs_client(), s3_client(), own)
        handler = make_handler(context)
        consumer = Consumer(
            context.sqs,
            queue,
            handler,
            config.runtime,
            service=name,
            dlq_name=QueueSettings.dlq_name(queue),
            max_receives=config.queues.max_receive_count,
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
