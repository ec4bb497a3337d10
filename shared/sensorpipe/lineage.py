"""Lineage: where, by which job and when a record was processed (docs/LINEAGE.md).

Works inside Bacalhau (its task variables) and outside it (an identity file or a stable
local id). The per-process part is resolved once; per envelope one dict is built and per
record only the source row id is added, so stamping costs a dict copy per record.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sensorpipe.columns import JSON_TEXT, constant_column
from sensorpipe.envelope import Envelope, Record, utc_now_iso
from sensorpipe.errors import SensorPipeError

LINEAGE_VERSION = 1
NODE_ID_ENV = "BACALHAU_NODE_ID"
JOB_ID_ENV = "BACALHAU_JOB_ID"
EXECUTION_ID_ENV = "BACALHAU_EXECUTION_ID"
NODE_IDENTITY_FILE_ENV = "SENSORPIPE_NODE_IDENTITY_FILE"
DEFAULT_NODE_IDENTITY_FILE = "node-identity.json"
META_KEY = "lineage"  # envelope.meta: the lineage ids all records of the batch share
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")

# One execution id per local process run (Bacalhau gives one per task instead).
_LOCAL_RUN_ID = str(uuid.uuid4())


class LineageError(SensorPipeError):
    """The node identity cannot be determined from what was configured."""


@dataclass(frozen=True, slots=True)
class ProcessLineage:
    """The part of lineage that is the same for every record this process stamps."""

    node_id: str
    node_id_source: str  # bacalhau | identity-file | local
    job_id_hash: str | None
    execution_id: str
    execution_id_source: str  # bacalhau | local-run
    pipeline_name: str
    pipeline_version: str
    stage: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "lineage_version": LINEAGE_VERSION,
            "node_id": self.node_id,
            "node_id_source": self.node_id_source,
            "job_id_hash": self.job_id_hash,
            "execution_id": self.execution_id,
            "execution_id_source": self.execution_id_source,
            "pipeline": self.pipeline_name,
            "pipeline_version": self.pipeline_version,
            "stage": self.stage,
        }


def hash_job_id(job_id: str | None) -> str | None:
    """First 16 hex digits of SHA-256 of the job id: links records to a job without
    publishing the id itself. None when there is no job (running outside Bacalhau)."""
    if not job_id:
        return None
    return hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:16]


def local_node_id(hostname: str | None = None, machine_id: str | None = None) -> str:
    """A stable id for this machine: the same on every run, never random."""
    host = socket.gethostname() if hostname is None else hostname
    machine = _read_machine_id() if machine_id is None else machine_id
    digest = hashlib.sha256(f"{host}\n{machine}".encode()).hexdigest()[:16]
    return f"local-{digest}"


def _read_machine_id() -> str:
    for candidate in _MACHINE_ID_FILES:
        try:
            value = Path(candidate).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if value:
            return value
    return ""


def read_identity_file(path: Path) -> str:
    """The node id of an identity file (JSON object with ``node_id`` or ``id``)."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise LineageError(f"cannot read node identity file {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise LineageError(f"node identity file {path} is not valid JSON: {exc}") from exc
    value = data.get("node_id") or data.get("id") if isinstance(data, dict) else None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
        raise LineageError(
            f"node identity file {path} has no 'node_id' or 'id' string",
            hint=f'write {{"node_id": "..."}} or unset {NODE_IDENTITY_FILE_ENV}',
        )
    return str(value)


def resolve_node_id(env: Mapping[str, str]) -> tuple[str, str]:
    """(node id, where it came from): Bacalhau's variable, else the identity file, else
    the stable local id. A configured identity file that is missing is an error; the
    default file being absent is not."""
    from_bacalhau = env.get(NODE_ID_ENV, "").strip()
    if from_bacalhau:
        return from_bacalhau, "bacalhau"
    configured = env.get(NODE_IDENTITY_FILE_ENV, "").strip()
    path = Path(configured or DEFAULT_NODE_IDENTITY_FILE)
    if configured or path.is_file():
        return read_identity_file(path), "identity-file"
    return local_node_id(), "local"


def process_lineage(
    *,
    stage: str,
    pipeline_name: str,
    pipeline_version: str,
    env: Mapping[str, str] | None = None,
) -> ProcessLineage:
    """Resolve the per-process lineage once (call at start-up, not per record)."""
    environ = os.environ if env is None else env
    node_id, node_source = resolve_node_id(environ)
    execution = environ.get(EXECUTION_ID_ENV, "").strip()
    return ProcessLineage(
        node_id=node_id,
        node_id_source=node_source,
        job_id_hash=hash_job_id(environ.get(JOB_ID_ENV, "").strip() or None),
        execution_id=execution or _LOCAL_RUN_ID,
        execution_id_source="bacalhau" if execution else "local-run",
        pipeline_name=pipeline_name,
        pipeline_version=pipeline_version,
        stage=stage,
    )


def _stamped_table(envelope: Envelope, base: dict[str, Any]) -> pa.Table | None:
    """The columnar envelope's table with the ``lineage`` column (the same records as
    the dict path makes): the batch-wide part repeated, ``source_row_id`` the source
    rows' ``id`` column. None when the rows' ids are not one typed column (JSON text,
    or no ``sensor_data`` struct): the dict path says what each record's id is."""
    table = envelope.table
    ids = _source_row_ids(table)
    if ids is None:
        return None
    _, shared = constant_column(META_KEY, base, table.num_rows)
    assert isinstance(shared, pa.StructArray)
    children = [shared.field(i) for i in range(shared.type.num_fields)]
    names = [shared.type.field(i) for i in range(shared.type.num_fields)]
    lineage = pa.StructArray.from_arrays(
        [*children, ids], fields=[*names, pa.field("source_row_id", ids.type)]
    )
    if META_KEY in table.column_names:  # lineage describes the latest processing
        table = table.drop_columns([META_KEY])
    return table.append_column(META_KEY, lineage)


def _source_row_ids(table: pa.Table) -> pa.Array[Any] | None:
    if "sensor_data" not in table.column_names:
        return pa.nulls(table.num_rows)
    data = table.schema.field("sensor_data")
    if not pa.types.is_struct(data.type) or data.metadata:
        return None  # not every record's sensor_data is an object (or some lack one)
    column = table.column("sensor_data").combine_chunks()
    assert isinstance(column, pa.StructArray)
    index = data.type.get_field_index("id")
    if index < 0:
        return pa.nulls(table.num_rows)
    if (data.type.field(index).metadata or {}).get(JSON_TEXT):
        return None
    # Rows whose sensor_data is null have no id, whatever the child holds there.
    ids = column.field(index)
    return cast("pa.Array[Any]", pc.if_else(column.is_valid(), ids, pa.nulls(len(ids), ids.type)))


def source_row_id(record: Record) -> Any:
    data = record.get("sensor_data")
    return data.get("id") if isinstance(data, dict) else None


def enrich_envelope(
    envelope: Envelope, process: ProcessLineage, *, processed_at: str | None = None
) -> Envelope:
    """A copy of ``envelope`` whose records carry lineage, with the hop appended.

    Each record keeps ``sensor_data`` untouched; ``lineage`` is added beside it (an
    existing one is replaced: lineage describes the latest processing).
    """
    at = processed_at or utc_now_iso()
    out = envelope.with_records([])
    out.hops.append({"stage": process.stage, "at": at})
    base = process.as_dict()
    base.update(
        {
            "processed_at": at,
            "scenario": envelope.scenario,
            "config_version": envelope.config_version,
            "batch_id": envelope.batch_id,
            "source": envelope.source,
            # Shared by the batch's records: hops are the same for all of them.
            "hops": [dict(h) for h in out.hops],
        }
    )
    stamped = _stamped_table(envelope, base) if envelope.columnar else None
    if stamped is not None:
        out = out.with_table(stamped)
    else:
        out.records = [
            {**record, "lineage": {**base, "source_row_id": source_row_id(record)}}
            for record in envelope.records
        ]
    # The ids every record of the batch shares, once: stages that summarise records
    # (the aggregator's window provenance) read them here instead of from each record.
    out.meta[META_KEY] = {
        "batch_id": base["batch_id"],
        "node_id": base["node_id"],
        "job_id_hash": base["job_id_hash"],
    }
    return out
