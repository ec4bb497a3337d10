"""Replay for reprocessing, and a status view of the pipeline.

- ``dlq``: move dead-lettered messages back to their source queue, filtered by failure
  reason or batch id, rate-limited, with a dry run (SQS's own redrive cannot filter).
- ``archive``: re-send readings stored in the archival, raw or schematized bucket to
  the ingest queue under deterministic batch ids, so outputs are overwritten, not
  duplicated.
- ``status``: queue depths (every DLQ included) and bucket object counts.
"""

from sensorpipe.replay.archive import ArchiveReplayer, ArchiveReplayResult, ArchiveSelection
from sensorpipe.replay.dlq import DlqReplayer, DlqReplayResult, DlqSelection, replay_dlq
from sensorpipe.replay.errors import ReplayError
from sensorpipe.replay.status import PipelineStatus, collect_status

__all__ = [
    "ArchiveReplayResult",
    "ArchiveReplayer",
    "ArchiveSelection",
    "DlqReplayResult",
    "DlqReplayer",
    "DlqSelection",
    "PipelineStatus",
    "ReplayError",
    "collect_status",
    "replay_dlq",
]
