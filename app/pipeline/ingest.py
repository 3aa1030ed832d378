"""The way through, shared by every source: validate → anonymize → check the contract →
buffer → await commit.

A source hands over decoded `Candidate`s; it gets back one `EventResult` per candidate, in
order. Refused candidates become quarantine rows that travel in the same batch as the
accepted events, so "rejected" is as durable an answer as "stored".
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from app.clock import MonotonicClock, WallClock, monotonic, utc_now
from app.config import BatchSettings, LimitSettings
from app.contracts.checker import ContractChecker, Refusal, Verdict, violations_json
from app.errors import ErrorCode, EventRejection, Violation
from app.observability import metrics
from app.pipeline.anonymize import Anonymizer
from app.pipeline.batcher import Batcher
from app.pipeline.events import (
    AnonymizedEvent,
    Candidate,
    CloudEvent,
    Outcome,
    QuarantineRecord,
    Transport,
    Writable,
    envelope_json,
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
    violations: tuple[Violation, ...] = ()  # refusing, or recorded with a lenient store


@dataclass(frozen=True, slots=True)
class IngestReport:
    results: list[EventResult]

    def count(self, status: Outcome) -> int:
        return sum(1 for result in self.results if result.status is status)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Candidates after validation, anonymization and the contract stage, before they are
    handed on (to the buffer, or to RabbitMQ in broker-backed HTTP mode)."""

    candidates: Sequence[Candidate]
    verdicts: list[EventRejection | Verdict]  # per candidate: why refused, or what checked
    writables: list[Writable]

    def report(self, outcomes: Sequence[Outcome]) -> IngestReport:
        return IngestReport(
            [
                _result(candidate, outcome, verdict)
                for candidate, outcome, verdict in zip(
                    self.candidates, outcomes, self.verdicts, strict=True
                )
            ]
        )

    def count_received(self, transport: Transport) -> None:
        """Counted once the events were taken, not when the buffer or broker refused them."""
        _count_received(transport, self.verdicts)

    def enqueued_report(self) -> IngestReport:
        """The answer once the writables are durable elsewhere but not yet committed."""
        return self.report([_enqueued_outcome(writable) for writable in self.writables])


class IngestService:
    def __init__(
        self,
        batcher: Batcher,
        anonymizer: Anonymizer,
        checker: ContractChecker,
        *,
        limits: LimitSettings,
        batch: BatchSettings,
        clock: MonotonicClock = monotonic,
        wall_clock: WallClock = utc_now,
    ) -> None:
        self._batcher = batcher
        self._anonymizer = anonymizer
        self._checker = checker
        self._limits = limits
        self._ack_timeout_s = batch.ack_timeout_s
        self._clock = clock
        self._wall_clock = wall_clock

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

        `forwarded` are writables another Sluice process already validated, anonymized and
        checked (broker-backed HTTP mode): they join the same submission, and the report
        covers `candidates` only."""
        prepared = self.prepare(candidates)
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

    def prepare(self, candidates: Sequence[Candidate]) -> Prepared:
        """Validate, anonymize, check contracts: the writables to store, and how to answer
        for them. Each stage's CPU time is measured on its own (thread time, not wall time:
        a descheduled worker's wait is not the stage's cost)."""
        checked = [validate_candidate(candidate, self._limits) for candidate in candidates]
        started = time.thread_time()
        staged: list[AnonymizedEvent | tuple[Writable, EventRejection | Verdict]] = [
            self._anonymizer.anonymize(outcome)
            if isinstance(outcome, CloudEvent)
            else (self._quarantine_record(candidate, outcome), outcome)
            for candidate, outcome in zip(candidates, checked, strict=True)
        ]
        anonymized_at = time.thread_time()
        metrics.ANONYMIZE_SECONDS.inc(anonymized_at - started)
        now = self._wall_clock()
        judged = [
            self._contract_stage(item, now) if isinstance(item, AnonymizedEvent) else item
            for item in staged
        ]
        metrics.observe_time_skews(
            (item.time - now).total_seconds()
            for item in staged
            if isinstance(item, AnonymizedEvent) and item.time is not None
        )
        metrics.CONTRACT_SECONDS.inc(time.thread_time() - anonymized_at)
        return Prepared(
            candidates,
            verdicts=[verdict for _, verdict in judged],
            writables=[writable for writable, _ in judged],
        )

    def _contract_stage(self, event: AnonymizedEvent, now: datetime) -> tuple[Writable, Verdict]:
        verdict = self._checker.check(event, now)
        if verdict.refusal is None:
            return event, verdict
        return refused_event_record(event, verdict.refusal), verdict

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


def refused_event_record(event: AnonymizedEvent, refusal: Refusal) -> QuarantineRecord:
    """The quarantine row of an event that passed the envelope checks and failed a
    contract or quality check: anonymized whole, so replay can store it later."""
    rejection = refusal.rejection
    return QuarantineRecord(
        transport=event.transport,
        code=rejection.code,
        field=rejection.field,
        message=rejection.message,
        source=event.source,
        event_id=event.id,
        type=event.type,
        subject_pseudonym=event.subject_pseudonym,
        attributes_json=orjson.dumps(_attributes(event)).decode(),
        data_json=event.data_json,
        policy_version=event.policy_version,
        contract_version=refusal.contract_version,
        violations_json=violations_json(refusal.violations),
        event_json=envelope_json(event),
        held=refusal.held,
    )


def _attributes(event: AnonymizedEvent) -> dict[str, Any]:
    attributes = {
        name: getattr(event, name)
        for name in ("specversion", "id", "source", "type", "datacontenttype", "dataschema")
        if getattr(event, name) is not None
    }
    if event.time is not None:
        attributes["time"] = event.time.isoformat()
    extension_names = sorted(orjson.loads(event.extensions_json))
    if extension_names:
        attributes["extensions"] = extension_names
    return attributes


def _enqueued_outcome(writable: Writable) -> Outcome:
    if isinstance(writable, AnonymizedEvent):
        return Outcome.ACCEPTED
    return Outcome.QUARANTINED if writable.held else Outcome.REJECTED


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
    candidate: Candidate, outcome: Outcome, checked: EventRejection | Verdict
) -> EventResult:
    raw = candidate.raw if isinstance(candidate.raw, dict) else {}
    event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    source = raw.get("source") if isinstance(raw.get("source"), str) else None
    if isinstance(checked, EventRejection):
        return EventResult(Outcome.REJECTED, event_id, source, checked)
    if checked.refusal is not None:
        status = Outcome.QUARANTINED if checked.refusal.held else Outcome.REJECTED
        return EventResult(status, event_id, source, checked.refusal.rejection, checked.violations)
    if outcome is Outcome.REJECTED:
        return EventResult(Outcome.REJECTED, event_id, source, _STORAGE_REFUSAL)
    return EventResult(outcome, event_id, source, violations=checked.violations)


def _count_received(transport: Transport, checked: Sequence[EventRejection | Verdict]) -> None:
    metrics.EVENTS_RECEIVED.labels(source=transport).inc(len(checked))
    codes = Counter(code for code in map(_refusal_code, checked) if code is not None)
    for code, count in codes.items():
        metrics.EVENTS_REJECTED.labels(source=transport, code=code).inc(count)


def _refusal_code(checked: EventRejection | Verdict) -> ErrorCode | None:
    if isinstance(checked, EventRejection):
        return checked.code
    return checked.refusal.rejection.code if checked.refusal is not None else None
