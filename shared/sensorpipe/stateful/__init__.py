"""What the stateful stages (aggregator, notifier) share: source-order progress and
watermarks (streams.py), split-path coverage (parts.py), the one checkpoint and
recovery mechanism that runs a stage over the consumer loop (sequencer.py), its metrics,
and how a stage is put on the loop (wiring.py)."""

from sensorpipe.stateful.metrics import PrometheusObserver
from sensorpipe.stateful.sequencer import (
    Batch,
    SequencedHandler,
    SequencerSettings,
    Stage,
    read_checkpoint,
)
from sensorpipe.stateful.streams import StreamBook, Timing, Verdict
from sensorpipe.stateful.wiring import CHECKPOINT_PREFIX, checkpoint_key, sequenced

__all__ = [
    "CHECKPOINT_PREFIX",
    "Batch",
    "PrometheusObserver",
    "SequencedHandler",
    "SequencerSettings",
    "Stage",
    "StreamBook",
    "Timing",
    "Verdict",
    "checkpoint_key",
    "read_checkpoint",
    "sequenced",
]
