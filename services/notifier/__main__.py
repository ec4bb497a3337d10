"""``python -m services.notifier [--shard N]``: consume one notify shard queue."""

from __future__ import annotations

from sensorpipe.cli import command
from sensorpipe.config import ConfigError, PipelineConfig
from sensorpipe.runtime import ServiceSettings, run_service
from services.notifier.config import NotifierSettings
from services.notifier.handler import SERVICE, from_context


def choose_queue(config: PipelineConfig, settings: ServiceSettings) -> str:
    names = config.queues.notify_shard_names()
    if settings.shard >= len(names):
        raise ConfigError(
            f"shard {settings.shard} does not exist: there are {len(names)} notify shard(s)",
            file=settings.pipeline_config,
            key="queues.notify_shards",
            hint="use --shard 0..notify_shards-1, or raise queues.notify_shards",
        )
    return names[settings.shard]


@command
def main(argv: list[str] | None = None) -> int:
    return run_service(SERVICE, choose_queue, from_context, argv, stage_settings=NotifierSettings)


if __name__ == "__main__":
    raise SystemExit(main())
