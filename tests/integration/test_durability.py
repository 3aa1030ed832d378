"""The promises under stress: ack only after commit, exactly-once storage under concurrent
duplicates, backpressure, and recovery from a stopped database — all on real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import orjson

from tests.conftest import SettingsFactory, running_app
from tests.support import make_event, unique_source

JSON = {"content-type": "application/json"}


async def test_twenty_clients_sending_the_same_events_store_each_once(
    make_settings: SettingsFactory, db: asyncpg.Connection
) -> None:
    """Acceptance 2: same 1,000 events, 20 clients, different orders and batch splits."""
    source = unique_source()
    events = [make_event(source, i) for i in range(1000)]
    settings = make_settings(
        batch={"max_size": 300, "write_concurrency": 4}, db={"pool_max_size": 6}
    )

    async def one_client(client: httpx.AsyncClient, seed: int) -> list[dict[str, object]]:
        rng = random.Random(seed)
        mine = events[:]
        rng.shuffle(mine)
        answers: list[dict[str, object]] = []
        position = 0
        while position < len(mine):
            size = rng.randint(1, 250)
            chunk = mine[position : position + size]
            position += size
            response = await client.post("/ingest", content=orjson.dumps(chunk), headers=JSON)
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert [r["id"] for r in results] == [e["id"] for e in chunk]  # request order kept
            answers.extend(results)
        return answers

    async with running_app(settings) as client:
        per_client = await asyncio.gather(*(one_client(client, seed) for seed in range(20)))

    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 1000
    assert (
        await db.fetchval("SELECT count(DISTINCT id) FROM events WHERE source = $1", source) == 1000
    )
    stored = 0
    for answers in per_client:
        assert len(answers) == 1000
        assert {a["status"] for a in answers} <= {"stored", "duplicate"}
        stored += sum(1 for a in answers if a["status"] == "stored")
    assert stored == 1000  # every event reported stored to exactly one client


async def test_answer_waits_for_commit(
    make_settings: SettingsFactory, db: asyncpg.Connection, database_url: str
) -> None:
    """Acceptance 3: while the write is blocked inside PostgreSQL, the client gets nothing."""
    source = unique_source()
    async with running_app(make_settings(batch={"ack_timeout_s": 30})) as client:
        async with _event_keys_locked(database_url):
            request = asyncio.create_task(
                client.post("/ingest", content=orjson.dumps(make_event(source, 1)), headers=JSON)
            )
            await asyncio.sleep(1.0)
            assert not request.done(), "answered before the write could commit"
            assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 0
        response = await request  # the lock is gone: the service's statement commits now
    assert response.status_code == 200
    assert response.json()["results"][0]["status"] == "stored"
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 1


async def test_full_buffer_answers_429_with_retry_after(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """Acceptance 5, first half: a full buffer refuses new work instead of growing."""
    source = unique_source()
    settings = make_settings(
        batch={"buffer_max_events": 5, "ack_timeout_s": 30, "retry_after_s": 2},
        limits={"max_events_per_request": 5},
    )
    async with running_app(settings) as client:
        async with _event_keys_locked(database_url):
            batch = [make_event(source, i) for i in range(5)]
            held = asyncio.create_task(
                client.post("/ingest", content=orjson.dumps(batch), headers=JSON)
            )
            await asyncio.sleep(0.3)  # the five are in flight, blocked on the lock
            refused = await client.post(
                "/ingest", content=orjson.dumps(make_event(source, 99)), headers=JSON
            )
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "2"
            assert refused.json()["code"] == "transient.buffer_full"
            # Refused before its body is read: an overloaded process decodes nothing.
            unread = await client.post("/ingest", content=b"not json", headers=JSON)
            assert unread.status_code == 429
        assert (await held).status_code == 200
        retried = await client.post(
            "/ingest", content=orjson.dumps(make_event(source, 99)), headers=JSON
        )
        assert retried.status_code == 200


@asynccontextmanager
async def _event_keys_locked(database_url: str) -> AsyncIterator[None]:
    """Holds an exclusive lock on `event_keys`, so every batch write blocks until exit."""
    locker = await asyncpg.connect(database_url)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE event_keys IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await locker.close()


async def test_pubsub_push_shares_the_bounded_buffer(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """A full buffer answers Pub/Sub with 429 + Retry-After too, so it backs off."""
    source = unique_source()
    settings = make_settings(
        batch={"buffer_max_events": 2, "ack_timeout_s": 30, "retry_after_s": 4},
        limits={"max_events_per_request": 2},
    )
    async with running_app(settings) as client, _event_keys_locked(database_url):
        held = asyncio.create_task(
            client.post(
                "/ingest",
                content=orjson.dumps([make_event(source, 1), make_event(source, 2)]),
                headers=JSON,
            )
        )
        await asyncio.sleep(0.3)
        data = orjson.dumps(make_event(source, 3))
        push = await client.post(
            "/pubsub/push",
            content=orjson.dumps(
                {
                    "message": {"data": base64.b64encode(data).decode(), "messageId": "9"},
                    "subscription": "s",
                }
            ),
            headers=JSON,
        )
        assert push.status_code == 429
        assert push.headers["retry-after"] == "4"
    assert (await held).status_code == 200
