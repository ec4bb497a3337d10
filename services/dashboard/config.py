"""Settings of the dashboard (environment ``SENSORPIPE_DASHBOARD_<NAME>``).

Buckets, queues and the controller database come from pipeline-config-v2.yaml
(``$SENSORPIPE_PIPELINE_CONFIG``); these are the knobs of this process.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_DASHBOARD_", extra="ignore")

    # Loopback unless told otherwise: the page shows readings and record contents.
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # The controller's SQLite file; default: pipeline.controller_db of the config.
    controller_db: Path | None = None
    # Where throughput and lag come from (the Prometheus that scrapes the services).
    prometheus_url: AnyHttpUrl | None = None
    # How many rows each list shows (rejected records, notifications, windows).
    rows: int = Field(default=25, ge=1, le=500)
    # The page reloads its data this often.
    refresh_seconds: float = Field(default=5.0, ge=1, le=3600)
