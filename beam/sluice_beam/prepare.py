"""Reading a chunk and preparing its events: the service's own steps, with a sink that
hands their result to Beam instead of the batcher.

`Prepare` assembles the way through with `app.main.build_pipeline`, exactly as the
service does (validate → anonymize → contract), with `Collect` as the sink. What
comes out is split the Beam way: anonymized events on the main output, the quarantine
rows of rejected events on the tagged output `quarantine`, each as one list per chunk,
so that each side of a chunk is written, and recorded, as a unit (`commits.py`).

The contract stage's time checks (`quality.too_old`, `quality.time_skew`) judge every
event against one instant, `--as_of` (default: when the job was built), not each
worker's clock: a retried bundle, or a rerun tomorrow, judges exactly as the first did.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from app.clock import monotonic
from app.contracts.checker import ContractChecker
from app.main import build_pipeline
from app.model.events import AnonymizedEvent, Candidate, QuarantineRecord, Transport, Writable
from app.pipeline.message import Message, Ticket
from app.privacy.engine import PolicyAnonymizer
from sluice_beam.chunks import Chunk, read_chunk
from sluice_beam.decode import decode
from sluice_beam.runtime import Resources

QUARANTINE = "quarantine"
EVENTS = "events"
_NAMESPACE = "sluice"
# The steps never wait on anything; the deadline only has to be a number.
_TICKET_DEADLINE_S = 3600.0


class ReadChunk(beam.DoFn):
    """A chunk → `(chunk, candidates)`: its lines decoded, in order."""

    def __init__(self) -> None:
        self._lines = Metrics.counter(_NAMESPACE, "lines_read")
        self._chunks = Metrics.counter(_NAMESPACE, "chunks_read")

    def process(self, chunk: Chunk) -> Iterator[tuple[Chunk, list[Candidate]]]:
        candidates: list[Candidate] = []
        lines = 0
        for offset, line in read_chunk(chunk):
            lines += 1
            candidates.extend(decode(line, f"{chunk.path}@{offset}"))
        self._lines.inc(lines)
        self._chunks.inc()
        yield chunk, candidates


class Collect:
    """The last step: keeps what the steps made of one message, for `Prepare` to emit."""

    def __init__(self) -> None:
        self._taken: list[Writable] = []

    async def submit(self, message: Message[AnonymizedEvent]) -> None:
        message.ticket.taken()
        self._taken = [*message.events, *message.finished]

    def take(self) -> list[Writable]:
        taken, self._taken = self._taken, []
        return taken


class Prepare(beam.DoFn):
    """`(chunk, candidates)` → `(chunk, events)`, and `(chunk, quarantine rows)` tagged
    `quarantine`: one of each per chunk, empty lists included."""

    def __init__(self, as_of: datetime, environment: Mapping[str, str]) -> None:
        self._as_of = as_of
        self._environment = dict(environment)
        self._events = Metrics.counter(_NAMESPACE, "events_prepared")
        self._rejected = Metrics.counter(_NAMESPACE, "events_rejected")

    def setup(self) -> None:
        self._resources = Resources(self._environment)
        settings = self._resources.settings
        anonymizer = PolicyAnonymizer.from_settings(settings.privacy)
        checker = ContractChecker.from_settings(settings.contracts, settings.quality)
        self._collect = Collect()
        as_of = self._as_of
        self._steps = build_pipeline(
            settings, anonymizer, checker, self._collect, wall_clock=lambda: as_of
        )

    def process(self, element: tuple[Chunk, list[Candidate]]) -> Iterator[Any]:
        chunk, candidates = element
        ticket = Ticket.for_candidates(
            candidates, Transport.FILE, deadline=monotonic() + _TICKET_DEADLINE_S
        )
        self._resources.run(self._steps.submit(Message.of(ticket, candidates)))
        events: list[AnonymizedEvent] = []
        records: list[QuarantineRecord] = []
        for writable in self._collect.take():
            (events if isinstance(writable, AnonymizedEvent) else records).append(writable)
        self._events.inc(len(events))
        self._rejected.inc(len(records))
        yield chunk, events
        yield beam.pvalue.TaggedOutput(QUARANTINE, (chunk, records))

    def teardown(self) -> None:
        self._resources.close()
