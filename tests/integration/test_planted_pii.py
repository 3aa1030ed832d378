"""Acceptance: no raw personal data reaches disk, logs, metrics or exported spans.

Events carrying known personal data in every place an event can carry it (subject,
extension attributes, nested `data`, arrays, free text with e-mail addresses, phone
numbers, cards, IBANs and postal addresses in five countries' formats, binary mode, malformed events
that end in quarantine, the admin endpoints' own inputs) go through a real service
process. Then a `pg_dump` of its whole database, everything the process logged, its
`/metrics` and every span it exported over OTLP (into a real receiver) are searched for
every planted value: there must be no hit. Once with the shipped policy (denylist), once
with the same rules in allowlist mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pgserver
import pytest

from app.config import DEFAULT_POLICY_FILE
from app.storage import migrations
from tests.observability.agents import trace_agent
from tests.support import make_event, read_log, served

TOKEN = "planted-pii-admin-token"
SUBJECT = "zebulon.subject.planted@example.com"
ERASED = "erased.planted@example.net"
PLANTED = [
    SUBJECT,
    ERASED,
    "alice.planted@example.com",
    "bob.planted@example.org",
    "carol.planted@example.io",
    "dave.planted@example.co.uk",
    "+44 20 7946 0958",
    "+1 (555) 867-5309",
    "555-867-5309",
    "203.0.113.77",
    "198.51.100.23",
    "2001:db8:85a3::8a2e:370:7334",
    "4111 1111 1111 1111",
    "4111111111111111",
    "5500-0000-0000-0004",
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "Zebulon Plantedname",
    "Quintessa Plantedname",
    "hunter2-planted-password",
    "tok_planted_5f1e2d",
    "1987-03-14",
    # Postal addresses in free text (data, an extension attribute, quarantine rows).
    "1600 Pennsylvania Avenue",
    "Pennsylvania Avenue NW",
    "221B Baker Street",
    "Baker Street",
    "NW1 6XE",
    "SW1A 2AA",
    "D02 X285",
    "Hauptstraße 5",
    "Berliner Straße 12a",
    "12 rue de la Paix",
    "rue de la Paix",
]
ADDRESSES = (
    "Ship to 1600 Pennsylvania Avenue NW, Washington, DC 20500, or to 221B Baker Street, "
    "London NW1 6XE; returns: 10 Downing Street, London SW1A 2AA; Dublin office D02 X285; "
    "Lager Hauptstraße 5, 10115 Berlin or Berliner Straße 12a; Paris: 12 rue de la Paix."
)


def _policy(tmp_path: Path, mode: str) -> Path:
    text = DEFAULT_POLICY_FILE.read_text()
    path = tmp_path / f"policy-{mode}.yaml"
    path.write_text(text.replace("mode: denylist", f"mode: {mode}", 1))
    assert f"mode: {mode}" in path.read_text()
    return path


def _events(source: str) -> list[dict[str, object]]:
    free_text = (
        "Please contact bob.planted@example.org or call +1 (555) 867-5309 / 555-867-5309; "
        "logged in from 198.51.100.23 and 2001:db8:85a3::8a2e:370:7334, paid with "
        "4111111111111111, refund to GB82 WEST 1234 5698 7654 32. "
    ) + ADDRESSES
    return [
        make_event(
            source,
            "full",
            subject=SUBJECT,
            email="carol.planted@example.io",  # an extension attribute
            deliverynote=ADDRESSES,  # free text in an extension attribute
            data={
                "user": {
                    "email": "alice.planted@example.com",
                    "name": "Zebulon Plantedname",
                    "phone": "+44 20 7946 0958",
                    "birth_date": "1987-03-14",
                    "password": "hunter2-planted-password",
                },
                "customer": {"full_name": "Quintessa Plantedname", "ip": "203.0.113.77"},
                "items": [
                    {"sku": "A-1", "card": "4111 1111 1111 1111"},
                    {
                        "sku": "B-2",
                        "card": "5500-0000-0000-0004",
                        "email": "dave.planted@example.co.uk",
                    },
                ],
                "note": free_text,
                "comments": [free_text],
                "access_token": "tok_planted_5f1e2d",
                "amount": 42,
            },
        ),
        # Malformed: no id, so it is quarantined, with personal data everywhere.
        {
            k: v
            for k, v in make_event(
                source,
                "x",
                subject=SUBJECT,
                data={"email": "alice.planted@example.com", "note": free_text},
            ).items()
            if k != "id"
        },
        # Malformed in another way: a bad specversion, personal data in an extension.
        make_event(
            source,
            "bad",
            specversion="0.3",
            email="carol.planted@example.io",
            deliverynote=ADDRESSES,
        ),
        make_event(
            source, "to-erase", subject=ERASED, data={"note": "mail bob.planted@example.org"}
        ),
    ]


def _pg_dump(url: str) -> str:
    """pgserver's pg_dump: new enough for this machine's server and the embedded one."""
    binary = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    result = subprocess.run(  # noqa: S603 - a fixed binary on our own database
        [str(binary), "--no-owner", "--dbname", url], capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.fixture
async def planted_database(fresh_database: str) -> str:
    await asyncio.to_thread(migrations.upgrade, fresh_database)
    return fresh_database


@pytest.mark.parametrize("mode", ["denylist", "allowlist"])
def test_no_planted_value_reaches_disk_logs_metrics_or_spans(
    planted_database: str, tmp_path: Path, mode: str
) -> None:
    with contextlib.ExitStack() as stack:
        _run_planted(stack, planted_database, tmp_path, mode)


def _run_planted(
    stack: contextlib.ExitStack, planted_database: str, tmp_path: Path, mode: str
) -> None:
    env = {
        "DATABASE_URL": planted_database,
        "SLUICE_ADMIN_TOKEN": TOKEN,
        "SLUICE_PRIVACY_POLICY_FILE": str(_policy(tmp_path, mode)),
        "SLUICE_LOG_LEVEL": "DEBUG",
    }
    source = "/planted/pii"
    admin = {"authorization": f"Bearer {TOKEN}"}
    agent = stack.enter_context(trace_agent())  # every span goes out over OTLP too
    env.update(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=agent.otlp_url,
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_TRACES_SAMPLER="parentbased_always_on",  # not the default 1 %: every span
    )
    with (
        tempfile.TemporaryFile() as log,
        served(env, log=log) as (base_url, _),
        httpx.Client(base_url=base_url) as client,
    ):
        batch = client.post(
            "/ingest",
            content=orjson.dumps(_events(source)),
            headers={"content-type": "application/json"},
        )
        assert batch.status_code == 207, batch.text
        binary = client.post(
            "/ingest",
            content=orjson.dumps(
                {"email": "alice.planted@example.com", "text": "call 555-867-5309"}
            ),
            headers={
                "content-type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": "binary",
                "ce-source": source,
                "ce-type": "com.example.binary",
                "ce-subject": quote(SUBJECT),
                "ce-email": "carol.planted@example.io",
            },
        )
        assert binary.status_code == 200, binary.text
        erased = client.post(
            "/admin/subjects:erase", json={"subjects": [ERASED], "requester": "dpo"}, headers=admin
        )
        assert erased.json()["events_deleted"] == 1
        access = client.get(f"/admin/subjects/{quote(SUBJECT, safe='')}/events", headers=admin)
        assert access.status_code == 200
        assert len(access.json()["events"]) == 2
        unknown = client.get(f"/nowhere/{quote(SUBJECT, safe='')}")  # a path that matches nothing
        assert unknown.status_code == 404
        metrics = client.get("/metrics").text
        logs = read_log(log)
    spans = agent.otlp_spans()  # the process has exited: its exporter flushed everything
    exported = orjson.dumps([span["raw"] for span in spans]).decode()
    dump = _pg_dump(planted_database)

    assert "quarantine" in dump
    assert "request" in logs  # the access log ran, so the search below means something
    assert {"POST /ingest", "sluice.flush"} <= {span["name"] for span in spans}
    searched = (("database", dump), ("logs", logs), ("metrics", metrics), ("spans", exported))
    for value in PLANTED:
        for name, text in searched:
            assert value not in text, f"{value!r} found in {name} ({mode})"
