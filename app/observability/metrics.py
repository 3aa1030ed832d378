"""Every Prometheus metric Sluice exports, defined in this one module.

Labels come from small enums (`source` is the transport: http, pubsub, amqp; `outcome`
and `code` are Sluice's own vocabularies), never from request data, so cardinality is
fixed and no personal data can reach a label. Under gunicorn the client library's
multiprocess mode aggregates the workers (see `gunicorn.conf.py`).
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import os
from collections import Counter as _Tally
from collections.abc import Iterable
from typing import Protocol

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

from app.model.events import Transport
from app.model.outcomes import Outcome

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
    "Events rejected and quarantined, by error code.",
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
PAYLOADS_DROPPED = Counter(
    "sluice_payloads_dropped_total",
    "Events stored without their data, by transport and why (opaque under binary_data: drop,"
    " or too deep).",
    ["transport", "reason"],
)
BUFFER_REFUSALS = Counter(
    "sluice_buffer_refusals_total", "Submissions refused because the buffer was full.", ["source"]
)
OVERLOAD_REFUSALS = Counter(
    "sluice_overload_refusals_total",
    "HTTP requests refused because SLUICE_LIMIT_MAX_REQUESTS_IN_FLIGHT were being taken.",
    ["source"],
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
    "sluice_flush_retries_total",
    "Database writes (batches, quality counts) retried after a transient database error.",
)
FLUSH_FAILURES = Counter(
    "sluice_flush_failures_total",
    "Database writes (batches, quality counts) not committed before their deadline.",
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
CONTRACT_SECONDS = Counter(
    "sluice_contract_check_seconds_total",
    "CPU time spent checking events against their contracts and the quality checks.",
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
DATABASE_CIRCUIT_STATE = Gauge(
    "sluice_database_circuit_state",
    "The circuit breaker around PostgreSQL: 0 closed, 1 half-open (probing), 2 open "
    "(database calls refused unasked); the worst worker's.",
    multiprocess_mode="livemax",
)
DATABASE_CIRCUIT_OPENED = Counter(
    "sluice_database_circuit_opened_total",
    "Times the circuit breaker around PostgreSQL opened after repeated failures.",
)
PARTITIONS_CREATED = Counter(
    "sluice_partitions_created_total", "Partitions of the events table created ahead of need."
)

EVENTS_BY_TYPE = Counter(
    "sluice_events_by_type_total",
    "Events by type and outcome; types without a contract share the label `_other`.",
    ["type", "outcome"],
)
VIOLATIONS = Counter(
    "sluice_violations_total",
    "Failed contract and quality checks (rejecting or, in lenient mode, recorded), by code.",
    ["type", "code"],
)
TIME_SKEW = Histogram(
    "sluice_event_time_skew_seconds",
    "How far an event's `time` lies from the receiving clock, by direction.",
    ["direction"],
    buckets=(1, 10, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 31 * 86400),
)
QUARANTINE_ROWS = Gauge(
    "sluice_quarantine_rows",
    "Quarantine rows not yet replayed (refreshed by the quality task).",
    # `live`: a dead worker's last reading must not outlive it (a plain `max` would).
    multiprocess_mode="livemax",
)

HTTP_REQUESTS = Counter(
    "sluice_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "sluice_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ACK_LATENCY = Histogram(
    "sluice_ack_latency_seconds",
    "From a wire message's events entering the buffer to their commit (the wait before the "
    "answer or the ack), by transport.",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BUFFER_CAPACITY_EVENTS = Gauge(
    "sluice_buffer_capacity_events",
    "Events the buffer holds at most (SLUICE_BATCH_BUFFER_MAX_EVENTS), summed over workers.",
    multiprocess_mode="livesum",
)
BUFFER_CAPACITY_BYTES = Gauge(
    "sluice_buffer_capacity_bytes",
    "Bytes the buffer holds at most (SLUICE_BATCH_BUFFER_MAX_BYTES), summed over workers.",
    multiprocess_mode="livesum",
)
DATABASE_ERRORS = Counter(
    "sluice_database_errors_total",
    "Database errors by class: transient (retried), refused_value (the batch is bisected), "
    "other (no retry; an operator is needed).",
    ["class"],
)
POOL_CONNECTIONS = Gauge(
    "sluice_db_pool_connections",
    "Connections of the database pools, by state (in_use, idle, max), summed over workers.",
    ["state"],
    multiprocess_mode="livesum",
)
READY = Gauge(
    "sluice_ready",
    "1 when the last readiness check passed, else 0 (the lowest of the live workers).",
    multiprocess_mode="livemin",
)
AMQP_UNACKED = Gauge(
    "sluice_amqp_unacked_deliveries",
    "RabbitMQ deliveries taken by the consumer and not yet acked or nacked.",
    multiprocess_mode="livesum",
)
AMQP_REDELIVERED = Counter(
    "sluice_amqp_redelivered_total",
    "Deliveries the broker marked as redelivered (a nack, a lost channel or a restart).",
)
AMQP_QUEUE_MESSAGES = Gauge(
    "sluice_amqp_queue_messages",
    "Messages ready in the consumer's queues (queue: main, dead_letter), sampled by the "
    "consumer: the backlog, and what was dead-lettered.",
    ["queue"],
    multiprocess_mode="livemax",
)
ERASURES = Counter(
    "sluice_subjects_erased_total", "Subjects erased (and put on the suppression list)."
)
RETENTION_DROPPED = Counter(
    "sluice_retention_dropped_total",
    "What retention removed: partitions of events, and rows of the other tables, by table.",
    ["table"],
)
MAINTENANCE_FAILURES = Counter(
    "sluice_maintenance_failures_total",
    "Rounds of upkeep (partitions ahead, retention) that failed; retried next interval.",
)
MAINTENANCE_LAST_SUCCESS = Gauge(
    "sluice_maintenance_last_success_timestamp_seconds",
    "When this service last completed a round of upkeep (Unix time).",
    multiprocess_mode="max",
)

#: The shared label of every type without a contract: type names come from input, and
#: only the contracts' own types are a bounded set.
OTHER_TYPES = "_other"

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


def type_label(event_type: str | None, *, known: bool) -> str:
    return event_type if known and event_type else OTHER_TYPES


def count_violations(label: str, codes: Iterable[str]) -> None:
    for code, count in _Tally(codes).items():
        VIOLATIONS.labels(type=label, code=code).inc(count)


_SKEW_FUTURE = TIME_SKEW.labels(direction="future")
_SKEW_PAST = TIME_SKEW.labels(direction="past")
_SKEW_BOUNDS = (*TIME_SKEW._upper_bounds,)  # the bounds `observe` walks, +Inf last


def observe_time_skews(seconds_ahead: Iterable[float]) -> None:
    """Observe a batch's skews with one increment per (direction, bucket), not per event.

    Under gunicorn every increment is a locked write to a memory-mapped file: observing
    each event on its own (a sum and a bucket each time) cost 3.5 µs per event, more than
    checking its contract. The client library has no bulk `observe`; this adds exactly
    what `observe` would (a unit test holds the two to the same exposition)."""
    tally: _Tally[tuple[bool, int]] = _Tally()
    sums = [0.0, 0.0]
    for ahead in seconds_ahead:
        future = ahead > 0
        amount = ahead if future else -ahead
        sums[future] += amount
        tally[future, bisect.bisect_left(_SKEW_BOUNDS, amount)] += 1
    for (future, bucket), count in tally.items():
        child = _SKEW_FUTURE if future else _SKEW_PAST
        child._buckets[bucket].inc(count)
    for future, child in ((False, _SKEW_PAST), (True, _SKEW_FUTURE)):
        if sums[future]:
            child._sum.inc(sums[future])


def count_by_type(counts: Iterable[tuple[tuple[str, Outcome], int]]) -> None:
    for (label, outcome), count in counts:
        EVENTS_BY_TYPE.labels(type=label, outcome=outcome).inc(count)


def exposition() -> tuple[bytes, str]:
    """The classic Prometheus text format, aggregated across workers when there are several."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class _Pool(Protocol):
    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...


