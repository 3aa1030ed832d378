"""`SLUICE_DB_MAINTENANCE_IN_PROCESS=false` leaves upkeep to `python -m app maintain` (the
chart's CronJob): the service then starts no periodic maintenance of its own."""

from __future__ import annotations

import asyncio

import pytest

from app.main import pipeline
from tests.conftest import SettingsFactory


def _maintenance_tasks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "run_periodically"
    ]


@pytest.mark.parametrize("in_process", [True, False])
async def test_in_process_maintenance_runs_only_when_switched_on(
    make_settings: SettingsFactory, in_process: bool
) -> None:
    settings = make_settings(db={"maintenance_in_process": in_process})
    async with pipeline(settings):
        assert len(_maintenance_tasks()) == (1 if in_process else 0)
    assert _maintenance_tasks() == []
