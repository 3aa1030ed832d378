"""The one interface of the way through: a `Step` takes a `Message` and hands the next
step what it made of it; the `Ticket` travelling with the message answers for it last.

Modelled on arroyo's `ProcessingStrategy` and `RunTask(function, next_step)`: a step
knows only its input type, its output type and the next step. What a source decoded from
one wire message (an HTTP request, a Pub/Sub push, an AMQP delivery) travels as one
`Message`; each step turns the events it can take into its output type and moves the ones
it rejects to `finished` as quarantine rows, which ride along untouched to the sink and
are written in the same batch. The sink (the buffer, or the broker in broker-backed HTTP
mode) settles the ticket: after the commit, or once buffered or published for
`enqueued` answers. The ack is always last.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from app.auth.keys import SourcePatterns
from app.errors import Retryable
from app.model.events import Candidate, Transport, Writable
from app.model.outcomes import (
    STORAGE_REFUSED,
    DataDrop,
    EventResult,
    IngestReport,
    Outcome,
    Rejection,
    Violation,
)
from app.observability import metrics
from app.pipeline.batcher import Submission

In = TypeVar("In")
Event = TypeVar("Event")
Next = TypeVar("Next")


class AckMode(StrEnum):
    COMMITTED = "committed"  # answer after the commit (the default)
    ENQUEUED = "enqueued"  # answer once buffered or published: faster, lost if the process dies


class Step(Protocol[In]):
    async def submit(self, message: Message[In]) -> None:
        """Take the message's events, hand the result on. Raises `Retryable` (the buffer is
        full, the broker did not confirm, the process is stopping) before anything of the
        message was taken, so the sender may send it again."""
        ...


SettledCallback = Callable[[Retryable | None], None]


class Ticket:
    """Answers for one wire message's events: built by the source, settled by the sink.

    It keeps, per event in the order the events came, what the answer needs (id and
    source, the rejection or the lenient violations), counts what the steps saw for the
    metrics once a sink took the message, and resolves the waiter."""

    __slots__ = (
        "_drops",
        "_identities",
        "_outcomes",
        "_positions",
        "_received",
        "_rejected",
        "_rejections",
        "_submission",
        "_violations",
        "ack",
        "deadline",
        "sources",
        "transport",
    )

    def __init__(
        self,
        identities: Sequence[tuple[str | None, str | None]],
        transport: Transport,
        *,
        deadline: float,
        ack: AckMode = AckMode.COMMITTED,
        sources: SourcePatterns | None = None,
    ) -> None:
        self.transport = transport
        self.deadline = deadline
        self.ack = ack
        # The sources the sender's API key may write; None: any (no key, or unrestricted).
        self.sources = sources
        self._identities = identities
        self._rejections: list[Rejection | None] = [None] * len(identities)
        self._violations: dict[int, tuple[Violation, ...]] = {}
        self._drops: dict[int, DataDrop] = {}
        self._received = 0
        self._rejected = False
        self._outcomes: Sequence[Outcome] | None = None
        self._positions: Sequence[int] = ()
        self._submission: Submission | None = None

    @classmethod
    def for_candidates(
        cls,
        candidates: Sequence[Candidate],
        transport: Transport,
        *,
        deadline: float,
        ack: AckMode = AckMode.COMMITTED,
        sources: SourcePatterns | None = None,
    ) -> Ticket:
        identities = [_identity(c) for c in candidates]
        return cls(identities, transport, deadline=deadline, ack=ack, sources=sources)

    def received(self, count: int) -> None:
        """The first step got `count` events (counted once a sink takes them; a message
        sent again after `BufferFull` goes through the steps again, and counts once)."""
        self._received = count

    def reject(self, position: int, rejection: Rejection) -> None:
        self._rejections[position] = rejection
        self._rejected = True

    def record_violations(self, position: int, violations: tuple[Violation, ...]) -> None:
        """Lenient mode: what was dropped from the event stored at `position`."""
        self._violations[position] = violations

    def record_drop(self, position: int, drop: DataDrop) -> None:
        """The event at `position` goes on without its `data`: the answer says why."""
        self._drops[position] = drop

    def taken(self) -> None:
        """A sink took the message: count what the steps received and rejected."""
        if self._received:
            metrics.received(self.transport).inc(self._received)
        if not self._rejected:
            return
        codes = Counter(r.code for r in self._rejections if r is not None)
        for code, count in codes.items():
            metrics.EVENTS_REJECTED.labels(source=self.transport, code=code).inc(count)

    def settle_enqueued(self, positions: Sequence[int]) -> None:
        """Durable elsewhere (buffered detached, or confirmed by the broker)."""
        self._positions = positions
        self._outcomes = [Outcome.ACCEPTED] * len(positions)

    def await_commit(self, submission: Submission, positions: Sequence[int]) -> None:
        self._positions = positions
        self._submission = submission

    def when_settled(self, callback: SettledCallback) -> None:
        """Call `callback(None)` once committed, or with the error that failed the write."""
        if self._submission is None:
            callback(None)
        else:
            self._submission.add_done_callback(callback)

    async def report(self, within_s: float) -> IngestReport:
        """The answer per event; waits for the commit unless the sink settled already.
        Raises `StorageUnavailable` when the commit does not happen within `within_s`."""
        if self._submission is not None:
            self._outcomes = await self._submission.wait(within_s)
        outcomes: list[Outcome | None] = [None] * len(self._identities)
        for position, outcome in zip(self._positions, self._outcomes or (), strict=True):
            outcomes[position] = outcome
        return IngestReport([self._result(i, outcome) for i, outcome in enumerate(outcomes)])

    def _result(self, position: int, outcome: Outcome | None) -> EventResult:
        event_id, source = self._identities[position]
        rejection = self._rejections[position]
        if rejection is not None:
            return EventResult(rejection.outcome, event_id, source, rejection, rejection.violations)
        if outcome is Outcome.REJECTED:  # PostgreSQL refused a value of this event
            return EventResult(Outcome.REJECTED, event_id, source, STORAGE_REFUSED)
        status = Outcome.ACCEPTED if outcome is None else outcome
        return EventResult(
            status,
            event_id,
            source,
            violations=self._violations.get(position, ()),
            dropped=self._drops.get(position),
        )


def _identity(candidate: Candidate) -> tuple[str | None, str | None]:
    raw = candidate.raw if isinstance(candidate.raw, dict) else {}
    event_id, source = raw.get("id"), raw.get("source")
    return (
        event_id if isinstance(event_id, str) else None,
        source if isinstance(source, str) else None,
    )


@dataclass(slots=True)
class Message(Generic[Event]):
    """One wire message's events on their way, and the ticket that answers for them.

    `events` are still going through, each with its place among the events the source
    decoded (`positions`); `finished` are ready to write as they are (the quarantine rows
    of rejected events, or writables another Sluice process prepared), with theirs."""

    ticket: Ticket
    events: list[Event]
    positions: list[int]
    finished: list[Writable] = field(default_factory=list)
    finished_positions: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, ticket: Ticket, events: list[Event]) -> Message[Event]:
        return cls(ticket, events, list(range(len(events))))

    def finish(self, position: int, writable: Writable) -> None:
        self.finished.append(writable)
        self.finished_positions.append(position)

    def reject(self, position: int, rejection: Rejection, record: Writable) -> None:
        """The event at `position` is rejected: answered so, and written as `record`."""
        self.ticket.reject(position, rejection)
        self.finish(position, record)

    def carry(self, events: list[Next], positions: list[int]) -> Message[Next]:
        """The message the next step gets: these events, and a copy of what is finished so
        far, so that a step never changes the message it was given (a message refused by
        the sink may be submitted again, and must go through the same way)."""
        return Message(self.ticket, events, positions, [*self.finished], [*self.finished_positions])
