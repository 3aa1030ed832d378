"""The load of a fault test and its ledger: what was sent, acknowledged, stored.

Clients behave as the API asks a careful producer to: every batch has fixed event ids; a
batch that got no 2xx (a 429/503, a reset connection, a refused one while the server is
down) is sent again, the same events, until it is acknowledged or the test's deadline
passes. The ledger then compares with what the database holds:

    sent          distinct events the clients tried to deliver
    acknowledged  events a 2xx reported `stored` or `duplicate` (committed)
    stored        distinct events in the events table
    duplicates    rows beyond the first per (source, id): must be 0
    lost          acknowledged events not stored: must be 0
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import httpx
import orjson

from app.config import AmqpSettings
from tests.broker_support import publish_all, raw_message
from tests.support import make_event

BATCH = "application/cloudevents-batch+json"
_COMMITTED = {"stored", "duplicate"}
_TRANSPORT_ERRORS = (httpx.TransportError,)


@dataclass
class Ledger:
    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    unanswered: list[float] = field(default_factory=list)  # start times of attempts with no answer
    missing_retry_after: int = 0  # 429/503 answers without a Retry-After header
    slowest_refusal_s: float = 0.0  # the longest a 503 took to come back
    answered: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, done, status)

    def note(self, status: int, started: float, response: httpx.Response) -> None:
        done = time.monotonic()
        self.statuses[status] += 1
        self.answered.append((started, done, status))
        if status in (429, 503):
            if "retry-after" not in response.headers:
                self.missing_retry_after += 1
            self.slowest_refusal_s = max(self.slowest_refusal_s, done - started)


@dataclass(frozen=True)
class Counts:
    sent: int
    acknowledged: int
    stored: int
    duplicates: int
    lost: int

    def line(self, name: str, ledger: Ledger) -> str:
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(ledger.statuses.items()))
        return (
            f"[fault:{name}] sent={self.sent} acknowledged={self.acknowledged} "
            f"stored={self.stored} duplicates={self.duplicates} lost={self.lost} "
            f"http={{{statuses}}} connection_errors={ledger.transport_errors}"
        )


async def stored_counts(url: str, source: str) -> Counter[str]:
    """Rows per event id of `source` in the events table."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id, count(*) AS n FROM events WHERE source = $1 GROUP BY id", source
        )
    finally:
        await connection.close()
    return Counter({row["id"]: row["n"] for row in rows})


async def wait_stored(url: str, source: str, total: int, timeout_s: float = 90) -> Counter[str]:
    """Polls until `total` distinct events of `source` are stored (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    stored = await stored_counts(url, source)
    while len(stored) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        stored = await stored_counts(url, source)
    return stored


def tally(ledger: Ledger, stored: Counter[str]) -> Counts:
    return Counts(
        sent=len(ledger.sent),
        acknowledged=len(ledger.acknowledged),
        stored=len(stored),
        duplicates=sum(n - 1 for n in stored.values()),
        lost=len(ledger.acknowledged - stored.keys()),
    )


@dataclass
class Load:
    """`clients` concurrent producers, each sending `batches` batches of `batch_size`."""

    base_url: Callable[[], str]  # read per attempt: a restarted server may move
    source: str
    clients: int = 4
    batches: int = 25
    batch_size: int = 20
    pause_s: float = 0.02  # between a client's batches: a steady stream, not a flood
    retry_pause_s: float = 0.2
    deadline_s: float = 90.0
    ledger: Ledger = field(default_factory=Ledger)

    async def run(self) -> Ledger:
        give_up_at = time.monotonic() + self.deadline_s
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(
                *(self._client(http, number, give_up_at) for number in range(self.clients))
            )
        return self.ledger

    async def _client(self, http: httpx.AsyncClient, number: int, give_up_at: float) -> None:
        for batch in range(self.batches):
            ids = [f"c{number}-b{batch}-e{index}" for index in range(self.batch_size)]
            body = orjson.dumps([make_event(self.source, event_id) for event_id in ids])
            self.ledger.sent.update(ids)
            await self._deliver(http, body, give_up_at)
            await asyncio.sleep(self.pause_s)

    async def _deliver(self, http: httpx.AsyncClient, body: bytes, give_up_at: float) -> None:
        while time.monotonic() < give_up_at:
            started = time.monotonic()
            try:
                response = await http.post(
                    f"{self.base_url()}/ingest", content=body, headers={"content-type": BATCH}
                )
            except _TRANSPORT_ERRORS:
                self.ledger.transport_errors += 1
                self.ledger.unanswered.append(started)
                await asyncio.sleep(self.retry_pause_s)
                continue
            self.ledger.note(response.status_code, started, response)
            if response.status_code in (200, 207):
                results = response.json()["results"]
                self.ledger.acknowledged.update(
                    r["id"] for r in results if r["status"] in _COMMITTED
                )
                return
            await asyncio.sleep(self.retry_pause_s)


async def publish_paced(
    url: str, queue: AmqpSettings, ids: list[str], *, chunk: int, pause_s: float
) -> set[str]:
    """Raw JSON messages with these `message_id`s, `chunk` per confirmed publish, a pause
    between: a steady stream for a consumer under test. Returns the confirmed ids."""
    confirmed: set[str] = set()
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        await publish_all(url, [raw_message(orjson.dumps({"id": i}), i) for i in part], queue)
        confirmed.update(part)
        await asyncio.sleep(pause_s)
    return confirmed
