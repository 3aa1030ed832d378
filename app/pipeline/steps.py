"""The steps that change events: validate → anonymize → check the contract.

Each wraps a pure function of its own package (`sources.validate`, the `Anonymizer`,
`contracts.checker`) and is handed the next step. Each stage's CPU time is measured on
its own (thread time, not wall time: a descheduled worker's wait is not the stage's cost).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from app.clock import MonotonicClock, WallClock, monotonic, utc_now
from app.config import LimitSettings
from app.contracts.checker import ContractChecker
from app.model.events import (
    AnonymizedEvent,
    Candidate,
    CloudEvent,
    QuarantineRecord,
    envelope_json,
)
from app.model.outcomes import DataDrop, PayloadDropped, Rejection
from app.observability import metrics
from app.pipeline.anonymize import Anonymizer
from app.pipeline.message import Message, Step
from app.sources.validate import safe_attributes, validate_candidate

log = logging.getLogger(__name__)


class Validate:
    """Candidates → `CloudEvent`s; a rejected candidate becomes its quarantine row, with
    what the policy lets quarantine keep of it."""

    def __init__(
        self, limits: LimitSettings, anonymizer: Anonymizer, next_step: Step[CloudEvent]
    ) -> None:
        self._limits = limits
        self._anonymizer = anonymizer
        self._next = next_step

    async def submit(self, message: Message[Candidate]) -> None:
        message.ticket.received(len(message.events))
        valid: Message[CloudEvent] = message.carry([], [])
        for candidate, position in zip(message.events, message.positions, strict=True):
            checked = validate_candidate(candidate, self._limits)
            if isinstance(checked, CloudEvent):
                valid.events.append(checked)
                valid.positions.append(position)
            else:
                valid.reject(position, checked, self._record(candidate, checked))
        await self._next.submit(valid)

    def _record(self, candidate: Candidate, rejection: Rejection) -> QuarantineRecord:
        raw = candidate.raw if isinstance(candidate.raw, dict) else {}
        subject = raw.get("subject")
        limit = self._limits.max_attribute_chars
        return QuarantineRecord.of(
            rejection,
            transport=candidate.transport,
            source=_safe_text(raw.get("source"), limit),
            event_id=_safe_text(raw.get("id"), limit),
            type=_safe_text(raw.get("type"), limit),
            subject_pseudonym=self._anonymizer.subject_pseudonym(subject)
            if isinstance(subject, str)
            else None,
            attributes_json=orjson.dumps(safe_attributes(raw, self._limits)).decode(),
            data_json=self._anonymizer.quarantine_data(_text(raw.get("type")), _data_of(candidate)),
            policy_version=self._anonymizer.policy_version,
        )


class Anonymize:
    """`CloudEvent`s → `AnonymizedEvent`s: after this step no raw subject exists.

    A payload the policy does not let through (opaque bytes under `binary_data: drop`, or
    data nested too deep to walk) is never dropped silently: the event's answer says so and
    names the rule, `sluice_payloads_dropped_total` counts it, and the first drop per event
    type is logged at WARNING (again at most every `_DROP_WARNING_INTERVAL_S`)."""

    def __init__(
        self,
        anonymizer: Anonymizer,
        next_step: Step[AnonymizedEvent],
        *,
        clock: MonotonicClock = monotonic,
    ) -> None:
        self._anonymizer = anonymizer
        self._next = next_step
        self._warned = _DropWarnings(clock)

    async def submit(self, message: Message[CloudEvent]) -> None:
        started = time.thread_time()
        anonymized = [self._anonymizer.anonymize(event) for event in message.events]
        metrics.ANONYMIZE_SECONDS.inc(time.thread_time() - started)
        for event, stored, position in zip(
            message.events, anonymized, message.positions, strict=True
        ):
            if stored.data_json is None and event.data is not None:
                self._dropped(message, position, event)
        await self._next.submit(message.carry(anonymized, message.positions))

    def _dropped(self, message: Message[CloudEvent], position: int, event: CloudEvent) -> None:
        reason = PayloadDropped.OPAQUE if event.data_is_base64 else PayloadDropped.TOO_DEEP
        rule = self._anonymizer.data_rule(event.type, opaque=event.data_is_base64)
        message.ticket.record_drop(position, DataDrop(reason, rule))
        metrics.PAYLOADS_DROPPED.labels(transport=event.transport, reason=reason).inc()
        if self._warned.first(event.type):
            log.warning(
                "event data dropped by the privacy policy",
                extra={"type": event.type[:256], "reason": reason.value, "rule": rule},
            )


# Types warned about are remembered this long, and at most this many of them at once.
_DROP_WARNING_INTERVAL_S = 600.0
_DROP_WARNING_TYPES = 1024


class _DropWarnings:
    """Which event types were warned about lately: a bounded map, oldest forgotten first."""

    def __init__(self, clock: MonotonicClock) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}

    def first(self, event_type: str) -> bool:
        now = self._clock()
        last = self._last.get(event_type)
        if last is not None and now - last < _DROP_WARNING_INTERVAL_S:
            return False
        self._last.pop(event_type, None)
        self._last[event_type] = now
        if len(self._last) > _DROP_WARNING_TYPES:
            del self._last[next(iter(self._last))]
        return True


class CheckContract:
    """Anonymized events judged by their contract and the quality checks: those that fail
    in strict mode become quarantine rows that replay can store once the contract allows."""

    def __init__(
        self,
        checker: ContractChecker,
        next_step: Step[AnonymizedEvent],
        *,
        wall_clock: WallClock = utc_now,
    ) -> None:
        self._checker = checker
        self._next = next_step
        self._wall_clock = wall_clock

    async def submit(self, message: Message[AnonymizedEvent]) -> None:
        started = time.thread_time()
        now = self._wall_clock()
        passed: list[AnonymizedEvent] = []
        positions: list[int] = []
        for event, position in zip(message.events, message.positions, strict=True):
            verdict = self._checker.check(event, now)
            if verdict.rejection is not None:
                message.reject(
                    position, verdict.rejection, rejected_event_record(event, verdict.rejection)
                )
                continue
            if verdict.violations:
                message.ticket.record_violations(position, verdict.violations)
            passed.append(event)
            positions.append(position)
        metrics.observe_time_skews(
            (event.time - now).total_seconds() for event in message.events if event.time is not None
        )
        metrics.CONTRACT_SECONDS.inc(time.thread_time() - started)
        await self._next.submit(message.carry(passed, positions))


def rejected_event_record(event: AnonymizedEvent, rejection: Rejection) -> QuarantineRecord:
    """The quarantine row of an event that passed the envelope checks and failed a
    contract or quality check: anonymized whole, so replay can store it later."""
    return QuarantineRecord.of(
        rejection,
        transport=event.transport,
        source=event.source,
        event_id=event.id,
        type=event.type,
        subject_pseudonym=event.subject_pseudonym,
        attributes_json=orjson.dumps(_attributes(event)).decode(),
        data_json=event.data_json,
        policy_version=event.policy_version,
        event_json=envelope_json(event),
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


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _data_of(candidate: Candidate) -> Any:
    """The rejected event's `data` for the policy; opaque (base64) payloads are never kept."""
    if candidate.binary_data is not None:
        return None if candidate.binary_data.is_base64 else candidate.binary_data.value
    return candidate.raw.get("data") if isinstance(candidate.raw, dict) else None


def _safe_text(value: object, max_chars: int) -> str | None:
    if isinstance(value, str) and "\x00" not in value and len(value) <= max_chars:
        return value
    return None
