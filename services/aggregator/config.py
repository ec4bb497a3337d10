"""Settings of the aggregator alone (environment ``SENSORPIPE_AGGREGATOR_<NAME>``).

Window size, grace, idle flush, allowed lateness, the gap timeout and the output prefix
are pipeline settings (``windowing`` in pipeline-config-v2.yaml); these are the knobs
of this process.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe.config import ConfigError, PipelineConfig


class AggregatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_AGGREGATOR_", extra="ignore")

    # Messages are held until the checkpoint after their batch is applied, and while a
    # batch waits for its parts or for an earlier batch of its source.
    max_in_flight: int = Field(default=1000, ge=20, le=100_000)
    # The checkpoint is written after every received batch (and on idle ticks); within
    # one received batch, also once this much time passed since the last one.
    commit_interval_seconds: float = Field(default=0.5, ge=0, le=60)
    # Written windows kept in memory (with their member ids) for revisions, and pages
    # held up to as many documents; older ones are read back from the bucket (one GET
    # per page) when a late reading needs them.
    remembered_windows: int = Field(default=5_000, ge=100)
    # Pages written or read together go out in parallel (one S3 round trip each).
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
