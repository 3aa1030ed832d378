"""The two interchangeable last steps: where prepared events go, and when they are answered.

- `Buffer`: into the process's one `Batcher`, which writes them to PostgreSQL with the
  events of every other source; the ticket resolves after the commit (or at once, for
  `ack=enqueued`, with nobody waiting for the write).
- `Forward` (`SLUICE_HTTP_ACK=broker`): published to RabbitMQ as signed, already
  anonymized messages; answered `accepted` once the broker confirmed them all, and
  written by the consumer (`python -m app consume`). If the broker refuses, times out or
  is unreachable, `BrokerUnavailable` (503 with Retry-After) and the client sends again:
  whatever was already published is absorbed as duplicates.

Both raise before taking anything, so a refused message can simply be sent again, and
both count the message's events as received only once they took them.
"""

from __future__ import annotations

from app.broker import BrokerPublisher
from app.model.events import AnonymizedEvent, Writable
from app.pipeline import forwarding
from app.pipeline.batcher import Batcher
from app.pipeline.message import AckMode, Message
from app.privacy.keyring import Keyring


class Buffer:
    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher

    async def submit(self, message: Message[AnonymizedEvent]) -> None:
        """Raises `BufferFull` or `ShuttingDown` before anything is buffered."""
        ticket = message.ticket
        writables, positions = _writables(message)
        detached = ticket.ack is AckMode.ENQUEUED
        submission = self._batcher.submit(
            writables, ticket.transport, deadline=ticket.deadline, detached=detached
        )
        ticket.taken()
        if detached:
            ticket.settle_enqueued(positions)
        else:
            ticket.await_commit(submission, positions)


class Forward:
    def __init__(self, publisher: BrokerPublisher, keyring: Keyring) -> None:
        self._publisher = publisher
        self._keyring = keyring

    async def submit(self, message: Message[AnonymizedEvent]) -> None:
        """Raises `BrokerUnavailable` unless every writable was confirmed by the broker."""
        writables, positions = _writables(message)
        await self._publisher.publish([forwarding.outgoing(w, self._keyring) for w in writables])
        message.ticket.taken()
        message.ticket.settle_enqueued(positions)


def _writables(message: Message[AnonymizedEvent]) -> tuple[list[Writable], list[int]]:
    """What the sink writes, and the position each answers for."""
    writables: list[Writable] = [*message.events, *message.finished]
    return writables, [*message.positions, *message.finished_positions]
