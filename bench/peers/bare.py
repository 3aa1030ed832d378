"""The bare endpoint: FastAPI parsing the same body with orjson and writing nothing.

The floor under any HTTP ingest on this stack (2 uvicorn workers under gunicorn): what a
request costs before validation, anonymization or a database. It answers as if every
event had been stored, so the load generator counts it like the others.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.peers.common import answer, parse_events

app = FastAPI()


@app.post("/ingest")
async def ingest(request: Request) -> Response:
    events = parse_events(await request.body())
    return answer([(event["source"], event["id"]) for event in events], [True] * len(events))


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}
