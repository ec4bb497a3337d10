"""``python -m services.enricher``: consume the ingest queue, stamp lineage, forward."""

from __future__ import annotations

import sys

from sensorpipe.cli import command
from sensorpipe.config import PipelineConfig
from sensorpipe.runtime import ServiceSettings, run_service
from services.enricher.config import EnricherSettings
from services.enricher.handler import EnricherHandler


def _ingest_queue(config: PipelineConfig, _settings: ServiceSettings) -> str:
    return config.queues.ingest


@command
def main(argv: list[str] | None = None) -> int:
    return run_service(
        "enricher",
        _ingest_queue,
        EnricherHandler.from_context,
        argv,
        stage_settings=EnricherSettings,
    )


if __name__ == "__main__":
    sys.exit(main())
