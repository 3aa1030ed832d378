"""Acceptance 4: every kind of bad input gets its documented 4xx with a code, never a 500,
and nothing already accepted is lost because of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest

from tests.support import make_event, unique_source

PROBLEM = "application/problem+json"


def _problem(response: httpx.Response, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["status"], body["code"], body["field"]) == (status, code, field)
    assert body["detail"]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/ingest", content=b'{"specversion": "1.0", ', headers={"content-type": "application/json"}
    )
    _problem(response, 400, "request.malformed_json", "body")


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/ingest", content=b"id=1", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    _problem(response, 415, "request.unsupported_media_type", "content-type")


async def test_no_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/ingest", content=b"{}")
    _problem(response, 415, "request.unsupported_media_type", "content-type")


async def test_missing_id_is_422_with_field(client: httpx.AsyncClient) -> None:
    event = make_event(unique_source(), "x")
    del event["id"]
    response = await client.post(
        "/ingest",
        content=orjson.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 422
    result = response.json()["results"][0]
    assert (result["status"], result["code"], result["field"]) == (
        "rejected",
        "envelope.missing_attribute",
        "id",
    )


async def test_two_mib_body_is_413(client: httpx.AsyncClient) -> None:
    body = b"[" + b" " * (2 * 1024 * 1024) + b"]"
    response = await client.post(
        "/ingest", content=body, headers={"content-type": "application/json"}
    )
    _problem(response, 413, "request.body_too_large", "body")


async def test_oversized_chunked_body_is_cut_off_while_reading(client: httpx.AsyncClient) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"["
        while sent < 64 * 1024 * 1024:
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    response = await client.post(
        "/ingest", content=endless(), headers={"content-type": "application/json"}
    )
    _problem(response, 413, "request.body_too_large", "body")
    assert sent < 4 * 1024 * 1024  # refused long before the stream ended


async def test_too_many_events_is_413(client: httpx.AsyncClient) -> None:
    source = unique_source()
    events = [
        {"specversion": "1.0", "id": str(i), "source": source, "type": "t"} for i in range(1001)
    ]
    response = await client.post(
        "/ingest", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    _problem(response, 413, "request.too_many_events", "body")


async def test_nul_in_a_string_is_rejected(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    source = unique_source()
    bad = make_event(source, "nul", data={"note": "a\x00b"})
    good = make_event(source, "fine")
    response = await client.post(
        "/ingest", content=orjson.dumps([bad, good]), headers={"content-type": "application/json"}
    )
    assert response.status_code == 207
    results = response.json()["results"]
    assert (results[0]["code"], results[0]["field"]) == ("envelope.nul_character", "data.note")
    assert results[1]["status"] == "stored"
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 1


async def test_non_string_source_is_rejected(client: httpx.AsyncClient) -> None:
    event = make_event("ignored", "n")
    event["source"] = 42
    response = await client.post(
        "/ingest",
        content=orjson.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 422
    result = response.json()["results"][0]
    assert (result["code"], result["field"]) == ("envelope.invalid_attribute", "source")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"42", "application/json", 422, "request.not_an_event"),
        (b"[]", "application/cloudevents+json", 422, "request.not_an_event"),
        (b"{}", "application/cloudevents-batch+json", 422, "request.not_an_event"),
        (b"\xff\xfe", "application/json", 400, "request.malformed_json"),
        (b'{"a": NaN}', "application/json", 400, "request.malformed_json"),
    ],
)
async def test_unusable_documents(
    client: httpx.AsyncClient, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = await client.post("/ingest", content=body, headers={"content-type": content_type})
    _problem(response, status, code, "body")


async def test_bad_query_parameter_and_unknown_route_are_problems(
    client: httpx.AsyncClient,
) -> None:
    bad_ack = await client.post(
        "/ingest?ack=sometimes", content=b"[]", headers={"content-type": "application/json"}
    )
    missing = await client.get("/nowhere")
    wrong_method = await client.get("/ingest")
    _problem(bad_ack, 422, "request.invalid_parameter", "ack")
    _problem(missing, 404, "request.not_found", None)
    _problem(wrong_method, 405, "request.method_not_allowed", None)


async def test_time_that_overflows_utc_is_rejected_not_500(client: httpx.AsyncClient) -> None:
    event = make_event(unique_source(), "t", time="0001-01-01T00:00:00+05:00")
    response = await client.post(
        "/ingest",
        content=orjson.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 422
    assert response.json()["results"][0]["field"] == "time"


async def test_rejections_do_not_lose_accepted_events_of_other_requests(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    source = unique_source()
    ok = await client.post(
        "/ingest",
        content=orjson.dumps(make_event(source, 1)),
        headers={"content-type": "application/json"},
    )
    bad = await client.post("/ingest", content=b"{", headers={"content-type": "application/json"})
    assert (ok.status_code, bad.status_code) == (200, 400)
    assert await db.fetchval("SELECT count(*) FROM events WHERE source = $1", source) == 1


@pytest.mark.parametrize("depth", [260, 1000])
async def test_data_nested_too_deep_is_rejected_not_500(
    client: httpx.AsyncClient, depth: int
) -> None:
    deep = "[" * depth + "]" * depth
    event = (
        orjson.dumps(make_event(unique_source(), "deep", data=None))[:-1]
        + b',"data":'
        + deep.encode()
        + b"}"
    )
    structured = await client.post(
        "/ingest", content=event, headers={"content-type": "application/cloudevents+json"}
    )
    binary = await client.post(
        "/ingest",
        content=deep.encode(),
        headers={
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "deep",
            "ce-source": unique_source(),
            "ce-type": "t",
        },
    )
    for response in (structured, binary):
        assert response.status_code == 422, response.text
        assert response.json()["results"][0]["field"] == "data"
