"""``python -m services.enricher``: consume the ingest queue, stamp lineage, forward."""

from __future__ import annotations

import sys

from sensorpipe.config import PipelineConfig
from sensorpipe.runtime import ServiceSettings, run_service
from services.enricher.handler import EnricherHandler


def _ingest_queue(config: PipelineConfig, _settings: ServiceSettings) -> str:
    return config.queues.ingest


def main(argv: list[str] | None = None) -> int:
    return run_service("enricher", _ingest_queue, EnricherHandler.from_context, argv)


if __name__ == "__main__":
    sys.exit(main())
