"""Broker-backed HTTP mode: validate and anonymize here, let RabbitMQ hold the result.

`POST /ingest` with `SLUICE_HTTP_ACK=broker` hands its candidates to `Forwarder.forward`:
they are validated and anonymized in the web process exactly as for a direct write, and
every writable (anonymized events and the quarantine records of refused ones) is published
as one signed, persistent message (`sources/forwarded.py`). The answer comes once RabbitMQ
confirmed them all: `accepted` per event, `rejected` with its reason per refused one; the
consumer (`python -m app consume`) then writes them. If the broker refuses, times out or
is unreachable, `BrokerUnavailable` (503 with Retry-After) and the client sends again:
whatever was already published is absorbed as duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence

import aio_pika

from app.broker import BrokerPublisher
from app.pipeline.events import Candidate, Transport, Writable
from app.pipeline.ingest import IngestReport, IngestService
from app.privacy.keyring import Keyring
from app.sources import forwarded


class Forwarder:
    def __init__(self, ingest: IngestService, publisher: BrokerPublisher, keyring: Keyring) -> None:
        self._ingest = ingest
        self._publisher = publisher
        self._keyring = keyring

    async def forward(
        self, candidates: Sequence[Candidate], *, transport: Transport
    ) -> IngestReport:
        """Raises `BrokerUnavailable` unless every writable was confirmed by the broker."""
        prepared = self._ingest.prepare(candidates)
        await self._publisher.publish([self._message(w) for w in prepared.writables])
        prepared.count_received(transport)
        return prepared.enqueued_report()

    def _message(self, writable: Writable) -> aio_pika.Message:
        body = forwarded.encode(writable)
        return aio_pika.Message(
            body,
            content_type=forwarded.CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={
                forwarded.SIGNATURE_HEADER: forwarded.sign(body, self._keyring),
                forwarded.POLICY_HEADER: writable.policy_version or "",
            },
        )
