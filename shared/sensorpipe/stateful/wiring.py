"""How a stateful stage is put on the consumer loop: the same for every one of them.

Each service builds its stage and says how its watermark moves (``Timing``) and how
much it may hold; :func:`sequenced` adds what they share: the shard's checkpoint key,
the Prometheus hooks, the lease (held messages come back within it after a crash), the
quiet time after a start (no source counts as idle until a stopped process's messages
are back), and the hold limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sensorpipe.config import PipelineConfig
from sensorpipe.stateful.metrics import PrometheusObserver
from sensorpipe.stateful.sequencer import SequencedHandler, SequencerSettings, Stage
from sensorpipe.stateful.streams import StreamBook, Timing
from sensorpipe.store import ObjectStore

CHECKPOINT_PREFIX = "_checkpoints"  # '_' keeps lake readers (Spark, Hive, Athena) out
_RESTART_MARGIN_S = 5.0


def checkpoint_key(service: str, shard: int) -> str:
    return f"{CHECKPOINT_PREFIX}/{service}-shard-{shard}.json"


def sequenced(
    service: str,
    stage: Stage,
    timing: Timing,
    store: ObjectStore,
    config: PipelineConfig,
    *,
    shard: int,
    max_in_flight: int,
    commit_interval_s: float,
    tick_interval_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> SequencedHandler:
    """The consumer-loop handler running ``stage`` for one shard.

    Parameters:
        service: the service's name (metrics, logs, the checkpoint's key).
        stage: the stateful stage.
        timing: how the shard's watermark moves (grace, idle rule, gap timeout).
        store: the bucket of the shard's checkpoint.
        config: the pipeline config (the lease, the consumer's receive size).
        shard: the shard this process consumes.
        max_in_flight: messages the process may hold at once.
        commit_interval_s: see :class:`~sensorpipe.stateful.sequencer.SequencerSettings`.
        tick_interval_s: how often the loop ticks when idle (idle rule, gap timeout).
        clock: monotonic processing time.
    """
    lease = config.runtime.lease(config.queues)
    handler = SequencedHandler(
        service,
        stage,
        StreamBook(timing),
        store,
        checkpoint_key(service, shard),
        PrometheusObserver(service),
        SequencerSettings(
            commit_interval_s=commit_interval_s,
            # Room for four more receives, so that a missing batch can still come in;
            # never less than half the limit (a small one would give every gap up).
            max_held=max(max_in_flight // 2, max_in_flight - 4 * config.runtime.max_messages),
        ),
        clock=clock,
        restart_quiet_s=lease + _RESTART_MARGIN_S,
    )
    handler.lease_s = lease
    handler.max_in_flight = max_in_flight
    handler.tick_interval_s = tick_interval_s
    return handler
