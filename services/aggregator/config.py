"""Settings of the aggregator alone (environment ``SENSORPIPE_AGGREGATOR_<NAME>``).

Window size, grace, idle flush and the output prefix are pipeline settings
(``windowing`` in pipeline-config-v2.yaml); these are the knobs of this process.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe.config import ConfigError, PipelineConfig


class AggregatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_AGGREGATOR_", extra="ignore")

    # Every message stays in flight until all windows it feeds are written, so the
    # aggregator needs far more room than the runtime default; after a restart it must
    # also fit the messages the previous process held.
    max_in_flight: int = Field(default=1000, ge=10, le=100_000)
    # After (re)start no window closes for at least this long, and not before the shard
    # queue was seen caught up (recovery.py), so that messages a crashed or stopped
    # process held come back and are folded first. None: the queue's visibility timeout
    # plus a few seconds (every held message is visible again by then).
    recovery_seconds: float | None = Field(default=None, ge=0)
    # How many written windows (with their member ids, about 100 bytes each) are
    # remembered to classify duplicates and late readings without reading S3; older
    # ones are read back from S3 when needed.
    remembered_windows: int = Field(default=2_000, ge=100)
    # Windows due together are written in parallel (one S3 round trip each).
    writer_threads: int = Field(default=8, ge=1, le=64)
    tick_interval_seconds: float = Field(default=0.5, gt=0, le=10)


def shard_queue(config: PipelineConfig, shard: int, config_file: Path | None = None) -> str:
    """The aggregate queue of ``shard`` (one process per shard)."""
    names = config.queues.aggregate_shard_names()
    if shard >= len(names):
        raise ConfigError(
            f"shard {shard} does not exist: there are {len(names)} aggregate shard(s)",
            file=config_file,
            key="queues.aggregate_shards",
        )
    return names[shard]
