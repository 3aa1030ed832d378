"""Acceptance 5, second half: PostgreSQL stopped → 503 and not ready; back → recovers alone.

The database here is a private PostgreSQL server (pgserver's real binaries) that this test
starts and stops; the machine's shared server is never touched.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson

from tests.conftest import SettingsFactory, running_app
from tests.support import PrivatePostgres, make_event, unique_source

JSON = {"content-type": "application/json"}


async def _wait_ready(client: httpx.AsyncClient, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if (await client.get("/health/ready")).status_code == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("service did not become ready again")


async def test_stopped_database_gives_503_and_service_recovers(
    private_postgres: PrivatePostgres, make_settings: SettingsFactory
) -> None:
    source = unique_source()
    settings = make_settings(
        url=private_postgres.url,
        batch={"ack_timeout_s": 2, "retry_max_backoff_s": 0.2, "retry_after_s": 3},
        db={"command_timeout_s": 2, "connect_timeout_s": 1},
    )
    async with running_app(settings) as client:
        before = await client.post(
            "/ingest", content=orjson.dumps(make_event(source, 1)), headers=JSON
        )
        assert before.status_code == 200

        await asyncio.to_thread(private_postgres.stop)
        during = await client.post(
            "/ingest", content=orjson.dumps(make_event(source, 2)), headers=JSON
        )
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")

        assert during.status_code == 503
        assert during.headers["retry-after"] == "3"
        assert during.json()["code"] == "transient.database"
        assert ready.status_code == 503
        assert ready.json()["components"]["database"]["ok"] is False
        assert live.status_code == 200  # a database outage is no reason to restart the pod

        await asyncio.to_thread(private_postgres.start)
        await _wait_ready(client)
        retried = await client.post(
            "/ingest", content=orjson.dumps(make_event(source, 2)), headers=JSON
        )
        again = await client.post(
            "/ingest", content=orjson.dumps(make_event(source, 1)), headers=JSON
        )

    assert retried.status_code == 200
    assert retried.json()["results"][0]["status"] == "stored"
    assert again.json()["results"][0]["status"] == "duplicate"
