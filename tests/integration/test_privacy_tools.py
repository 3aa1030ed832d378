"""The privacy tools end to end: a deliberately weak policy lets personal data through to
a real database; the residual scan (command and admin endpoint) finds it, by path and
tag, with the values masked; the preview of the same events shows where the policy lets
it through; the metric says so; `serve` refuses a denylist policy when asked to.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from app import cli
from app.storage import migrations
from tests.conftest import SettingsFactory, running_app
from tests.support import make_event

TOKEN = "privacy-tools-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
ADDRESS = "1600 Pennsylvania Avenue NW, Washington, DC 20500"
EMAIL = "planted.scan@example.com"
PHONE = "+44 20 7946 0958"
PLANTED = (ADDRESS, "Pennsylvania", EMAIL, PHONE, "7946")
WEAK = "version: 1\nmode: denylist\nunnamed_text: keep\n"


def _events(source: str) -> list[dict[str, object]]:
    stored = make_event(
        source,
        "weak-1",
        deliverynote=f"call {PHONE}",  # an extension attribute
        data={"note": f"ship to {ADDRESS}", "contact": f"mail {EMAIL}", "amount": 3},
    )
    refused = {
        k: v
        for k, v in make_event(source, "x", data={"note": f"ship to {ADDRESS}"}).items()
        if k != "id"
    }
    return [stored, refused]


@pytest.fixture
async def weak_database(fresh_database: str) -> str:
    await asyncio.to_thread(migrations.upgrade, fresh_database)
    return fresh_database


async def test_scan_and_preview_find_what_a_weak_policy_let_through(
    weak_database: str,
    make_settings: SettingsFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weak = tmp_path / "weak.yaml"
    weak.write_text(WEAK)
    events = _events("/privacy/tools")
    settings = make_settings(url=weak_database, privacy={"policy_file": weak}, admin_token=TOKEN)
    async with running_app(settings) as client:
        answer = await client.post("/ingest", json=events)
        assert answer.status_code == 207, answer.text
        assert (await client.get("/admin/privacy/scan")).status_code == 401
        found = await client.get("/admin/privacy/scan", params={"sample": 50}, headers=ADMIN)
        assert found.status_code == 200, found.text
        metrics = (await client.get("/metrics")).text
    body = found.json()
    by_place = {(f["table"], f["path"]): f for f in body["findings"]}
    assert by_place["events", "data.note"]["tags"] == {"ADDRESS": 1}
    assert by_place["events", "data.contact"]["tags"] == {"EMAIL": 1}
    assert by_place["events", "extensions.deliverynote"]["tags"] == {"PHONE": 1}
    assert by_place["quarantine", "data.note"]["tags"] == {"ADDRESS": 1}
    assert by_place["events", "data.note"]["example"].startswith("xxxx xx 9999 Xxxxx")
    assert 'sluice_residual_pii_findings{table="events",tag="ADDRESS"} 1.0' in metrics
    assert 'sluice_residual_pii_findings{table="quarantine",tag="ADDRESS"} 1.0' in metrics
    assert 'sluice_residual_pii_findings{table="events",tag="CARD"} 0.0' in metrics

    # The same scan from the command line, as a scheduled job runs it: exit 1 on findings.
    monkeypatch.setenv("DATABASE_URL", weak_database)
    code = await asyncio.to_thread(cli.main, ["privacy", "scan", "--since", "1h"])
    out = capsys.readouterr().out
    assert code == 1
    report = orjson.loads(out)
    assert report["flagged"] == 4  # address, e-mail, phone; the quarantined address
    assert report["rows"] >= 2
    nothing = await asyncio.to_thread(
        cli.main, ["privacy", "scan", "--since", "2999-01-01T00:00:00Z"]
    )
    assert nothing == 0
    assert orjson.loads(capsys.readouterr().out)["flagged"] == 0

    # The preview of the same events under the weak policy and under the shipped one.
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(b"\n".join(orjson.dumps(event) for event in events))
    assert (
        await asyncio.to_thread(
            cli.main, ["privacy", "preview", str(sample), "--policy", str(weak)]
        )
        == 0
    )
    weak_preview = capsys.readouterr().out
    assert weak_preview.splitlines()[0].endswith(
        "4 values flagged by a detector would be stored unchanged"
    )
    flagged_rows = [line for line in weak_preview.splitlines() if line.startswith("!")]
    assert [row.split()[1] for row in flagged_rows][:1] == ["note"]
    assert await asyncio.to_thread(cli.main, ["privacy", "preview", str(sample)]) == 0
    shipped_preview = capsys.readouterr().out
    assert "0 values flagged" in shipped_preview.splitlines()[0]
    for text in (body, out, weak_preview, shipped_preview):
        for value in PLANTED:
            assert value not in str(text)


def test_serve_refuses_a_denylist_policy_when_an_allowlist_is_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_PRIVACY_REQUIRE_ALLOWLIST", "true")
    assert cli.main(["serve"]) == 2
    error = capsys.readouterr().err
    assert "SLUICE_PRIVACY_REQUIRE_ALLOWLIST=true" in error
    assert "denylist mode (top level)" in error
    assert "python -m app privacy preview" in error


async def test_the_app_does_not_start_on_a_denylist_policy_when_an_allowlist_is_required(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(privacy={"require_allowlist": True})
    with pytest.raises(Exception, match="REQUIRE_ALLOWLIST"):
        async with running_app(settings):
            pass
