"""Pub/Sub push against Google's real emulator: the emulator pushes to a served Sluice.

The emulator (Debian's google-cloud-cli-pubsub-emulator) runs as one Java process per
test module on a free port. Under `CI=true` a missing or failing emulator fails the run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import in_ci
from tests.support import PrivatePostgres, free_port, run_pytest_under_ci, served

EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
PROJECT = "sluice-test"


def _emulator_binary() -> Path | None:
    configured = os.environ.get("SLUICE_TEST_PUBSUB_EMULATOR")
    if configured:
        return Path(configured)
    if EMULATOR.exists():
        return EMULATOR
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    root = subprocess.run(  # noqa: S603 - the machine's gcloud, read-only query
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    candidate = Path(root) / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    return candidate if candidate.exists() else None


@contextmanager
def running_emulator() -> Iterator[str]:
    """One emulator process on a free port, stopped (with its Java child) afterwards."""
    binary = _emulator_binary()
    if binary is None or not binary.exists():
        message = "the Pub/Sub emulator is not installed"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - the emulator script, our arguments
        [str(binary), "--host=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).text.strip() == "Ok":
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                pytest.fail(f"the Pub/Sub emulator exited with {process.returncode}")
            time.sleep(0.2)
        else:
            pytest.fail("the Pub/Sub emulator did not start in 60 s")
        yield url
    finally:
        os.killpg(process.pid, 15)  # the script's Java child too
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with running_emulator() as url:
        yield url


def _topic_with_push(
    emulator: str, endpoint: str, *, unwrapped: bool = False, name: str | None = None
) -> str:
    name = name or f"t{uuid.uuid4().hex[:10]}"
    topic = f"projects/{PROJECT}/topics/{name}"
    httpx.put(f"{emulator}/v1/{topic}").raise_for_status()
    push: dict[str, object] = {"pushEndpoint": endpoint}
    if unwrapped:
        push["noWrapper"] = {"writeMetadata": True}
    httpx.put(
        f"{emulator}/v1/projects/{PROJECT}/subscriptions/s{name}",
        json={"topic": topic, "pushConfig": push, "ackDeadlineSeconds": 10},
    ).raise_for_status()
    return topic


def _publish(emulator: str, topic: str, messages: list[dict[str, object]]) -> None:
    for start in range(0, len(messages), 500):
        httpx.post(
            f"{emulator}/v1/{topic}:publish", json={"messages": messages[start : start + 500]}
        ).raise_for_status()


def _message(data: bytes, attributes: dict[str, str] | None = None) -> dict[str, object]:
    return {"data": base64.b64encode(data).decode(), "attributes": attributes or {}}


async def _settled(db: asyncpg.Connection, sql: str, arg: str, expected: int) -> int:
    deadline = time.monotonic() + 90
    count = -1
    while time.monotonic() < deadline:
        count = await db.fetchval(sql, arg)
        if count >= expected:
            return int(count)
        await asyncio.sleep(0.5)
    return int(count)


async def test_every_valid_message_is_stored_once_and_malformed_ones_quarantined(
    emulator: str, database_url: str, db: asyncpg.Connection
) -> None:
    run = uuid.uuid4().hex[:8]
    ce_source, raw_type = f"/pubsub/{run}", f"com.example.raw.{run}"
    messages = []
    for n in range(650):  # CloudEvents Pub/Sub binding: binary mode in attributes
        messages.append(
            _message(
                orjson.dumps({"n": n}),
                {
                    "ce-specversion": "1.0",
                    "ce-id": f"b{n}",
                    "ce-source": ce_source,
                    "ce-type": "com.example.binary",
                    "content-type": "application/json",
                },
            )
        )
    for n in range(650):  # a structured CloudEvent as the data
        event = {
            "specversion": "1.0",
            "id": f"s{n}",
            "source": ce_source,
            "type": "com.example.s",
            "data": {"n": n},
        }
        messages.append(_message(orjson.dumps(event)))
    for n in range(650):  # plain JSON, wrapped by Sluice
        messages.append(_message(orjson.dumps({"raw": n}), {"type": raw_type}))
    for n in range(50):  # malformed: a CloudEvent without an id, or JSON that does not parse
        if n % 2:
            bad = {"specversion": "1.0", "source": ce_source, "type": f"bad.{run}"}
            messages.append(_message(orjson.dumps(bad)))
        else:
            messages.append(
                _message(
                    b"{not json",
                    {
                        "ce-specversion": "1.0",
                        "ce-id": f"x{n}",
                        "ce-source": ce_source,
                        "ce-type": f"bad.{run}",
                        "content-type": "application/json",
                    },
                )
            )
    with served({"DATABASE_URL": database_url}) as (base_url, _):
        topic = _topic_with_push(emulator, f"{base_url}/pubsub/push")
        _publish(emulator, topic, messages)
        cloud = await _settled(db, "SELECT count(*) FROM events WHERE source = $1", ce_source, 1300)
        wrapped = await _settled(db, "SELECT count(*) FROM events WHERE type = $1", raw_type, 650)
        # Identical bad messages share a quarantine row; `occurrences` counts every one.
        bad_sql = (
            "SELECT coalesce(sum(occurrences), 0) FROM quarantine "
            "WHERE transport = 'pubsub' AND type = $1"
        )
        quarantined = await _settled(db, bad_sql, f"bad.{run}", 50)
        await asyncio.sleep(3)  # anything still to be redelivered would arrive now
        async with httpx.AsyncClient() as client:
            received = (await client.get(f"{base_url}/metrics")).text
        after = await db.fetchval(bad_sql, f"bad.{run}")
    assert (cloud, wrapped) == (1300, 650)
    assert quarantined == after == 50  # acknowledged: never redelivered, so never re-quarantined
    prefix = 'sluice_events_received_total{source="pubsub"}'
    line = next(row for row in received.splitlines() if row.startswith(prefix))
    assert float(line.split()[-1]) == 2000  # each message delivered exactly once


async def test_unwrapped_deliveries_are_stored(
    emulator: str, database_url: str, db: asyncpg.Connection
) -> None:
    run = uuid.uuid4().hex[:8]
    raw_type = f"com.example.unwrapped.{run}"
    messages = [_message(orjson.dumps({"n": n}), {"type": raw_type}) for n in range(40)]
    messages += [
        _message(
            b'{"n": 1}',
            {
                "ce-specversion": "1.0",
                "ce-id": f"u{n}",
                "ce-source": f"/u/{run}",
                "ce-type": raw_type,
                "content-type": "application/json",
            },
        )
        for n in range(10)
    ]
    with served({"DATABASE_URL": database_url}) as (base_url, _):
        topic = _topic_with_push(emulator, f"{base_url}/pubsub/push", unwrapped=True)
        _publish(emulator, topic, messages)
        stored = await _settled(db, "SELECT count(*) FROM events WHERE type = $1", raw_type, 50)
    assert stored == 50
    data = await db.fetchval(
        "SELECT data::text FROM events WHERE type = $1 AND id LIKE 'u%' LIMIT 1", raw_type
    )
    assert orjson.loads(data) == {"n": 1}


async def test_database_stopped_while_publishing_then_every_message_stored_once(
    emulator: str, private_postgres: PrivatePostgres, db: asyncpg.Connection
) -> None:
    """Acceptance: PostgreSQL down for 10 s → 503s → the emulator redelivers → once each."""
    run = uuid.uuid4().hex[:8]
    raw_type = f"com.example.outage.{run}"
    env = {"DATABASE_URL": private_postgres.url, "SLUICE_BATCH_ACK_TIMEOUT_S": "2"}
    with served(env) as (base_url, _):
        topic = _topic_with_push(emulator, f"{base_url}/pubsub/push")
        _publish(
            emulator,
            topic,
            [_message(orjson.dumps({"n": n}), {"type": raw_type}) for n in range(100)],
        )
        await asyncio.to_thread(private_postgres.stop)
        _publish(
            emulator,
            topic,
            [_message(orjson.dumps({"n": n}), {"type": raw_type}) for n in range(100, 200)],
        )
        await asyncio.sleep(10)
        await asyncio.to_thread(private_postgres.start)
        target = await asyncpg.connect(private_postgres.url)
        try:
            stored = await _settled(
                target, "SELECT count(*) FROM events WHERE type = $1", raw_type, 200
            )
            distinct = await target.fetchval(
                "SELECT count(DISTINCT data->>'n') FROM events WHERE type = $1", raw_type
            )
        finally:
            await target.close()
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
    assert (stored, distinct) == (200, 200)
    failures = next(
        row for row in metrics.splitlines() if row.startswith("sluice_flush_failures_total ")
    )
    assert float(failures.split()[-1]) >= 1  # the outage was real: batches failed, 503s went out


async def test_a_push_held_past_the_ack_deadline_is_redelivered_and_stored_once(
    emulator: str, database_url: str, db: asyncpg.Connection
) -> None:
    """Acceptance: the emulator sends a second copy while the first is blocked in commit."""
    raw_type = f"com.example.slow.{uuid.uuid4().hex[:8]}"
    env = {"DATABASE_URL": database_url, "SLUICE_BATCH_ACK_TIMEOUT_S": "40"}
    with served(env) as (base_url, _):
        topic = _topic_with_push(emulator, f"{base_url}/pubsub/push")
        locker = await asyncpg.connect(database_url)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE event_keys IN ACCESS EXCLUSIVE MODE")
                _publish(emulator, topic, [_message(b'{"slow": true}', {"type": raw_type})])
                await asyncio.sleep(14)  # past the 10 s ack deadline: a second copy arrives
        finally:
            await locker.close()
        stored = await _settled(db, "SELECT count(*) FROM events WHERE type = $1", raw_type, 1)
        await asyncio.sleep(2)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
    prefix = 'sluice_events_received_total{source="pubsub"}'
    received = float(next(r for r in metrics.splitlines() if r.startswith(prefix)).split()[-1])
    assert stored == 1
    assert await db.fetchval("SELECT count(*) FROM events WHERE type = $1", raw_type) == 1
    assert received >= 2  # the redelivery did arrive, and became a duplicate


async def test_message_ids_reused_after_an_emulator_restart_are_new_events(
    database_url: str, db: asyncpg.Connection
) -> None:
    """Issue 11: the emulator numbers messages from 1 again after a restart; the same
    topic and subscription then deliver new messages under old ids. Each is stored."""
    name = f"t{uuid.uuid4().hex[:10]}"
    raw_type = f"com.example.reused.{name}"
    with served({"DATABASE_URL": database_url}) as (base_url, _):
        for run in ("before", "after"):
            with running_emulator() as emulator:
                topic = _topic_with_push(emulator, f"{base_url}/pubsub/push", name=name)
                batch = [
                    _message(orjson.dumps({"run": run, "n": n}), {"type": raw_type})
                    for n in range(5)
                ]
                _publish(emulator, topic, batch)
                await _settled(
                    db,
                    "SELECT count(*) FROM events WHERE type = $1",
                    raw_type,
                    5 if run == "before" else 10,
                )
    rows = await db.fetch("SELECT id, data->>'run' AS run FROM events WHERE type = $1", raw_type)
    ids = {row["id"].split("@", 1)[0] for row in rows}
    assert len(rows) == 10
    assert {row["run"] for row in rows} == {"before", "after"}
    assert len(ids) == 5  # the emulator re-used the five message ids, none was lost


async def test_the_google_client_s_messages_are_stored_and_drops_are_counted(
    emulator: str, database_url: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: Google's own client publishes CloudEvents in `ce-` attributes with no
    `content-type` attribute: JSON data is stored as JSON; opaque bytes are dropped by the
    shipped policy, and every drop is counted."""
    from google.cloud import pubsub_v1  # noqa: PLC0415 - needs PUBSUB_EMULATOR_HOST first

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.removeprefix("http://"))
    source = f"/gclient/{uuid.uuid4().hex[:8]}"
    with served({"DATABASE_URL": database_url}) as (base_url, _):
        topic = _topic_with_push(emulator, f"{base_url}/pubsub/push")
        publisher = pubsub_v1.PublisherClient()
        attributes = {"ce-specversion": "1.0", "ce-source": source, "ce-type": "com.example.g"}
        futures = [
            publisher.publish(topic, orjson.dumps({"n": n}), **attributes, **{"ce-id": f"j{n}"})
            for n in range(5)
        ] + [
            publisher.publish(topic, b"\x00\xffopaque", **attributes, **{"ce-id": f"b{n}"})
            for n in range(3)
        ]
        for future in futures:
            future.result(timeout=30)
        stored = await _settled(db, "SELECT count(*) FROM events WHERE source = $1", source, 8)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{base_url}/metrics")).text
    rows = await db.fetch(
        "SELECT id, data::text AS data FROM events WHERE source = $1 ORDER BY id", source
    )
    assert stored == 8
    assert {r["id"]: r["data"] for r in rows if r["id"].startswith("b")} == dict.fromkeys(
        ("b0", "b1", "b2")
    )
    assert sorted(orjson.loads(r["data"])["n"] for r in rows if r["id"].startswith("j")) == list(
        range(5)
    )
    dropped = [
        line
        for line in metrics.splitlines()
        if line.startswith("sluice_payloads_dropped_total{") and 'transport="pubsub"' in line
    ]
    assert sum(float(line.split()[-1]) for line in dropped) == 3


def test_an_emulator_that_cannot_start_fails_the_run_under_ci() -> None:
    """A child pytest with CI=true and a missing emulator must fail, not skip."""
    result = run_pytest_under_ci(
        f"{__file__}::test_unwrapped_deliveries_are_stored",
        {"SLUICE_TEST_PUBSUB_EMULATOR": "/nonexistent/emulator"},
    )
    assert result.returncode != 0
    assert "skipped" not in result.stdout
