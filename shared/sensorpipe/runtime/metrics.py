"""Prometheus metrics shared by every service.

One prefix (``sensorpipe_``), base units, ``_total`` counters, low-cardinality labels
(service, queue, outcome, bucket, scenario); sensor ids are never labels. Stage-specific
metrics live with their stage but use the same prefix and the :data:`PREFIX` constant.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

PREFIX = "sensorpipe"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

BUILD_INFO = Info(f"{PREFIX}_build", "Version of the running service")
MESSAGES_RECEIVED = Counter(
    f"{PREFIX}_messages_received_total", "SQS messages received", ["service", "queue"]
)
MESSAGES_PROCESSED = Counter(
    f"{PREFIX}_messages_processed_total",
    "Messages finished, by outcome (ok, retry, rejected, handler_error, gave_up, handed_back)",
    ["service", "queue", "outcome"],
)
RECORDS_PROCESSED = Counter(
    f"{PREFIX}_records_processed_total",
    "Records handled by a stage, by outcome",
    ["service", "outcome"],
)
PROCESSING_SECONDS = Histogram(
    f"{PREFIX}_processing_duration_seconds",
    "Handler time per received batch of messages",
    ["service"],
    buckets=_LATENCY_BUCKETS,
)
MESSAGE_LAG_SECONDS = Histogram(
    f"{PREFIX}_message_lag_seconds",
    "Time from a message's SentTimestamp to its receipt (per-hop lag)",
    ["service", "queue"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(f"{PREFIX}_messages_in_flight", "Messages held by this process", ["service"])
VISIBILITY_EXTENSIONS = Counter(
    f"{PREFIX}_visibility_extensions_total", "Heartbeat visibility extensions", ["service"]
)
AWS_ERRORS = Counter(
    f"{PREFIX}_aws_errors_total", "AWS calls that failed after retries", ["service", "operation"]
)
MESSAGES_SENT = Counter(f"{PREFIX}_messages_sent_total", "SQS messages sent", ["service", "queue"])
S3_OBJECTS_WRITTEN = Counter(
    f"{PREFIX}_s3_objects_written_total", "S3 objects written", ["service", "bucket"]
)
S3_WRITE_SECONDS = Histogram(
    f"{PREFIX}_s3_write_duration_seconds",
    "S3 PutObject latency",
    ["service"],
    buckets=_LATENCY_BUCKETS,
)
SCENARIO_INFO = Gauge(
    f"{PREFIX}_scenario_info",
    "1 for the scenario most recently seen by this service",
    ["service", "scenario"],
)
