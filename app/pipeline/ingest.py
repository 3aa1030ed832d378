"""The assembled way through, as a source uses it: one call per wire message.

`main.build_pipeline` assembles validate → anonymize → contract → a sink and hands the
head to `Pipeline`. A source decodes its wire message into candidates and calls
`ingest` (HTTP, Pub/Sub push: answered from the report), or builds its own `Ticket` and
`submit`s (the RabbitMQ consumer, which acks from the ticket's settlement).
"""

from __future__ import annotations

from collections.abc import Sequence

from app.auth.keys import SourcePatterns
from app.clock import MonotonicClock, monotonic
from app.model.events import Candidate, Transport
from app.model.outcomes import IngestReport
from app.observability import tracing
from app.pipeline.message import AckMode, Message, Step, Ticket

# How long past its batch deadline a waiter still waits for the write to report back.
_WAIT_GRACE_S = 1.0


class Pipeline:
    def __init__(
        self, head: Step[Candidate], *, ack_timeout_s: float, clock: MonotonicClock = monotonic
    ) -> None:
        self._head = head
        self._ack_timeout_s = ack_timeout_s
        self._clock = clock

    def ticket(
        self, identities: Sequence[tuple[str | None, str | None]], transport: Transport
    ) -> Ticket:
        """A ticket for a message whose events the caller names itself (the consumer)."""
        return Ticket(identities, transport, deadline=self._deadline())

    async def submit(self, message: Message[Candidate]) -> None:
        """Raises `Retryable` before anything of the message was taken."""
        await self._head.submit(message)

    async def ingest(
        self,
        candidates: Sequence[Candidate],
        *,
        transport: Transport,
        ack: AckMode,
        sources: SourcePatterns | None = None,
    ) -> IngestReport:
        """The answer per candidate, in order; an event whose source is not among
        `sources` (the sender's key's, when it has a list) is rejected. Raises
        `BufferFull`/`ShuttingDown`/`BrokerUnavailable` before anything is taken, or
        `StorageUnavailable` when the commit did not happen in time."""
        ticket = Ticket.for_candidates(
            candidates, transport, deadline=self._deadline(), ack=ack, sources=sources
        )
        await self._head.submit(Message.of(ticket, list(candidates)))
        with tracing.span("commit_wait"):
            return await ticket.report(self._ack_timeout_s + _WAIT_GRACE_S)

    def _deadline(self) -> float:
        return self._clock() + self._ack_timeout_s
