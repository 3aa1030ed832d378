"""The competent peer: the per-request bulk insert a team that knows PostgreSQL writes.

One `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING` per request on an
asyncpg pool (typed arrays, one round trip, one commit), and the answer, per event,
stored or duplicate, after that commit. One table: primary key (source, id) and a
(type, time) index. `gunicorn -k uvicorn_worker.UvicornWorker bench.peers.competent:app`
with `PEER_DATABASE_URL`; `create_schema(url)` first.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.peers.common import Event, answer, parse_events

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS peer_events (source text NOT NULL, id text NOT NULL,"
    " type text NOT NULL, specversion text NOT NULL, time timestamptz, subject text,"
    " datacontenttype text, data jsonb, received_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (source, id))",
    "CREATE INDEX IF NOT EXISTS peer_events_type_time ON peer_events (type, time)",
)
COLUMNS = ("source", "id", "type", "specversion", "time", "subject", "datacontenttype")
INSERT = """
INSERT INTO peer_events (source, id, type, specversion, time, subject, datacontenttype, data)
SELECT source, id, type, specversion, time::timestamptz, subject, datacontenttype, data::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[])
    AS e(source, id, type, specversion, time, subject, datacontenttype, data)
ON CONFLICT DO NOTHING
RETURNING source, id
"""


async def create_schema(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in SCHEMA:
            await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with asyncpg.create_pool(os.environ["PEER_DATABASE_URL"], max_size=10) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


def _columns(events: list[Event]) -> list[list[str | None]]:
    """One array per column; `data` re-encoded to text for the `jsonb` cast."""
    arrays: list[list[str | None]] = [[event.get(name) for event in events] for name in COLUMNS]
    arrays.append([orjson.dumps(e["data"]).decode() if "data" in e else None for e in events])
    return arrays


@app.post("/ingest")
async def ingest(request: Request) -> Response:
    events = parse_events(await request.body())
    pool: asyncpg.Pool = request.app.state.pool
    rows = await pool.fetch(INSERT, *_columns(events))
    inserted = {(row["source"], row["id"]) for row in rows}
    keys = [(event["source"], event["id"]) for event in events]
    # A key twice in one request is inserted once: its first occurrence was stored.
    stored = []
    for key in keys:
        stored.append(key in inserted)
        inserted.discard(key)
    return answer(keys, stored)


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}
