"""Every Prometheus metric Sluice exports, defined in this one module.

Labels come from small enums (`source` is the transport: http, pubsub, amqp; `outcome`
and `code` are Sluice's own vocabularies), never from request data, so cardinality is
fixed and no personal data can reach a label. Under gunicorn the client library's
multiprocess mode aggregates the workers (see `gunicorn.conf.py`).
"""

from __future__ import annotations

import os
from collections import Counter as _Tally
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from app.pipeline.events import Outcome, Transport

EVENTS_RECEIVED = Counter(
    "sluice_events_received_total", "Events decoded from a request or message.", ["source"]
)
EVENTS_STORED = Counter(
    "sluice_events_stored_total", "Events committed to PostgreSQL for the first time.", ["source"]
)
EVENTS_DUPLICATE = Counter(
    "sluice_events_duplicate_total",
    "Events whose (source, id) was already stored; acknowledged, not stored again.",
    ["source"],
)
EVENTS_REJECTED = Counter(
    "sluice_events_rejected_total",
    "Events refused and quarantined, by error code.",
    ["source", "code"],
)
EVENTS_SUPPRESSED = Counter(
    "sluice_events_suppressed_total",
    "Events of erased, suppressed subjects: acknowledged and dropped, not stored.",
    ["source"],
)
EVENTS_LOST = Counter(
    "sluice_events_lost_total",
    "Events acknowledged as buffered (ack=enqueued) that could not be committed.",
    ["source"],
)
BUFFER_REFUSALS = Counter(
    "sluice_buffer_refusals_total", "Submissions refused because the buffer was full.", ["source"]
)
BATCH_SIZE = Histogram(
    "sluice_batch_size_events",
    "Writables (events and quarantine rows) per flushed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
FLUSH_DURATION = Histogram(
    "sluice_flush_duration_seconds",
    "Time to commit one batch, retries included.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FLUSH_RETRIES = Counter(
    "sluice_flush_retries_total", "Batch writes retried after a transient database error."
)
FLUSH_FAILURES = Counter(
    "sluice_flush_failures_total", "Batches that could not be committed before their deadline."
)
BUFFER_EVENTS = Gauge(
    "sluice_buffer_events", "Events buffered or being written.", multiprocess_mode="livesum"
)
BUFFER_BYTES = Gauge(
    "sluice_buffer_bytes", "Bytes of events buffered or being written.", multiprocess_mode="livesum"
)
ANONYMIZE_SECONDS = Counter(
    "sluice_anonymize_seconds_total",
    "CPU time spent applying the anonymization policy (events and quarantine rows).",
)
AMQP_SETTLED = Counter(
    "sluice_amqp_deliveries_settled_total",
    "RabbitMQ deliveries the consumer settled: acked after their batch committed, or nacked "
    "back to the queue after a transient failure.",
    ["settlement"],
)
BROKER_PUBLISH_FAILURES = Counter(
    "sluice_broker_publish_failures_total",
    "Broker-backed HTTP requests answered 503 because RabbitMQ did not confirm.",
)
PARTITIONS_CREATED = Counter(
    "sluice_partitions_created_total", "Partitions of the events table created ahead of need."
)

_OUTCOME_COUNTERS = {
    Outcome.STORED: EVENTS_STORED,
    Outcome.DUPLICATE: EVENTS_DUPLICATE,
    Outcome.SUPPRESSED: EVENTS_SUPPRESSED,
}


def count_outcomes(outcomes: Iterable[tuple[Outcome, Transport]]) -> None:
    """Count a batch's outcomes with one increment per (outcome, source), not per event."""
    for (outcome, transport), count in _Tally(outcomes).items():
        counter = _OUTCOME_COUNTERS.get(outcome)
        if counter is not None:
            counter.labels(source=transport).inc(count)


def exposition() -> tuple[bytes, str]:
    """The classic Prometheus text format, aggregated across workers when there are several."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
