"""``python -m services.validator``: consume the enriched queue, validate, forward."""

from __future__ import annotations

import sys

from sensorpipe.cli import command
from sensorpipe.config import PipelineConfig
from sensorpipe.runtime import ServiceSettings, run_service
from services.validator.config import ValidatorSettings
from services.validator.handler import ValidatorHandler


def _enriched_queue(config: PipelineConfig, _settings: ServiceSettings) -> str:
    return config.queues.enriched


@command
def main(argv: list[str] | None = None) -> int:
    return run_service(
        "validator",
        _enriched_queue,
        ValidatorHandler.from_context,
        argv,
        stage_settings=ValidatorSettings,
    )


if __name__ == "__main__":
    sys.exit(main())
