"""Prometheus metrics of the uploader (served on /metrics when a port is given).

Shared names (records, messages, scenario) come from sensorpipe.runtime.metrics with
``service="uploader"``; these add what only the edge knows: where the checkpoint is,
how far behind it is, how often the source database was recreated, rows set aside in
quarantine or found behind the checkpoint, and whether the controller is readable.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from sensorpipe.runtime.metrics import PREFIX

BATCHES = Counter(
    f"{PREFIX}_uploader_batches_total", "Batches sent to the ingest queue", ["outcome"]
)
CHECKPOINT_ROW_ID = Gauge(
    f"{PREFIX}_uploader_checkpoint_row_id", "Last source row id SQS accepted (checkpoint)"
)
BACKLOG_ROWS = Gauge(
    f"{PREFIX}_uploader_backlog_rows", "Source rows above the checkpoint at the last look"
)
SOURCE_GENERATION = Gauge(
    f"{PREFIX}_uploader_source_generation", "Generation of the source database (recreations)"
)
SOURCE_RECREATIONS = Counter(
    f"{PREFIX}_uploader_source_recreations_total", "Times the source database was recreated"
)
LAST_BATCH_TIMESTAMP = Gauge(
    f"{PREFIX}_uploader_last_batch_timestamp_seconds", "Unix time of the last batch sent"
)
ROWS_QUARANTINED = Counter(
    f"{PREFIX}_uploader_rows_quarantined_total",
    "Source rows set aside in the local quarantine file instead of sent",
    ["reason"],
)
ROWS_BEHIND_CHECKPOINT = Counter(
    f"{PREFIX}_uploader_rows_behind_checkpoint_total",
    "Rows found at or below the checkpoint after it had moved past their id (sent late)",
)
CONTROLLER_AVAILABLE = Gauge(
    f"{PREFIX}_uploader_controller_available",
    "1 when the pipeline controller was readable at the last batch, 0 when the last "
    "known scenario was used",
)
