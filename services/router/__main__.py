"""``python -m services.router``: consume the validated queue, write every destination."""

from __future__ import annotations

import sys

from sensorpipe.cli import command
from sensorpipe.config import PipelineConfig
from sensorpipe.runtime import ServiceSettings, run_service
from services.router.config import RouterSettings
from services.router.handler import RouterHandler


def _validated_queue(config: PipelineConfig, _settings: ServiceSettings) -> str:
    return config.queues.validated


@command
def main(argv: list[str] | None = None) -> int:
    return run_service(
        "router", _validated_queue, RouterHandler.from_context, argv, stage_settings=RouterSettings
    )


if __name__ == "__main__":
    sys.exit(main())
