"""The scenario vocabulary: the union of both seed documents.

A scenario names what the pipeline does with a batch. The routing table in
``pipeline-config-v2.yaml`` says, per scenario, which stages act and which destinations
receive records; users may add scenarios there without code.
"""

from __future__ import annotations

BUILTIN_SCENARIOS: tuple[str, ...] = (
    "raw",
    "schematized",
    "filtered",
    "lineage",
    "aggregated",
    "multi-destination",
    "notification",
)

DEFAULT_SCENARIO = "raw"
