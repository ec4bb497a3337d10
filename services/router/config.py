"""Settings of the router alone (environment ``SENSORPIPE_ROUTER_<NAME>``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RouterSettings(BaseSettings):
    """Knobs that only the router reads; everything shared lives in the pipeline config."""

    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_ROUTER_", extra="ignore")

    # Objects are gzip JSON Lines by default (``.jsonl.gz``); plain ``.jsonl`` for tools
    # that cannot read compressed input.
    gzip_objects: bool = True
    # Messages of one receive are routed in parallel: S3 and SQS latency then overlaps
    # the encoding work (gzip and the network release the GIL). 1 = one at a time.
    route_threads: int = Field(default=4, ge=1, le=10)
