"""docs/api.md and docs/privacy.md say the same about payloads, and the code does it.

Both pages hold one table (between `payload-table` markers): each payload shape, what it
is kept as, and what the shipped policy does with it. Each row is sent here through the
real decoder, validation and the shipped policy (issue 11: the two pages once disagreed
on `data_base64`, and nothing noticed).
"""

from __future__ import annotations

import base64
import re

import orjson
import pytest

from app.config import PrivacySettings
from app.model.events import CloudEvent
from app.privacy.engine import PolicyAnonymizer
from app.sources.http import HttpDecoder, HttpRequest
from app.sources.validate import validate_candidate
from tests.support import PROJECT_ROOT
from tests.unit.test_http_decoding import LIMITS

_TABLE = re.compile(r"<!-- payload-table[^>]*-->\n(.*?)<!-- /payload-table -->", re.S)
_ATTRIBUTES = {"specversion": "1.0", "id": "p1", "source": "/docs", "type": "com.example.docs"}
_BINARY = {f"ce-{name}": value for name, value in _ATTRIBUTES.items()}
OCTETS = b"\x00\x01\xff opaque"

# Row (first cell) → the request that stands for it.
SAMPLES: dict[str, tuple[dict[str, str], bytes]] = {
    "structured `data`": (
        {"content-type": "application/cloudevents+json"},
        orjson.dumps({**_ATTRIBUTES, "data": {"order": 7}}),
    ),
    "structured `data_base64`": (
        {"content-type": "application/cloudevents+json"},
        orjson.dumps({**_ATTRIBUTES, "data_base64": base64.b64encode(OCTETS).decode()}),
    ),
    "binary mode, `application/json` or `*+json` body": (
        {**_BINARY, "content-type": "application/vnd.order+json"},
        b'{"order": 7}',
    ),
    "binary mode, no `Content-Type`, body that parses as JSON": (_BINARY, b'{"order": 7}'),
    "binary mode, no `Content-Type`, any other body": (_BINARY, b"order seven"),
    "binary mode, `text/*`, `application/xml`, `*+xml`, `application/yaml` (UTF-8, no NUL)": (
        {**_BINARY, "content-type": "application/xml"},
        b"<order id='7'/>",
    ),
    "binary mode, `text/*` that is not UTF-8 or holds a NUL": (
        {**_BINARY, "content-type": "text/plain"},
        b"caf\xe9",
    ),
    "binary mode, any other type (`application/octet-stream`, images)": (
        {**_BINARY, "content-type": "application/octet-stream"},
        OCTETS,
    ),
}


def _table(page: str) -> str:
    found = _TABLE.search((PROJECT_ROOT / "docs" / page).read_text())
    assert found is not None, f"docs/{page} has no payload table"
    return found[1]


def _rows() -> list[tuple[str, str, str]]:
    rows = []
    for line in _table("api.md").splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append((cells[0], cells[1], cells[2]))
    return rows


def test_both_pages_hold_the_same_table() -> None:
    assert _table("api.md") == _table("privacy.md")


def test_every_row_has_a_sample_and_every_sample_a_row() -> None:
    assert {row for row, _, _ in _rows()} == set(SAMPLES)


def _event(sample: str) -> CloudEvent:
    headers, body = SAMPLES[sample]
    [candidate] = HttpDecoder(LIMITS).decode(HttpRequest(headers, body))
    event = validate_candidate(candidate, LIMITS)
    assert isinstance(event, CloudEvent), event
    return event


def _kept_as(event: CloudEvent) -> str:
    if event.data_is_base64:
        return "opaque"
    return "text" if isinstance(event.data, str) else "JSON"


@pytest.mark.parametrize(("sample", "kept_as", "shipped"), _rows())
def test_each_row_is_what_the_code_does(sample: str, kept_as: str, shipped: str) -> None:
    event = _event(sample)
    assert _kept_as(event) == kept_as
    stored = PolicyAnonymizer.from_settings(PrivacySettings()).anonymize(event)
    assert (stored.data_json is not None) is (shipped == "stored"), (sample, shipped)
