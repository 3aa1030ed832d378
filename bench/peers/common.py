"""The peers' shared edges: the body they accept and the answer they give."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import HTTPException
from fastapi.responses import Response

Event = dict[str, Any]
REQUIRED = ("id", "source", "type", "specversion")


def parse_events(body: bytes) -> list[Event]:
    """A structured event or a batch of them; 400 when it is neither."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, "body is not JSON") from exc
    events = parsed if isinstance(parsed, list) else [parsed]
    for index, event in enumerate(events):
        if not isinstance(event, dict) or not all(
            isinstance(event.get(name), str) and event[name] for name in REQUIRED
        ):
            raise HTTPException(400, f"event {index}: {', '.join(REQUIRED)} must be strings")
    return events


def answer(keys: Sequence[tuple[str, str]], stored: Sequence[bool]) -> Response:
    """200 with counts and one result per event (`keys`: (source, id)), in request order."""
    results = [
        {
            "index": index,
            "status": "stored" if was_stored else "duplicate",
            "id": id_,
            "source": source,
        }
        for index, ((source, id_), was_stored) in enumerate(zip(keys, stored, strict=True))
    ]
    count = sum(stored)
    body = {"stored": count, "duplicate": len(keys) - count, "results": results}
    return Response(orjson.dumps(body), media_type="application/json")
