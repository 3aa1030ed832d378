"""`python -m app smoke`: the four steps against the real app (in-process, real PostgreSQL),
and the failures a deploy must see as failures."""

from __future__ import annotations

import pytest

from app.cli import main
from app.smoke import SmokeFailure, run_smoke
from tests.conftest import SettingsFactory, running_app
from tests.support import free_port


async def test_a_healthy_service_passes_every_step(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings()) as client:
        report = await run_smoke(client, ready_timeout_s=10)
        again = await run_smoke(client, ready_timeout_s=10)
    assert report.steps == ["ready", "stored", "metrics", "duplicate"]
    assert report.stored_after >= report.stored_before + 1
    assert again.event_id != report.event_id  # a unique id each run: never a duplicate first


async def test_a_service_that_refuses_the_event_fails_at_stored(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(contracts={"unknown_type": "reject"})
    async with running_app(settings) as client:
        with pytest.raises(SmokeFailure) as failure:
            await run_smoke(client, ready_timeout_s=10)
    assert failure.value.step == "stored"
    assert "422" in failure.value.detail
    assert "contract.unknown_type" in failure.value.detail


def test_nothing_listening_fails_at_ready_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["smoke", url, "--ready-timeout", "1"]) == 1
    assert "smoke check failed at ready" in capsys.readouterr().err
