"""Issue 4, acceptance 1 and 2: contract outcomes in strict and lenient mode, the
unknown-type policies, quarantine deduplication, replay (admin API and CLI), and the
quality summary, on the real service and database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import SettingsFactory, running_app
from tests.support import make_event, run_app, unique_source

ORDER = "com.example.order.created"
SCHEMA_ID = "https://schemas.example.com/order.created/1"
TOKEN = "contracts-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

STRICT_ORDER: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "type": "object",
    "properties": {
        "order": {"type": "string"},
        "amount": {"type": "integer", "minimum": 0},
        "note": {"type": "string"},
    },
    "required": ["order", "amount"],
    "additionalProperties": False,
}
RELAXED_ORDER: dict[str, Any] = {
    **STRICT_ORDER,
    "properties": {**STRICT_ORDER["properties"], "amount": {"type": ["integer", "string"]}},
}


def write_contracts(directory: Path, schema: dict[str, Any], modes: str = "") -> Path:
    (directory / ORDER).mkdir(parents=True, exist_ok=True)
    (directory / ORDER / "1.json").write_bytes(orjson.dumps(schema))
    if modes:
        (directory / "contracts.yaml").write_text(modes)
    return directory


@pytest.fixture
def contracts_dir(tmp_path: Path) -> Path:
    return write_contracts(tmp_path / "contracts", STRICT_ORDER)


def _results(response: httpx.Response) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def _stored(db: asyncpg.Connection, source: str) -> dict[str, asyncpg.Record]:
    rows = await db.fetch(
        "SELECT id, data::text AS data, contract_version, violations::text AS violations "
        "FROM events WHERE source = $1",
        source,
    )
    return {row["id"]: row for row in rows}


def _cases(source: str) -> list[dict[str, Any]]:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return [
        make_event(source, "valid", data={"order": "o-1", "amount": 3}),
        make_event(source, "violating", data={"order": "o-2", "amount": "three", "extra": 1}),
        make_event(source, "unknown", type="com.example.never.heard.of"),
        make_event(source, "future", time=future, data={"order": "o-3", "amount": 1}),
        make_event(source, "oversized", data={"order": "o-4", "amount": 1, "note": "x" * 300}),
        make_event(source, "empty", data=None),
    ]


async def test_strict_mode_refuses_every_failed_check(
    make_settings: SettingsFactory, db: asyncpg.Connection, contracts_dir: Path
) -> None:
    source = unique_source("strict")
    settings = make_settings(
        contracts={"dir": contracts_dir, "unknown_type": "reject", "default_mode": "strict"},
        quality={"max_field_chars": 100},
    )
    async with running_app(settings) as client:
        response = await client.post("/ingest", json=_cases(source))

    assert response.status_code == 207
    outcomes = {r["id"]: (r["status"], r.get("code"), r.get("field")) for r in _results(response)}
    assert outcomes == {
        "valid": ("stored", None, None),
        "violating": ("rejected", "contract.violation", "data.amount"),
        "unknown": ("rejected", "contract.unknown_type", "type"),
        "future": ("rejected", "quality.time_skew", "time"),
        "oversized": ("rejected", "quality.field_too_large", "data.note"),
        "empty": ("rejected", "quality.empty_data", "data"),
    }
    violating = next(r for r in _results(response) if r["id"] == "violating")
    assert {(v["field"], v["keyword"]) for v in violating["violations"]} == {
        ("data.amount", "type"),
        ("data", "additionalProperties"),
    }
    stored = await _stored(db, source)
    assert list(stored) == ["valid"]
    assert stored["valid"]["contract_version"] == f"{ORDER}@1"
    quarantined = await db.fetch(
        "SELECT event_id, error_code, contract_version, violations::text AS violations, "
        "data::text AS data FROM quarantine WHERE source = $1 ORDER BY event_id",
        source,
    )
    by_id = {row["event_id"]: row for row in quarantined}
    assert set(by_id) == {"violating", "unknown", "future", "oversized", "empty"}
    assert by_id["violating"]["contract_version"] == f"{ORDER}@1"
    assert by_id["unknown"]["contract_version"] is None
    # The refused payload is kept (anonymized) for replay; the violation names no value.
    assert orjson.loads(by_id["violating"]["data"])["amount"] == "three"
    assert "three" not in by_id["violating"]["violations"]


async def test_lenient_mode_stores_without_the_violating_fields(
    make_settings: SettingsFactory, db: asyncpg.Connection, contracts_dir: Path
) -> None:
    source = unique_source("lenient")
    settings = make_settings(
        contracts={"dir": contracts_dir, "unknown_type": "quarantine", "default_mode": "lenient"},
        quality={"max_field_chars": 100},
    )
    async with running_app(settings) as client:
        response = await client.post("/ingest", json=_cases(source))

    assert response.status_code == 200  # `quarantined` is not a rejection
    statuses = {r["id"]: r["status"] for r in _results(response)}
    assert statuses == {
        "valid": "stored",
        "violating": "stored",
        "unknown": "quarantined",
        "future": "stored",
        "oversized": "stored",
        "empty": "stored",
    }
    unknown = next(r for r in _results(response) if r["id"] == "unknown")
    assert unknown["code"] == "contract.unknown_type"
    stored = await _stored(db, source)
    assert set(stored) == {"valid", "violating", "future", "oversized", "empty"}
    assert orjson.loads(stored["violating"]["data"]) == {"order": "o-2"}
    assert {(v["code"], v["field"]) for v in orjson.loads(stored["violating"]["violations"])} == {
        ("contract.violation", "data.amount"),
        ("contract.violation", "data"),  # `extra` (additionalProperties), then `required`
    }
    assert orjson.loads(stored["oversized"]["data"]) == {"order": "o-4", "amount": 1}
    assert [v["code"] for v in orjson.loads(stored["future"]["violations"])] == [
        "quality.time_skew"
    ]
    assert [v["code"] for v in orjson.loads(stored["empty"]["violations"])] == [
        "quality.empty_data"
    ]
    assert stored["valid"]["violations"] is None
    assert (
        await db.fetchval(
            "SELECT error_code FROM quarantine WHERE source = $1 AND event_id = 'unknown'", source
        )
        == "contract.unknown_type"
    )


async def test_accept_policy_stores_unknown_types_and_dataschema_picks_the_version(
    make_settings: SettingsFactory, db: asyncpg.Connection, contracts_dir: Path
) -> None:
    source = unique_source("accept")
    async with running_app(make_settings(contracts={"dir": contracts_dir})) as client:
        response = await client.post(
            "/ingest",
            json=[
                make_event(source, "other-type", type="com.example.other"),
                make_event(source, "named", dataschema=SCHEMA_ID, data={"order": "a", "amount": 1}),
                make_event(source, "misnamed", dataschema="https://elsewhere/1"),
            ],
        )
    outcomes = [(r["status"], r.get("code")) for r in _results(response)]
    assert outcomes == [("stored", None), ("stored", None), ("stored", None)]
    stored = await _stored(db, source)
    assert stored["other-type"]["contract_version"] is None
    assert stored["named"]["contract_version"] == f"{ORDER}@1"
    # An unknown schema id falls under the unknown-type policy: here, accept.
    assert stored["misnamed"]["contract_version"] is None


async def test_the_same_bad_event_sent_many_times_is_one_quarantine_row(
    make_settings: SettingsFactory, db: asyncpg.Connection, contracts_dir: Path
) -> None:
    source = unique_source("dedup")
    bad = make_event(source, "bad", data={"order": "o", "amount": -1})
    async with running_app(make_settings(contracts={"dir": contracts_dir})) as client:
        for _ in range(3):
            await client.post("/ingest", json=[bad, bad])  # twice in one batch, too
        await asyncio.gather(*(client.post("/ingest", json=bad) for _ in range(4)))
    rows = await db.fetch(
        "SELECT occurrences, received_at, last_seen_at FROM quarantine WHERE source = $1", source
    )
    assert len(rows) == 1
    assert rows[0]["occurrences"] == 10
    assert rows[0]["last_seen_at"] > rows[0]["received_at"]


async def test_replay_stores_once_after_the_contract_is_relaxed(
    make_settings: SettingsFactory, db: asyncpg.Connection, tmp_path: Path
) -> None:
    strict = write_contracts(tmp_path / "strict", STRICT_ORDER)
    relaxed = write_contracts(tmp_path / "relaxed", RELAXED_ORDER)
    source = unique_source("replay")
    events = [
        make_event(source, i, data={"order": f"o{i}", "amount": f"{i} EUR"}) for i in range(30)
    ]
    events.append(make_event(source, "hopeless", data={"order": 1, "amount": 1}))
    async with running_app(make_settings(contracts={"dir": strict}, admin_token=TOKEN)) as client:
        first = await client.post("/ingest", json=events)
        again = await client.post("/ingest", json=events[:10])  # resent: same rows
    assert first.json()["rejected"] == 31
    assert again.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 0

    async with running_app(make_settings(contracts={"dir": relaxed}, admin_token=TOKEN)) as client:
        listed = await client.get(
            "/admin/quarantine", params={"source": source, "limit": 20}, headers=AUTH
        )
        dry = await client.post(
            "/admin/quarantine:replay", json={"source": source, "dry_run": True}, headers=AUTH
        )
        replayed = await client.post(
            "/admin/quarantine:replay", json={"source": source}, headers=AUTH
        )
        second = await client.post(
            "/admin/quarantine:replay", json={"source": source}, headers=AUTH
        )
        resent = await client.post("/ingest", json=events[:5])

    assert listed.status_code == 200
    page = listed.json()
    assert len(page["rows"]) == 20
    assert page["next_cursor"] is not None
    assert {row["error_code"] for row in page["rows"]} == {"contract.violation"}
    assert dry.json() | {"dry_run": None} == {
        "examined": 31,
        "passed": 30,
        "stored": 0,
        "duplicates": 0,
        "suppressed": 0,
        "still_failing": 1,
        "not_replayable": 0,
        "dry_run": None,
    }
    assert replayed.json()["stored"] == 30
    assert replayed.json()["still_failing"] == 1
    # Replayed rows are done: a second replay finds only the hopeless one, stores nothing.
    assert second.json()["examined"] == 1
    assert second.json()["stored"] == 0
    assert [r["status"] for r in _results(resent)] == ["duplicate"] * 5
    stored = await _stored(db, source)
    assert len(stored) == 30
    assert stored["0"]["contract_version"] == f"{ORDER}@1"
    assert orjson.loads(stored["0"]["data"]) == {"order": "o0", "amount": "0 EUR"}


async def test_replay_from_the_command_line(
    make_settings: SettingsFactory,
    database_url: str,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    strict = write_contracts(tmp_path / "strict", STRICT_ORDER)
    relaxed = write_contracts(tmp_path / "relaxed", RELAXED_ORDER)
    source = unique_source("cli-replay")
    events = [make_event(source, i, data={"order": "o", "amount": "lots"}) for i in range(5)]
    async with running_app(make_settings(contracts={"dir": strict})) as client:
        await client.post("/ingest", json=events)

    def replay(*flags: str) -> dict[str, Any]:
        env = {"DATABASE_URL": database_url, "SLUICE_CONTRACTS_DIR": str(relaxed)}
        done = run_app("replay", "--source", source, *flags, env=env)
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
        return report

    dry, real, again = await asyncio.to_thread(lambda: (replay("--dry-run"), replay(), replay()))
    assert (dry["passed"], dry["stored"]) == (5, 0)
    assert (real["passed"], real["stored"]) == (5, 5)
    assert (again["examined"], again["stored"]) == (0, 0)
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 5


async def test_quality_summary_per_type(
    make_settings: SettingsFactory, contracts_dir: Path
) -> None:
    source = unique_source("quality")
    settings = make_settings(
        contracts={"dir": contracts_dir}, quality={"flush_interval_s": 0.05}, admin_token=TOKEN
    )
    good = [make_event(source, i, data={"order": "o", "amount": i}) for i in range(6)]
    bad = make_event(source, "bad", data={"order": "o"})
    async with running_app(settings) as client:
        before = await _order_quality(client)
        await client.post("/ingest", json=[*good, bad, make_event(source, "x", type="z.other")])
        await client.post("/ingest", json=good[:3])  # duplicates
        metrics = (await client.get("/metrics")).text
        after = await _eventually(
            client, lambda q: q.get("duplicate", 0) >= before.get("duplicate", 0) + 3
        )

    def grew(name: str) -> int:
        return int(after.get(name, 0)) - int(before.get(name, 0))

    assert grew("stored") == 6
    assert grew("duplicate") == 3
    assert (
        after["rejected"].get("contract.violation", 0)
        - before.get("rejected", {}).get("contract.violation", 0)
        == 1
    )
    assert 0 < after["duplicate_rate"] < 1
    # The same signals in Prometheus, with bounded type labels.
    assert f'sluice_events_by_type_total{{outcome="stored",type="{ORDER}"}}' in metrics
    assert 'sluice_events_by_type_total{outcome="stored",type="_other"}' in metrics
    assert f'sluice_violations_total{{code="contract.violation",type="{ORDER}"}}' in metrics
    assert "sluice_event_time_skew_seconds_bucket" in metrics
    assert "z.other" not in metrics


async def _order_quality(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/admin/quality", params={"period": "hour"}, headers=AUTH)
    assert response.status_code == 200
    types = {entry["type"]: entry for entry in response.json()["types"]}
    assert all(name in {ORDER, "_other"} for name in types)  # bounded labels
    return types.get(ORDER, {"rejected": {}})


async def _eventually(
    client: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    for _ in range(100):
        quality = await _order_quality(client)
        if done(quality):
            return quality
        await asyncio.sleep(0.05)
    raise AssertionError("quality counts never arrived")


async def test_admin_quarantine_endpoints_need_the_token(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(admin_token=TOKEN)) as client:
        listing = await client.get("/admin/quarantine")
        replay = await client.post("/admin/quarantine:replay", json={})
        quality = await client.get("/admin/quality")
        bad_cursor = await client.get("/admin/quarantine?cursor=abc", headers=AUTH)
        nul = await client.get("/admin/quarantine", params={"code": "a\x00b"}, headers=AUTH)
    assert [r.status_code for r in (listing, replay, quality)] == [401, 401, 401]
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["code"] == "request.invalid_parameter"
    assert nul.status_code == 422
