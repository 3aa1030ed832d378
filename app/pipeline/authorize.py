"""`CheckSource`: the first step, ahead of validation. An event whose CloudEvents `source`
the sender's API key may not write is rejected with `auth.source_not_allowed`.

The key's patterns travel on the ticket (`Ticket.sources`, set by the HTTP edge from the
authenticated key); a ticket without them (open ingest, an unrestricted key, Pub/Sub
push, RabbitMQ) passes untouched at the cost of one attribute read. A refused event goes
on as a rejected candidate, so validation writes its quarantine row like any other
rejection: the operator can see which key tried to write as whom (`GET
/admin/quarantine?code=auth.source_not_allowed`), and the answer is per event (207; 403
when every event was refused).
"""

from __future__ import annotations

from dataclasses import replace

from app.errors import ErrorCode
from app.model.events import Candidate
from app.model.outcomes import Rejection
from app.pipeline.message import Message, Step

SOURCE_NOT_ALLOWED = Rejection(
    code=ErrorCode.SOURCE_NOT_ALLOWED,
    field="source",
    message="this API key may not write events of this source",
)


class CheckSource:
    def __init__(self, next_step: Step[Candidate]) -> None:
        self._next = next_step

    async def submit(self, message: Message[Candidate]) -> None:
        sources = message.ticket.sources
        if sources is None:
            await self._next.submit(message)
            return
        checked = [
            candidate
            if sources.allows(_source(candidate))
            else replace(candidate, rejection=SOURCE_NOT_ALLOWED)
            for candidate in message.events
        ]
        await self._next.submit(message.carry(checked, message.positions))


def _source(candidate: Candidate) -> object:
    return candidate.raw.get("source") if isinstance(candidate.raw, dict) else None
