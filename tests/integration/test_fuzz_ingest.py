"""No input makes /ingest answer 5xx: property-based bodies and headers against the real app.

Hypothesis generates JSON documents that look more or less like CloudEvents (right and
wrong types, nesting, odd strings, NULs, huge integers), raw bytes, and header sets; every
answer must be 2xx or 4xx, carry a machine-readable code when it is an error, and every
event the service reports as stored must be in PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SettingsFactory, running_app
from tests.support import unique_source

SOURCE = unique_source("fuzz")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
attribute_values = st.one_of(st.text(max_size=30), json_values)
events = st.fixed_dictionaries(
    {},
    optional={
        "specversion": st.sampled_from(["1.0", "0.3", ""]) | attribute_values,
        "id": st.text(max_size=12) | attribute_values,
        "source": st.just(SOURCE) | attribute_values,
        "type": st.text(max_size=12) | attribute_values,
        "time": st.sampled_from(
            ["2026-11-25T10:00:00Z", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+01:00"]
        )
        | attribute_values,
        "subject": attribute_values,
        "data": json_values,
        "data_base64": attribute_values,
        "dataschema": attribute_values,
        "Ext-Name": attribute_values,
        "ext": attribute_values,
    },
)
bodies = st.one_of(
    events.map(orjson.dumps),
    st.lists(events, max_size=5).map(orjson.dumps),
    json_values.map(orjson.dumps),
    st.binary(max_size=64),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "text/plain",
        "application/octet-stream",
        "",
    ]
)
binary_headers = st.dictionaries(
    st.sampled_from(
        ["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-subject", "ce-x"]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    max_size=5,
)


async def test_no_input_yields_a_server_error(
    make_settings: SettingsFactory, db: asyncpg.Connection
) -> None:
    stored_ids: set[str] = set()
    async with running_app(make_settings(batch={"max_delay_ms": 1})) as client:

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(body=bodies, content_type=content_types, headers=binary_headers)
        async def probe(body: bytes, content_type: str, headers: dict[str, str]) -> None:
            all_headers = {**headers, "content-type": content_type} if content_type else headers
            response = await client.post("/ingest", content=body, headers=all_headers)
            assert response.status_code < 500, (response.status_code, response.text)
            answer: dict[str, Any] = response.json()
            if response.status_code >= 400 and "code" in answer:
                assert answer["code"]
            for result in answer.get("results", []):
                if result["status"] == "stored" and result["source"] == SOURCE:
                    stored_ids.add(result["id"])

        await _run_async_property(probe)

    rows = await db.fetch("SELECT id FROM events WHERE source = $1", SOURCE)
    assert {row["id"] for row in rows} == stored_ids


async def _run_async_property(test: Any) -> None:
    """Hypothesis calls tests synchronously; run each example on the current event loop."""
    loop = asyncio.get_running_loop()
    inner = test.hypothesis.inner_test

    def run_sync(**kwargs: Any) -> None:
        future = asyncio.run_coroutine_threadsafe(inner(**kwargs), loop)
        future.result(timeout=60)

    test.hypothesis.inner_test = run_sync
    await asyncio.to_thread(test)
