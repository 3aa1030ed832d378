"""The service as users run it: `python -m app serve` in its own process, over real TCP."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import asyncpg
import httpx
import orjson

from tests.support import free_port, make_event, run_app, served, unique_source

JSON = {"content-type": "application/json"}


async def test_sigterm_drains_the_buffer_before_exit(
    database_url: str, db: asyncpg.Connection
) -> None:
    source = unique_source()
    # A long batch delay keeps the events in the buffer until shutdown forces the flush.
    env = {"DATABASE_URL": database_url, "SLUICE_BATCH_MAX_DELAY_MS": "60000"}
    with served(env) as (base_url, process):
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{base_url}/ingest?ack=enqueued",
                content=orjson.dumps([make_event(source, i) for i in range(25)]),
                headers=JSON,
            )
        assert response.status_code == 202
        assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 25


async def test_gunicorn_workers_serve_and_metrics_add_up(database_url: str) -> None:
    source = unique_source()
    with served({"DATABASE_URL": database_url}, "--workers", "2") as (base_url, _):
        for i in range(6):  # a connection each, so both workers get some
            async with httpx.AsyncClient(base_url=base_url) as fresh:
                event = orjson.dumps(make_event(source, i))
                assert (await fresh.post("/ingest", content=event, headers=JSON)).status_code == 200
        async with httpx.AsyncClient(base_url=base_url) as client:
            text = (await client.get("/metrics")).text
            ready = await client.get("/health/ready")
    assert ready.status_code == 200
    prefix = 'sluice_events_stored_total{source="http"}'
    stored = [line for line in text.splitlines() if line.startswith(prefix)]
    assert stored, text
    assert float(stored[0].split()[-1]) >= 6


def test_serve_starts_embedded_postgres_without_database_url() -> None:
    """What `make run` does on a fresh machine: no DATABASE_URL → embedded PostgreSQL."""
    source = unique_source()
    with tempfile.TemporaryDirectory(prefix="sluice-embedded-") as directory:
        env = {"DATABASE_URL": "", "SLUICE_DB_EMBEDDED_DIR": f"{directory}/pg"}
        with served(env, "--migrate", timeout_s=90) as (base_url, _):
            event = orjson.dumps(make_event(source, "readme"))
            first = httpx.post(f"{base_url}/ingest", content=event, headers=JSON)
            second = httpx.post(f"{base_url}/ingest", content=event, headers=JSON)
    assert first.json()["results"][0]["status"] == "stored"
    assert second.json()["results"][0]["status"] == "duplicate"


def test_an_invalid_policy_stops_the_start_naming_the_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nmode: denylist\nsubject: pseudonymise\n")
    result = run_app(
        "serve",
        "--port",
        str(free_port()),
        env={"SLUICE_PRIVACY_POLICY_FILE": str(policy), "DATABASE_URL": "postgresql://unused/x"},
    )
    assert result.returncode == 2
    assert f"{policy}:3" in result.stderr
