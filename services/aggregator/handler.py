"""The aggregator service: its stage (stage.py) run by the shared sequencer.

The sequencer (``sensorpipe.stateful``) does the restart and recovery work every
stateful stage shares: it applies each source's batches whole and in order, advances
the watermark, and commits (outputs, then the shard's checkpoint, then the acks). This
module wires the aggregator's stage, stores and metrics into it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from sensorpipe.config import PipelineConfig
from sensorpipe.config.pipeline import BucketKind
from sensorpipe.runtime import ServiceContext
from sensorpipe.runtime.metrics import PREFIX, RECORDS_PROCESSED
from sensorpipe.stateful import SequencedHandler, Timing, sequenced
from sensorpipe.store import ObjectStore, S3ObjectStore
from services.aggregator.config import AggregatorSettings
from services.aggregator.output import LateStore, WindowStore
from services.aggregator.stage import AggregatorStage, Rules

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SERVICE = "aggregator"
_US = 1_000_000

WINDOWS = Counter(
    f"{PREFIX}_aggregator_windows_total",
    "Windows written: closed (first write) or revised (a later revision)",
    ["what"],
)
OPEN_WINDOWS = Gauge(f"{PREFIX}_aggregator_open_windows", "Windows collecting readings")


class Metrics:
    """The stage's events as Prometheus samples."""

    def readings(self, fate: str, count: int) -> None:
        if count:
            RECORDS_PROCESSED.labels(SERVICE, fate).inc(count)

    def windows(self, what: str, count: int) -> None:
        WINDOWS.labels(what).inc(count)

    def open_windows(self, count: int) -> None:
        OPEN_WINDOWS.set(count)


def build_stage(
    config: PipelineConfig,
    aggregated: ObjectStore,
    error: ObjectStore,
    settings: AggregatorSettings,
    *,
    shard: int = 0,
) -> AggregatorStage:
    """The aggregator's stage alone (the handler runs it; tests may drive it)."""
    windowing = config.windowing
    size_us = windowing.window_seconds * _US

    def validated(scenario: str) -> bool:
        route = config.route(scenario)
        return route is not None and route.validate_records

    return AggregatorStage(
        Rules(
            size_us=size_us,
            allowed_lateness_us=round(windowing.allowed_lateness_seconds * _US),
            shard=shard,
            remembered=settings.remembered_windows,
        ),
        WindowStore(
            aggregated,
            windowing.output_prefix,
            size_us,
            shard=shard,
            remembered=settings.remembered_windows,
        ),
        LateStore(error),
        Metrics(),
        validated=validated,
    )


def build_handler(
    config: PipelineConfig,
    aggregated: ObjectStore,
    error: ObjectStore,
    settings: AggregatorSettings,
    *,
    shard: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> SequencedHandler:
    """The aggregator handler of one shard.

    Parameters:
        config: the pipeline config (windowing rules, routes).
        aggregated: the aggregated bucket (windows, the shard's checkpoint).
        error: the error bucket (the late side output).
        settings: this process's knobs.
        shard: the aggregate shard this process consumes.
        clock: monotonic processing time (tests pass their own).
    """
    windowing = config.windowing
    size_us = windowing.window_seconds * _US
    stage = build_stage(config, aggregated, error, settings, shard=shard)
    timing = Timing(
        grace_us=round(windowing.grace_seconds * _US),
        idle_s=windowing.idle_flush_seconds,
        idle_lift_us=size_us,  # a quiet source's last windows close
        gap_timeout_s=windowing.gap_timeout_seconds,
    )
    return sequenced(
        SERVICE,
        stage,
        timing,
        aggregated,
        config,
        shard=shard,
        max_in_flight=settings.max_in_flight,
        commit_interval_s=settings.commit_interval_seconds,
        tick_interval_s=settings.tick_interval_seconds,
        clock=clock,
    )


def from_context(context: ServiceContext) -> SequencedHandler:
    config = context.config
    settings = context.settings_of(AggregatorSettings)

    def store(kind: BucketKind, s3: S3Client = context.s3) -> S3ObjectStore:
        name = config.buckets.name(kind)
        return S3ObjectStore(s3, name, service=SERVICE, threads=settings.writer_threads)

    return build_handler(
        config,
        store(BucketKind.AGGREGATED),
        store(BucketKind.ERROR),
        settings,
        shard=context.settings.shard,
    )
