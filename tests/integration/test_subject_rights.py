"""Rights of the data subject on real PostgreSQL: erasure across partitions and the
quarantine, suppression of later events, access, key rotation, and the admin credential."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote

import asyncpg
import httpx
import orjson
import pytest

from app.config import DatabaseSettings, PrivacySettings
from app.pipeline.writer import BatchWriter
from app.privacy.keyring import Keyring
from app.storage.database import create_pool
from app.storage.repository import EventRepository
from tests.conftest import SettingsFactory, running_app
from tests.integration.test_writer import _event
from tests.support import make_event, unique_source

TOKEN = "test-admin-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}


@pytest.fixture
async def admin_client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(admin_token=TOKEN)) as client:
        yield client


async def _store_in_partition(database_url: str, moment: datetime, event: object) -> None:
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=2))
    try:
        writer = BatchWriter(
            EventRepository(pool), DatabaseSettings(), max_backoff_s=0.05, wall_clock=lambda: moment
        )
        await writer.write([event], deadline=float("inf"))  # type: ignore[list-item]
    finally:
        await pool.close()


async def test_admin_endpoints_need_the_token(
    make_settings: SettingsFactory, admin_client: httpx.AsyncClient
) -> None:
    body = {"subjects": ["x@example.com"], "requester": "dpo"}
    async with running_app(make_settings()) as unconfigured:
        disabled = await unconfigured.post("/admin/subjects:erase", json=body, headers=ADMIN)
    missing = await admin_client.post("/admin/subjects:erase", json=body)
    wrong = await admin_client.post(
        "/admin/subjects:erase", json=body, headers={"authorization": "Bearer nope"}
    )
    access = await admin_client.get("/admin/subjects/x%40example.com/events")
    for response in (disabled, missing, wrong, access):
        assert response.status_code == 401
        assert response.json()["code"] == "auth.unauthorized"


async def test_erasure_removes_every_row_across_partitions_and_quarantine(
    admin_client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    subject = f"erase-me-{unique_source()}@example.com"
    keyring = Keyring.from_settings(PrivacySettings())
    source = unique_source()
    days = [datetime(2034, 2, day, 12, tzinfo=UTC) for day in (3, 9, 20)]
    for number, moment in enumerate(days):
        event = dataclasses.replace(
            _event(source, f"p{number}"),
            subject_pseudonym=keyring.pseudonym(subject),
            pseudonym_key_id=keyring.active_id,
        )
        await _store_in_partition(database_url, moment, event)
    via_http = await admin_client.post(
        "/ingest",
        content=orjson.dumps(
            [
                make_event(source, "today", subject=subject),
                make_event(source, "bad", subject=subject, specversion="9"),  # quarantined
                make_event(source, "other", subject="someone-else@example.com"),
            ]
        ),
        headers=JSON,
    )
    assert via_http.status_code == 207
    partitions = await db.fetch(
        "SELECT DISTINCT tableoid::regclass::text AS p FROM events WHERE source = $1", source
    )
    assert len(partitions) >= 4

    erased = await admin_client.post(
        "/admin/subjects:erase",
        json={"subjects": [subject], "requester": "ticket-4711"},
        headers=ADMIN,
    )

    assert erased.status_code == 200, erased.text
    answer = erased.json()
    assert (answer["events_deleted"], answer["quarantine_deleted"]) == (4, 1)
    assert subject not in erased.text
    left = await db.fetch("SELECT id FROM events WHERE source = $1", source)
    assert [row["id"] for row in left] == ["other"]
    assert await db.fetchval("SELECT count(*) FROM quarantine WHERE source = $1", source) == 0
    audit = await db.fetchrow(
        "SELECT * FROM subject_audit WHERE subject_pseudonym = $1", keyring.pseudonym(subject)
    )
    assert audit is not None
    assert (audit["action"], audit["requester"]) == ("erase", "ticket-4711")
    assert (audit["events_deleted"], audit["quarantine_deleted"]) == (4, 1)
    assert subject not in str(dict(audit))

    later = await admin_client.post(
        "/ingest", content=orjson.dumps(make_event(source, "later", subject=subject)), headers=JSON
    )
    assert later.status_code == 200
    assert later.json()["results"][0]["status"] == "suppressed"
    assert await db.fetchval("SELECT count(*) FROM events WHERE id = 'later'") == 0
    # A later refused event of the erased subject leaves nothing in quarantine either.
    refused = await admin_client.post(
        "/ingest",
        content=orjson.dumps(make_event(source, "later-bad", subject=subject, specversion="9")),
        headers=JSON,
    )
    assert refused.json()["results"][0]["status"] == "rejected"
    assert await db.fetchval("SELECT count(*) FROM quarantine WHERE source = $1", source) == 0

    lifted = await admin_client.post(
        "/admin/subjects:unsuppress",
        json={"subjects": [subject], "requester": "ticket-4712"},
        headers=ADMIN,
    )
    assert lifted.json()["suppression_entries_removed"] >= 1
    after = await admin_client.post(
        "/ingest", content=orjson.dumps(make_event(source, "later", subject=subject)), headers=JSON
    )
    assert after.json()["results"][0]["status"] == "stored"


async def test_erasure_after_key_rotation_finds_old_and_new_rows(
    make_settings: SettingsFactory, db: asyncpg.Connection
) -> None:
    subject = f"rotated-{unique_source()}@example.com"
    source = unique_source()
    old = make_settings(
        admin_token=TOKEN, privacy={"pseudonym_key": "old-secret", "pseudonym_key_id": "k1"}
    )
    new = make_settings(
        admin_token=TOKEN,
        privacy={
            "pseudonym_key": "new-secret",
            "pseudonym_key_id": "k2",
            "previous_keys": {"k1": "old-secret"},
        },
    )
    async with running_app(old) as client:
        await client.post(
            "/ingest", content=orjson.dumps(make_event(source, "a", subject=subject)), headers=JSON
        )
    async with running_app(new) as client:
        await client.post(
            "/ingest", content=orjson.dumps(make_event(source, "b", subject=subject)), headers=JSON
        )
        rows = await db.fetch(
            "SELECT id, subject_pseudonym, pseudonym_key_id FROM events "
            "WHERE source = $1 ORDER BY id",
            source,
        )
        assert [(r["id"], r["pseudonym_key_id"]) for r in rows] == [("a", "k1"), ("b", "k2")]
        assert rows[0]["subject_pseudonym"] != rows[1]["subject_pseudonym"]  # differ across keys
        erased = await client.post(
            "/admin/subjects:erase", json={"subjects": [subject], "requester": "dpo"}, headers=ADMIN
        )
    assert erased.json()["events_deleted"] == 2
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 0


async def test_access_returns_a_subjects_events_page_by_page(
    admin_client: httpx.AsyncClient,
) -> None:
    subject = f"access-{unique_source()}@example.com"
    source = unique_source()
    for number in range(5):
        await admin_client.post(
            "/ingest",
            content=orjson.dumps(make_event(source, number, subject=subject)),
            headers=JSON,
        )
    seen: list[str] = []
    cursor: str | None = None
    path = f"/admin/subjects/{quote(subject, safe='')}/events"  # '/' and '@' travel encoded
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await admin_client.get(path, params=params, headers=ADMIN)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [event["id"] for event in body["events"]]
        assert subject not in page.text  # the answer names the pseudonym, never the subject
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == ["0", "1", "2", "3", "4"]
    bad = await admin_client.get(path, params={"cursor": "not-a-cursor"}, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["field"] == "cursor"


async def test_erasure_request_is_validated(admin_client: httpx.AsyncClient) -> None:
    empty = await admin_client.post(
        "/admin/subjects:erase", json={"subjects": [], "requester": "dpo"}, headers=ADMIN
    )
    no_requester = await admin_client.post(
        "/admin/subjects:erase", json={"subjects": ["a"]}, headers=ADMIN
    )
    assert (empty.status_code, no_requester.status_code) == (422, 422)
    assert empty.json()["code"] == "request.invalid_parameter"
    assert (empty.json()["field"], no_requester.json()["field"]) == ("subjects", "requester")


def test_keys_give_stable_and_distinct_pseudonyms() -> None:
    one = Keyring(active_id="k1", keys={"k1": b"a"})
    two = Keyring(active_id="k2", keys={"k2": b"b", "k1": b"a"})
    assert one.pseudonym("s") == one.pseudonym("s")
    assert one.pseudonym("s") != two.pseudonym("s")
    assert two.all_pseudonyms("s")["k1"] == one.pseudonym("s")


async def test_text_postgres_cannot_hold_is_refused_with_422(
    admin_client: httpx.AsyncClient,
) -> None:
    """Found by schemathesis: a NUL in `requester` reached the audit insert and failed it."""
    for body in (
        b'{"subjects": ["a@example.com"], "requester": "dpo\\u0000"}',
        b'{"subjects": ["a\\udc00"], "requester": "dpo"}',
    ):
        response = await admin_client.post(
            "/admin/subjects:erase",
            content=body,
            headers={**ADMIN, "content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "request.invalid_parameter"


async def test_wrong_method_names_the_allowed_ones(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.delete("/ingest")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