async def sample_pool(pool: _Pool, every_s: float = 1.0) -> None:
    """Publish the pool's connections in use, idle and at most, every `every_s` (until
    cancelled): a scrape reads every worker's files, not only the worker it reached."""
    in_use, idle, most = (POOL_CONNECTIONS.labels(state) for state in ("in_use", "idle", "max"))
    while True:
        size, free = pool.get_size(), pool.get_idle_size()
        in_use.set(size - free)
        idle.set(free)
        most.set(pool.get_max_size())
        await asyncio.sleep(every_s)


RESIDUAL_PII = Gauge(
    "sluice_residual_pii_findings",
    "Stored strings a free-text detector flagged in the last residual-PII scan (python -m app "
    "privacy scan, GET /admin/privacy/scan), by table (events, quarantine) and tag.",
    ["table", "tag"],
    multiprocess_mode="mostrecent",
)
RESIDUAL_TABLES = ("events", "quarantine")
RESIDUAL_TAGS = ("EMAIL", "PHONE", "IP", "CARD", "IBAN", "ADDRESS", "NAME")


def record_residual_findings(counts: Iterable[tuple[str, str, int]]) -> None:
    """Sets every (table, tag) of the gauge from one scan: zero where it found nothing, so
    an alert clears once the data is fixed."""
    totals = _Tally[tuple[str, str]]()
    for table, tag, count in counts:
        totals[table, tag] += count
    for table in RESIDUAL_TABLES:
        for tag in RESIDUAL_TAGS:
            RESIDUAL_PII.labels(table=table, tag=tag).set(totals[table, tag])


# A labelled child looked up per message costs a lock and a tuple of strings each time;
# these are the per-message ones, remembered (their labels are small enums).
@functools.cache
def received(transport: Transport) -> Counter:
    return EVENTS_RECEIVED.labels(source=transport)


@functools.cache
def ack_latency(transport: Transport) -> Histogram:
    return ACK_LATENCY.labels(source=transport)


@functools.cache
def buffer_refusals(transport: Transport) -> Counter:
    return BUFFER_REFUSALS.labels(source=transport)


@functools.cache
def overload_refusals(transport: Transport) -> Counter:
    return OVERLOAD_REFUSALS.labels(source=transport)
