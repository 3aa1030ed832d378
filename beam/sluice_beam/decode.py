"""Archived lines (or whole `.json` files) → `Candidate`s, with the service's decoding.

Each line is decoded as the HTTP source decodes an `application/json` body: an object is
one structured-mode event, an array a CloudEvents batch. A line that is not JSON becomes
a rejected candidate (`envelope.malformed_json`), quarantined under its location
(`event_id` = `path@offset`), so one bad line is found and fixed without stopping the
rest. Blank lines are skipped. Pure: the app's `sources.cloudevents` helpers do the work.
"""

from __future__ import annotations

from app.errors import RequestRejected
from app.model.events import Candidate, Transport
from app.sources.cloudevents import parse_json, rejected_candidate, structured


def decode(body: bytes, location: str) -> list[Candidate]:
    """The candidates one line (or one `.json` document) holds, in order."""
    text = body.strip()
    if not text:
        return []
    try:
        document = parse_json(text)
    except RequestRejected as rejected:
        return [rejected_candidate(rejected, {"id": location}, Transport.FILE)]
    items = document if isinstance(document, list) else [document]
    return [structured(item, text, Transport.FILE) for item in items]
