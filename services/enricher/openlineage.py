"""OpenLineage run events for the enricher's lineage ids (optional, to a file).

One run per process: START when the first batch is enriched, COMPLETE at shutdown.
The run id is the execution id (a UUID derived from it when Bacalhau's id is not one),
so the events join the per-record lineage on ``execution_id``.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import orjson

from sensorpipe import __version__
from sensorpipe.envelope import utc_now_iso
from sensorpipe.lineage import ProcessLineage

PRODUCER = f"https://github.com/sensorpipe/sensorpipe/tree/v{__version__}"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
JOB_TYPE_SCHEMA = (
    "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"
)


def run_id(execution_id: str) -> str:
    try:
        return str(uuid.UUID(execution_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sensorpipe:execution:{execution_id}"))


class OpenLineageLog:
    """Appends run events (JSON Lines) to ``path``."""

    def __init__(self, path: Path, lineage: ProcessLineage, *, namespace: str) -> None:
        self._path = path
        self._lineage = lineage
        self._namespace = namespace
        self._started = False
        self._completed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self._write(self.event("START"))

    def complete(self) -> None:
        with self._lock:
            if not self._started or self._completed:
                return
            self._completed = True
            self._write(self.event("COMPLETE"))

    def event(self, event_type: str) -> dict[str, Any]:
        lin = self._lineage
        return {
            "eventType": event_type,
            "eventTime": utc_now_iso(),
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
            "run": {
                "runId": run_id(lin.execution_id),
                "facets": {
                    "sensorpipe": {
                        "_producer": PRODUCER,
                        "_schemaURL": f"{PRODUCER}/docs/LINEAGE.md",
                        "node_id": lin.node_id,
                        "node_id_source": lin.node_id_source,
                        "job_id_hash": lin.job_id_hash,
                        "execution_id": lin.execution_id,
                        "pipeline_version": lin.pipeline_version,
                    }
                },
            },
            "job": {
                "namespace": self._namespace,
                "name": f"{self._namespace}.{lin.stage}",
                "facets": {
                    "jobType": {
                        "_producer": PRODUCER,
                        "_schemaURL": JOB_TYPE_SCHEMA,
                        "processingType": "STREAMING",
                        "integration": "SENSORPIPE",
                        "jobType": "JOB",
                    }
                },
            },
            "inputs": [],
            "outputs": [],
        }

    def _write(self, event: dict[str, Any]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("ab") as out:
            out.write(orjson.dumps(event) + b"\n")
