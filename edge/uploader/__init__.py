"""The edge uploader: new rows of the sensor database, in batch envelopes, to the ingest queue.

Checkpointed by row id (durably, after SQS accepted the batch), stamped with the active
scenario and config version read from the pipeline controller at the start of every batch,
with deterministic batch ids so a resend after a crash is idempotent downstream. Poison
rows go to a local quarantine file and the upload goes on; rows behind the checkpoint are
found and sent; an unreadable controller means the last known scenario, never a new one.
"""

from edge.uploader.batches import batch_id, generation_token
from edge.uploader.checkpoint import Checkpoint, CheckpointStore, PendingBatch
from edge.uploader.errors import (
    CheckpointError,
    SourceError,
    StampError,
    UnknownTableError,
    UploaderError,
)
from edge.uploader.idranges import IdRanges
from edge.uploader.quarantine import Quarantine, quarantine_path
from edge.uploader.source import SOURCE_TABLES, RowFingerprint, SensorSource
from edge.uploader.stamp import ControllerReader, LastKnownStore, Stamp, last_known_path
from edge.uploader.uploader import BatchResult, Totals, Uploader, UploadOptions

__all__ = [
    "SOURCE_TABLES",
    "BatchResult",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "ControllerReader",
    "IdRanges",
    "LastKnownStore",
    "PendingBatch",
    "Quarantine",
    "RowFingerprint",
    "SensorSource",
    "SourceError",
    "Stamp",
    "StampError",
    "Totals",
    "UnknownTableError",
    "UploadOptions",
    "Uploader",
    "UploaderError",
    "batch_id",
    "generation_token",
    "last_known_path",
    "quarantine_path",
]
