"""``python -m services.aggregator --shard N``: consume aggregate shard N, write windows.

One process per shard: the router sends every reading of a sensor to the same shard
(stable hash of sensor_id), so a window is never split between processes.
"""

from __future__ import annotations

import sys

from sensorpipe.cli import command
from sensorpipe.config import PipelineConfig
from sensorpipe.runtime import ServiceSettings, run_service
from services.aggregator.config import AggregatorSettings, shard_queue
from services.aggregator.handler import from_context


def _shard_queue(config: PipelineConfig, settings: ServiceSettings) -> str:
    return shard_queue(config, settings.shard, settings.pipeline_config)


@command
def main(argv: list[str] | None = None) -> int:
    return run_service(
        "aggregator", _shard_queue, from_context, argv, stage_settings=AggregatorSettings
    )


if __name__ == "__main__":
    sys.exit(main())
