"""The benchmark's events: one shape for the HTTP load and for the COPY ceiling's rows.

Each event is a small order event with a subject (so the service pseudonymizes it) and a
JSON `data` object, about 300 bytes on the wire. `(source, id)` is unique per run: every
client owns a source and numbers its events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson

EVENT_TYPE = "com.example.order.created"
# Now, when the bench starts: within the quality checks' age window whenever it runs.
EVENT_TIME = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
SUBJECTS = 5_000  # distinct customers: subjects repeat, as they do in real traffic

# Everything but `id`, `subject` and `data`, serialized once: bodies are built by
# splicing numbers into bytes, so the client spends its CPU on HTTP, not on JSON.
_FIXED = orjson.dumps({"specversion": "1.0", "type": EVENT_TYPE, "time": EVENT_TIME})[1:-1]
_DATACONTENTTYPE = b'"datacontenttype":"application/json"'


def client_source(run_tag: str, process: int, client: int) -> str:
    return f"/bench/{run_tag}/p{process}c{client}"


def batch_body(source: str, first_id: int, count: int) -> bytes:
    """A `application/cloudevents-batch+json` body: events `first_id` .. `first_id+count-1`."""
    head = b'{"source":' + orjson.dumps(source) + b"," + _FIXED + b"," + _DATACONTENTTYPE
    events = [
        head
        + b',"id":"%d","subject":"customer-%d","data":{"order":%d,"amount":%d,"currency":"EUR",'
        b'"lines":[{"sku":"SKU-%d","qty":%d}]}}' % (n, n % SUBJECTS, n, n % 997, n % 211, 1 + n % 5)
        for n in range(first_id, first_id + count)
    ]
    return b"[" + b",".join(events) + b"]"


COPY_COLUMNS = (
    "source",
    "id",
    "type",
    "specversion",
    "time",
    "subject_pseudonym",
    "pseudonym_key_id",
    "datacontenttype",
    "dataschema",
    "data",
    "data_is_base64",
    "extensions",
    "received_at",
)

CopyRecord = tuple[str, str, str, str, datetime, str, str, str, None, str, bool, str, datetime]


def copy_records(source: str, count: int) -> Iterator[CopyRecord]:
    """Rows as the service would store the same events (pseudonym: a 64-hex digest)."""
    time = datetime.fromisoformat(EVENT_TIME)
    received_at = datetime.now(UTC)
    pseudonyms = [hashlib.sha256(f"customer-{n}".encode()).hexdigest() for n in range(SUBJECTS)]
    for n in range(count):
        data = orjson.dumps(
            {
                "order": n,
                "amount": n % 997,
                "currency": "EUR",
                "lines": [{"sku": f"SKU-{n % 211}", "qty": 1 + n % 5}],
            }
        ).decode()
        yield (
            source,
            str(n),
            EVENT_TYPE,
            "1.0",
            time,
            pseudonyms[n % SUBJECTS],
            "k1",
            "application/json",
            None,
            data,
            False,
            "{}",
            received_at,
        )
