"""POST /ingest end to end against real PostgreSQL: modes, answers, what lands in tables."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson

from tests.support import make_event, unique_source

STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


async def _rows(db: asyncpg.Connection, source: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM events WHERE source = $1 ORDER BY id", source)


async def test_event_is_stored_once_and_repeat_is_duplicate(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    source = unique_source()
    event = make_event(source, "e-1", subject="alice@example.com", traceparent="00-abc-01")

    first = await client.post("/ingest", content=orjson.dumps(event), headers=STRUCTURED)
    second = await client.post("/ingest", content=orjson.dumps(event), headers=STRUCTURED)

    assert first.status_code == 200
    assert first.json()["results"] == [
        {"index": 0, "status": "stored", "id": "e-1", "source": source}
    ]
    assert second.status_code == 200
    assert second.json()["results"][0]["status"] == "duplicate"
    rows = await _rows(db, source)
    assert len(rows) == 1
    row = rows[0]
    assert row["type"] == "com.example.order.created"
    assert orjson.loads(row["data"]) == event["data"]
    assert orjson.loads(row["extensions"]) == {"traceparent": "00-abc-01"}
    assert row["subject_pseudonym"] is not None
    assert "alice" not in row["subject_pseudonym"]
    assert row["pseudonym_key_id"] == "k1"
    assert await db.fetchval("SELECT count(*) FROM event_keys WHERE source = $1", source) == 1


async def test_batch_with_some_rejected_is_207_and_rejects_are_quarantined(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    source = unique_source()
    events = [
        make_event(source, 1),
        {k: v for k, v in make_event(source, 2, subject="bob@example.com").items() if k != "id"},
        make_event(source, 3, specversion="0.3"),
        make_event(source, 1),  # a repeat inside the same request
    ]

    response = await client.post("/ingest", content=orjson.dumps(events), headers=BATCH)

    assert response.status_code == 207
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["stored", "rejected", "rejected", "duplicate"]
    assert body["results"][1]["code"] == "envelope.missing_attribute"
    assert body["results"][1]["field"] == "id"
    assert body["results"][2]["code"] == "envelope.bad_specversion"
    assert (body["stored"], body["duplicate"], body["rejected"]) == (1, 1, 2)
    quarantined = await db.fetch(
        "SELECT * FROM quarantine WHERE source = $1 ORDER BY error_code", source
    )
    assert [q["error_code"] for q in quarantined] == [
        "envelope.bad_specversion",
        "envelope.missing_attribute",
    ]
    for row in quarantined:
        assert "bob@example.com" not in str(dict(row))
        assert row["policy_version"]
        # `data` is kept only as the anonymization policy leaves it.
        assert orjson.loads(row["data"]) == {"order": row["event_id"] or "2", "amount": 42}
    assert quarantined[1]["subject_pseudonym"] is not None


async def test_application_json_object_and_array(client: httpx.AsyncClient) -> None:
    source = unique_source()
    single = await client.post(
        "/ingest",
        content=orjson.dumps(make_event(source, "a")),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    many = await client.post(
        "/ingest",
        content=orjson.dumps([make_event(source, "b"), make_event(source, "c")]),
        headers={"content-type": "application/json"},
    )
    assert single.status_code == 200
    assert single.json()["stored"] == 1
    assert many.status_code == 200
    assert many.json()["stored"] == 2


async def test_binary_mode(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    source = unique_source()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": source,
        "ce-type": "com.example.binary",
        "ce-time": f"{yesterday}T10:00:00+01:00",
        "ce-subject": "carol%40example.com",
        "ce-partitionkey": "p%2F7",
        "content-type": "application/json",
    }
    response = await client.post("/ingest", content=b'{"k": [1, 2]}', headers=headers)
    text = await client.post(
        "/ingest",
        content=b"hello",
        headers={**headers, "ce-id": "bin-2", "content-type": "text/plain"},
    )
    raw = await client.post(
        "/ingest",
        content=b"\x00\xff",
        headers={**headers, "ce-id": "bin-3", "content-type": "application/octet-stream"},
    )

    assert [r.status_code for r in (response, text, raw)] == [200, 200, 200]
    rows = await _rows(db, source)
    # The shipped policy drops opaque (base64) payloads: it cannot look into them.
    assert [r["data"] and orjson.loads(r["data"]) for r in rows] == [{"k": [1, 2]}, "hello", None]
    assert [r["data_is_base64"] for r in rows] == [False, False, False]
    assert rows[0]["time"].isoformat() == f"{yesterday}T09:00:00+00:00"
    assert orjson.loads(rows[0]["extensions"]) == {"partitionkey": "p/7"}
    assert rows[0]["datacontenttype"] == "application/json"


async def test_missing_binary_attribute_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/ingest",
        content=b"{}",
        headers={
            "ce-specversion": "1.0",
            "ce-source": unique_source(),
            "ce-type": "t",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 422
    assert response.json()["results"][0]["code"] == "envelope.missing_attribute"
    assert response.json()["results"][0]["field"] == "id"


async def test_ack_enqueued_answers_202_and_stores(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    source = unique_source()
    by_query = await client.post(
        "/ingest?ack=enqueued", content=orjson.dumps(make_event(source, 1)), headers=STRUCTURED
    )
    by_header = await client.post(
        "/ingest",
        content=orjson.dumps(make_event(source, 2)),
        headers={**STRUCTURED, "prefer": "respond-async"},
    )
    assert by_query.status_code == 202
    assert by_query.json()["results"][0]["status"] == "accepted"
    assert by_header.status_code == 202
    for _ in range(100):  # committed shortly after, with no request waiting for them
        if len(await _rows(db, source)) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(await _rows(db, source)) == 2


async def test_empty_batch_is_200_with_no_results(client: httpx.AsyncClient) -> None:
    response = await client.post("/ingest", content=b"[]", headers=BATCH)
    assert response.status_code == 200
    assert response.json()["results"] == []
