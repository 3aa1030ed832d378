"""The way through, shared by every source: validate → anonymize → buffer → await commit.

A source hands over decoded `Candidate`s; it gets back one `EventResult` per candidate, in
order. Refused candidates become quarantine rows that travel in the same batch as the
accepted events, so "rejected" is as durable an answer as "stored".
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from app.clock import MonotonicClock, monotonic
from app.config import BatchSettings, LimitSettings
from app.errors import ErrorCode, EventRejection
from app.observability import metrics
from app.pipeline.anonymize import Anonymizer
from app.pipeline.batcher import Batcher
from app.pipeline.events import (
    Candidate,
    CloudEvent,
    Outcome,
    QuarantineRecord,
    Transport,
    Writable,
)
from app.pipeline.validate import safe_attributes, validate_candidate

# How long past its batch deadline a waiter still waits for the write to report back.
_WAIT_GRACE_S = 1.0

_STORAGE_REFUSAL = EventRejection(
    code=ErrorCode.STORAGE_REFUSED_VALUE,
    field=None,
    message="the database refused a value of this event",
)


class AckMode(StrEnum):
    COMMITTED = "committed"  # answer after the commit (the default)
    ENQUEUED = "enqueued"  # answer once buffered: faster, lost if the process dies


@dataclass(frozen=True, slots=True)
class EventResult:
    status: Outcome
    id: str | None
    source: str | None
    rejection: EventRejection | None = None


@dataclass(frozen=True, slots=True)
class IngestReport:
    results: list[EventResult]

    def count(self, status: Outcome) -> int:
        return sum(1 for result in self.results if result.status is status)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Candidates after validation and anonymization, before they are handed on."""

    candidates: Sequence[Candidate]
    checked: list[CloudEvent | EventRejection]
    writables: list[Writable]

    def report(self, outcomes: Sequence[Outcome]) -> IngestReport:
        return IngestReport(
            [
                _result(candidate, outcome, checked_as)
                for candidate, outcome, checked_as in zip(
                    self.candidates, outcomes, self.checked, strict=True
                )
            ]
        )

    def count_received(self, transport: Transport) -> None:
        """Counted once the events were taken, not when the buffer or broker refused them."""
        _count_received(transport, self.checked)

    def enqueued_report(self) -> IngestReport:
        """The answer once the writables are durable elsewhere but not yet committed."""
        return self.report(
            [
                Outcome.ACCEPTED if isinstance(outcome, CloudEvent) else Outcome.REJECTED
                for outcome in self.checked
            ]
        )


class IngestService:
    def __init__(
        self,
        batcher: Batcher,
        anonymizer: Anonymizer,
        *,
        limits: LimitSettings,
        batch: BatchSettings,
        clock: MonotonicClock = monotonic,
    ) -> None:
        self._batcher = batcher
        self._anonymizer = anonymizer
        self._limits = limits
        self._ack_timeout_s = batch.ack_timeout_s
        self._clock = clock

    async def ingest(
        self,
        candidates: Sequence[Candidate],
        *,
        transport: Transport,
        ack: AckMode,
        forwarded: Sequence[Writable] = (),
    ) -> IngestReport:
        """Raises `BufferFull`/`ShuttingDown` before anything is buffered, or
        `StorageUnavailable` when the commit did not happen in time.

        `forwarded` are writables another Sluice process already validated and anonymized
        (broker-backed HTTP mode): they join the same submission, and the report covers
        `candidates` only."""
        prepared = self.prepare(candidates, transport=transport)
        submission = self._batcher.submit(
            [*prepared.writables, *forwarded],
            transport,
            deadline=self._clock() + self._ack_timeout_s,
            detached=ack is AckMode.ENQUEUED,
        )
        prepared.count_received(transport)
        if ack is AckMode.ENQUEUED:
            return prepared.enqueued_report()
        outcomes = await submission.wait(self._ack_timeout_s + _WAIT_GRACE_S)
        return prepared.report(outcomes[: len(candidates)])

    def prepare(self, candidates: Sequence[Candidate], *, transport: Transport) -> Prepared:
        """Validate and anonymize: the writables to store, and how to answer for them."""
        checked = [validate_candidate(candidate, self._limits) for candidate in candidates]
        # CPU time of this thread, not wall time: on a busy machine the worker can be
        # descheduled mid-stage, and that wait is not the policy's cost.
        started = time.thread_time()
        writables: list[Writable] = [
            self._anonymizer.anonymize(outcome)
            if isinstance(outcome, CloudEvent)
            else self._quarantine_record(candidate, outcome)
            for candidate, outcome in zip(candidates, checked, strict=True)
        ]
        metrics.ANONYMIZE_SECONDS.inc(time.thread_time() - started)
        return Prepared(candidates, checked, writables)

    def _quarantine_record(
        self, candidate: Candidate, rejection: EventRejection
    ) -> QuarantineRecord:
        raw = candidate.raw if isinstance(candidate.raw, dict) else {}
        subject = raw.get("subject")
        return QuarantineRecord(
            transport=candidate.transport,
            code=rejection.code,
            field=rejection.field,
            message=rejection.message,
            source=_safe_text(raw.get("source"), self._limits.max_attribute_chars),
            event_id=_safe_text(raw.get("id"), self._limits.max_attribute_chars),
            type=_safe_text(raw.get("type"), self._limits.max_attribute_chars),
            subject_pseudonym=self._anonymizer.subject_pseudonym(subject)
            if isinstance(subject, str)
            else None,
            attributes_json=orjson.dumps(safe_attributes(raw, self._limits)).decode(),
            data_json=self._anonymizer.quarantine_data(_text(raw.get("type")), _data_of(candidate)),
            policy_version=self._anonymizer.policy_version,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _data_of(candidate: Candidate) -> Any:
    """The refused event's `data` for the policy; opaque (base64) payloads are never kept."""
    if candidate.binary_data is not None:
        return None if candidate.binary_data.is_base64 else candidate.binary_data.value
    return candidate.raw.get("data") if isinstance(candidate.raw, dict) else None


def _safe_text(value: object, max_chars: int) -> str | None:
    if isinstance(value, str) and "\x00" not in value and len(value) <= max_chars:
        return value
    return None


def _result(
    candidate: Candidate, outcome: Outcome, checked: CloudEvent | EventRejection
) -> EventResult:
    raw = candidate.raw if isinstance(candidate.raw, dict) else {}
    event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    source = raw.get("source") if isinstance(raw.get("source"), str) else None
    if isinstance(checked, EventRejection):
        return EventResult(Outcome.REJECTED, event_id, source, checked)
    if outcome is Outcome.REJECTED:
        return EventResult(Outcome.REJECTED, event_id, source, _STORAGE_REFUSAL)
    return EventResult(outcome, event_id, source)


def _count_received(transport: Transport, checked: Sequence[CloudEvent | EventRejection]) -> None:
    metrics.EVENTS_RECEIVED.labels(source=transport).inc(len(checked))
    codes = Counter(c.code for c in checked if isinstance(c, EventRejection))
    for code, count in codes.items():
        metrics.EVENTS_REJECTED.labels(source=transport, code=code).inc(count)
