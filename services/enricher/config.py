"""Settings of the enricher alone (environment ``SENSORPIPE_<NAME>``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class EnricherSettings(BaseSettings):
    """Knobs only the enricher reads; the node identity file is read by
    :mod:`sensorpipe.lineage` from ``SENSORPIPE_NODE_IDENTITY_FILE``."""

    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_", extra="ignore")

    # When set, OpenLineage run events (START, COMPLETE) are appended here, one JSON a line.
    openlineage_file: Path | None = None
