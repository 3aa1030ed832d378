"""What the official CloudEvents SDK sends, end to end (issue 11).

Both bindings of the PyPI `cloudevents` package: `cloudevents.core` (the 2.x API) and
`cloudevents.v1` (the 1.x API it keeps). Each answer must say what happened to the
event's payload; a payload the policy drops is named in the answer *and* counted in
`sluice_payloads_dropped_total`: never dropped without both.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import asyncpg
import orjson
import pytest
from cloudevents.core.bindings import http as core_http
from cloudevents.core.v1.event import CloudEvent as CoreEvent

from tests.conftest import SettingsFactory, running_app
from tests.support import unique_source

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # v1's module-level helpers are deprecated aliases
    from cloudevents.v1.conversion import to_binary as v1_to_binary
    from cloudevents.v1.conversion import to_structured as v1_to_structured
    from cloudevents.v1.http import CloudEvent as V1Event

_DROPPED = re.compile(r"^sluice_payloads_dropped_total\{([^}]*)\} ([\d.]+)$", re.M)


def _core(source: str, event_id: str, data: Any, **attributes: str) -> CoreEvent:
    return CoreEvent(
        attributes={
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": "com.example.sdk",
            **attributes,
        },
        data=data,
    )


def _v1(source: str, event_id: str, data: Any, **attributes: str) -> V1Event:
    return V1Event(
        {"id": event_id, "source": source, "type": "com.example.sdk", **attributes}, data
    )


def _sent(headers: dict[str, str], body: bytes | str) -> tuple[dict[str, str], bytes]:
    return headers, body.encode() if isinstance(body, str) else body


def _cases(source: str) -> dict[str, tuple[tuple[dict[str, str], bytes], Any]]:
    """Name → (request, what `data` must be stored as; None = dropped)."""
    octets = b"\x00\x01\x02 opaque"
    core_binary = core_http.to_binary_event
    core_structured = core_http.to_structured_event
    cases: dict[str, tuple[tuple[dict[str, str], bytes], Any]] = {}

    def add(name: str, message: Any, stored: Any) -> None:
        headers, body = (message.headers, message.body) if hasattr(message, "body") else message
        cases[name] = (_sent(dict(headers), body), stored)

    add("core-binary-dict", core_binary(_core(source, "1", {"order": 7})), {"order": 7})
    add(
        "core-binary-octets",
        core_binary(_core(source, "2", octets, datacontenttype="application/octet-stream")),
        None,
    )
    add(
        "core-binary-xml",
        core_binary(_core(source, "3", b"<order id='7'/>", datacontenttype="application/xml")),
        "<order id='7'/>",
    )
    add("core-structured-dict", core_structured(_core(source, "4", {"order": 8})), {"order": 8})
    add(
        "core-structured-base64",
        core_structured(_core(source, "5", octets, datacontenttype="application/octet-stream")),
        None,
    )
    add("v1-binary-dict", v1_to_binary(_v1(source, "6", {"order": 9})), {"order": 9})
    add("v1-binary-bytes", v1_to_binary(_v1(source, "7", octets)), None)
    add("v1-structured-dict", v1_to_structured(_v1(source, "8", {"order": 10})), {"order": 10})
    add("v1-structured-bytes", v1_to_structured(_v1(source, "9", octets)), None)
    return cases


def _drops(metrics_text: str) -> float:
    """Drops of HTTP events counted so far, whatever the reason."""
    found = _DROPPED.findall(metrics_text)
    return sum(float(value) for labels, value in found if 'transport="http"' in labels)


async def test_every_sdk_shape_is_stored_and_every_drop_is_answered_and_counted(
    make_settings: SettingsFactory, db: asyncpg.Connection
) -> None:
    source = unique_source("sdk")
    cases = _cases(source)
    async with running_app(make_settings()) as client:
        before = _drops((await client.get("/metrics")).text)
        answers = {}
        for name, ((headers, body), _) in cases.items():
            response = await client.post("/ingest", headers=headers, content=body)
            assert response.status_code == 200, (name, response.text)
            [result] = response.json()["results"]
            answers[name] = result
        after = _drops((await client.get("/metrics")).text)

    rows = {
        row["id"]: row
        for row in await db.fetch(
            "SELECT id, data::text AS data, data_is_base64 FROM events WHERE source = $1", source
        )
    }
    expected_drops = 0
    for (name, (_, stored)), row_id in zip(cases.items(), map(str, range(1, 10)), strict=True):
        answer, row = answers[name], rows[row_id]
        assert answer["status"] == "stored", name
        if stored is None:
            expected_drops += 1
            assert row["data"] is None, name
            assert answer["data"] == "dropped", name
            assert answer["data_reason"] == "opaque", name
            assert answer["data_rule"] == "binary_data: drop (top level)", name
        else:
            assert orjson.loads(row["data"]) == stored, name
            assert "data" not in answer, name
    assert after - before == expected_drops == 4


async def test_a_drop_is_logged_once_per_type_at_warning(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = unique_source("sdk-log")
    message = core_http.to_binary_event(
        _core(source, "x", b"\xff\xfe", datacontenttype="application/octet-stream")
    )
    async with running_app(make_settings()) as client:
        with caplog.at_level("WARNING", logger="app.pipeline.steps"):
            for n in range(3):
                headers = {**message.headers, "ce-id": f"x{n}"}
                response = await client.post("/ingest", headers=headers, content=message.body)
                assert response.json()["results"][0]["data"] == "dropped"
    warned = [r for r in caplog.records if r.getMessage().startswith("event data dropped")]
    assert len(warned) <= 1  # rate-limited per type: another test may have warned first
    for record in warned:
        assert record.__dict__["rule"] == "binary_data: drop (top level)"
        assert "\xff" not in record.getMessage()
