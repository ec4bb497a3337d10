"""Prometheus hooks on the sequencer's events (one set for both stateful stages).

``service`` tells the aggregator's from the notifier's; stream names are never labels
(there may be thousands of edge nodes).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from sensorpipe.runtime.metrics import PREFIX

_COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

PARTS = Counter(
    f"{PREFIX}_sequencer_parts_total",
    "Batch parts taken, by verdict (collect: of the next batch or a later one, hole: of a "
    "batch passed over, applied: a redelivery of a part applied before, unsequenced)",
    ["service", "verdict"],
)
HELD = Gauge(
    f"{PREFIX}_sequencer_held_parts",
    "Parts of later batches held until an earlier batch of their source is complete",
    ["service"],
)
GAPS_SKIPPED = Counter(
    f"{PREFIX}_sequencer_batches_skipped_total",
    "Missing batches a source's progress went on without (gap timeout or hold limit)",
    ["service"],
)
COMMITS = Histogram(
    f"{PREFIX}_checkpoint_duration_seconds",
    "Time to flush outputs and write the checkpoint",
    ["service"],
    buckets=_COMMIT_BUCKETS,
)
CHECKPOINT_BYTES = Gauge(f"{PREFIX}_checkpoint_bytes", "Size of the last checkpoint", ["service"])
WATERMARK = Gauge(
    f"{PREFIX}_watermark_timestamp_seconds",
    "The shard's combined watermark (event time, seconds since the epoch)",
    ["service"],
)
WATERMARK_LAG = Gauge(
    f"{PREFIX}_watermark_lag_seconds",
    "Wall-clock time minus the watermark at the last commit",
    ["service"],
)
RESETS = Counter(
    f"{PREFIX}_sequencer_resets_total",
    "Times state was re-read from the checkpoint (conflict, or a batch that failed)",
    ["service"],
)


class PrometheusObserver:
    """The sequencer's :class:`~sensorpipe.stateful.sequencer.Observer` for Prometheus."""

    def __init__(self, service: str) -> None:
        self.service = service

    def taken(self, verdict: str, count: int) -> None:
        PARTS.labels(self.service, verdict).inc(count)

    def held(self, count: int) -> None:
        HELD.labels(self.service).set(count)

    def gap_skipped(self, stream: str, batches: int) -> None:
        GAPS_SKIPPED.labels(self.service).inc(batches)

    def committed(self, seconds: float, size: int, watermark_us: int | None) -> None:
        COMMITS.labels(self.service).observe(seconds)
        CHECKPOINT_BYTES.labels(self.service).set(size)
        if watermark_us is not None:
            WATERMARK.labels(self.service).set(watermark_us / 1e6)
            WATERMARK_LAG.labels(self.service).set(time.time() - watermark_us / 1e6)

    def reset(self, reason: str) -> None:
        RESETS.labels(self.service).inc()
