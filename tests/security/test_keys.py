"""API keys beyond the matrix: the revocation bound, rate limits, the admin audit,
batched last-used times, the keys file and its precedence, the admin token as a
bootstrap key, `python -m app keys`, and the production rules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from app.auth import admin as key_admin
from app.clock import utc_now
from app.config import AuthSettings, Environment, IngestAccess, Settings
from app.storage.keys import KeyRepository
from tests.conftest import SettingsFactory, running_app
from tests.security.keys import make_key
from tests.support import make_event, run_app, unique_source

ADMIN_TOKEN = "x" * 40


def _with_auth(settings: Settings, **auth: Any) -> Settings:
    return settings.model_copy(update={"auth": AuthSettings(ingest=IngestAccess.KEYS, **auth)})


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        yield created
    finally:
        await created.close()


async def test_revocation_takes_effect_within_the_cache_ttl(
    make_settings: SettingsFactory, database_url: str, pool: asyncpg.Pool
) -> None:
    name = f"revoke-{uuid.uuid4().hex[:8]}"
    key = await make_key(database_url, name, ["ingest"])
    settings = _with_auth(make_settings(), cache_ttl_s=0.3)
    async with running_app(settings) as client:
        source = unique_source()
        ok = await client.post("/ingest", json=make_event(source, 1), headers={"X-API-Key": key})
        assert ok.status_code == 200
        await KeyRepository(pool).revoke(name, at=utc_now(), actor="test")
        await asyncio.sleep(0.8)  # the bound is cache_ttl_s (plus one reload)
        gone = await client.post("/ingest", json=make_event(source, 2), headers={"X-API-Key": key})
        assert gone.status_code == 401


async def test_rate_limit_answers_429_with_retry_after_and_ratelimit_fields(
    make_settings: SettingsFactory, database_url: str
) -> None:
    key = await make_key(database_url, f"busy-{uuid.uuid4().hex[:8]}", ["admin:read"])
    settings = _with_auth(make_settings(), rate_limit_per_s=0.5, rate_limit_burst=2)
    async with running_app(settings) as client:
        answers = [await client.get("/admin/quality", headers={"X-API-Key": key}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[2]
    assert limited.json()["code"] == "transient.rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-limit"] == "2"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert int(limited.headers["ratelimit-reset"]) >= 1
    assert limited.headers["ratelimit-policy"] == "2;w=4"


async def test_admin_writes_are_audited_with_the_key_name_never_the_key(
    make_settings: SettingsFactory, database_url: str, db: asyncpg.Connection
) -> None:
    name = f"dpo-{uuid.uuid4().hex[:8]}"
    key = await make_key(database_url, name, ["admin:write", "admin:read"])
    async with running_app(make_settings()) as client:
        erased = await client.post(
            "/admin/subjects:erase",
            json={"subjects": ["audited@example.com"], "requester": "ticket-1"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert erased.status_code == 200
        read = await client.get("/admin/quality", headers={"X-API-Key": key})
        assert read.status_code == 200
    rows = await db.fetch("SELECT actor, action, target FROM admin_audit WHERE actor = $1", name)
    # The key's creation (by the test) is audited under `test`; the erasure under the name.
    assert [(r["actor"], r["action"]) for r in rows] == [(name, "admin.erase")]
    dump = str(await db.fetch("SELECT * FROM admin_audit"))
    assert key not in dump


async def test_last_used_is_written_in_one_batch_not_per_request(
    make_settings: SettingsFactory, database_url: str, db: asyncpg.Connection
) -> None:
    name = f"used-{uuid.uuid4().hex[:8]}"
    key = await make_key(database_url, name, ["admin:read"])
    async with running_app(make_settings()) as client:
        for _ in range(3):
            assert (
                await client.get("/admin/quality", headers={"X-API-Key": key})
            ).status_code == 200
        # Not yet: nothing was written per request.
        assert await db.fetchval("SELECT last_used_at FROM api_keys WHERE name = $1", name) is None
    # Shutdown flushes what the process saw.
    assert await db.fetchval("SELECT last_used_at FROM api_keys WHERE name = $1", name) is not None


async def test_keys_file_keys_work_and_win_over_the_database(
    make_settings: SettingsFactory, database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    key, record = key_admin.new_record("mounted", ["ingest"], ["/mounted/*"], None)
    # The same key id in the database with other scopes: the file's entry decides.
    shadow = replace(record, name="db-copy", scopes=("admin:read",), sources=None)
    await KeyRepository(pool).insert(shadow, actor="test")
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(key_admin.file_entry(record))
    settings = _with_auth(make_settings(), keys_file=keys_file)
    async with running_app(settings) as client:
        headers = {"X-API-Key": key}
        stored = await client.post("/ingest", json=make_event("/mounted/a", 1), headers=headers)
        assert stored.status_code == 200
        other = await client.post("/ingest", json=make_event("/elsewhere", 1), headers=headers)
        assert other.json()["results"][0]["code"] == "auth.source_not_allowed"
        assert (await client.get("/admin/quality", headers=headers)).status_code == 403


async def test_a_broken_keys_file_stops_the_start(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("keys: [{name: x, scopes: [everything]}]\n")
    settings = _with_auth(make_settings(), keys_file=keys_file)
    with pytest.raises(Exception, match=r"keys\.yaml: not a usable keys file"):
        async with running_app(settings):
            pass


async def test_admin_token_is_a_bootstrap_key_with_admin_scopes_only(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(_with_auth(make_settings(admin_token=ADMIN_TOKEN))) as client:
        bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (await client.get("/admin/quality", headers=bearer)).status_code == 200
        ingest = await client.post("/ingest", json=make_event("/x", 1), headers=bearer)
        assert ingest.status_code == 403


def test_keys_cli_create_list_rotate_revoke(database_url: str) -> None:
    env = {"DATABASE_URL": database_url, "SLUICE_ENV": "test"}
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = run_app("keys", "create", name, "--scope", "ingest", "--source", "/cli/*", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("slk_")
    listed = run_app("keys", "list", env=env)
    assert name in listed.stdout
    assert key not in listed.stdout  # shown once, never again
    assert key.split("_")[2] not in listed.stdout
    rotated = run_app("keys", "rotate", name, "--grace", "0", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip().startswith("slk_")
    assert rotated.stdout.strip() != key
    revoked = run_app("keys", "revoke", name, env=env)
    assert revoked.returncode == 0, revoked.stderr
    again = run_app("keys", "revoke", name, env=env)
    assert again.returncode == 2
    bad = run_app("keys", "create", name, "--scope", "root", env=env)
    assert bad.returncode == 2
    assert "root" in bad.stderr


def test_production_defaults_to_keys_and_refuses_default_secrets() -> None:
    production: dict[str, Any] = {
        "env": "production",
        "database_url": "postgresql://db/sluice",
        "privacy": {"pseudonym_key": "a-real-secret"},
        "pubsub": {"enabled": False},
    }
    settings = Settings(**production)
    assert settings.auth.ingest_access(settings.env) is IngestAccess.KEYS
    opened = Settings(**production, auth=AuthSettings(ingest=IngestAccess.OPEN))
    assert opened.auth.ingest_access(opened.env) is IngestAccess.OPEN
    development = Settings(env="development")
    assert development.auth.ingest_access(development.env) is IngestAccess.OPEN
    with pytest.raises(ValidationError, match="public development key"):
        Settings(
            **{**production, "privacy": {"pseudonym_key": "sluice-development-key-not-secret"}}
        )
    with pytest.raises(ValidationError, match="SLUICE_ADMIN_TOKEN must be at least"):
        Settings(**production, admin_token="changeme")  # noqa: S106 - a placeholder it must refuse


async def test_production_serving_requires_keys_for_ingest(
    make_settings: SettingsFactory, database_url: str
) -> None:
    key = await make_key(database_url, f"prod-{uuid.uuid4().hex[:8]}", ["ingest"])
    production = make_settings().model_copy(
        update={"env": Environment.PRODUCTION, "auth": AuthSettings(rate_limit_per_s=0)}
    )
    async with running_app(production) as client:
        source = unique_source()
        anonymous = await client.post("/ingest", json=make_event(source, 1))
        keyed = await client.post("/ingest", json=make_event(source, 1), headers={"X-API-Key": key})
    assert anonymous.status_code == 401
    assert keyed.status_code == 200
