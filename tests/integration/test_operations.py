"""Health, metrics and the CI rule that an unreachable database fails rather than skips."""

from __future__ import annotations

import httpx
import orjson

from tests.support import free_port, make_event, run_pytest_under_ci, unique_source


async def test_health_reports_components(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    ready = await client.get("/health/ready")
    health = await client.get("/health")
    assert (live.status_code, ready.status_code, health.status_code) == (200, 200, 200)
    database = health.json()["components"]["database"]
    assert database["ok"] is True
    assert database["revision"] == database["expected_revision"]
    assert health.json()["components"]["batcher"]["alive"] is True


async def test_metrics_count_events_by_source_and_outcome(client: httpx.AsyncClient) -> None:
    def value(text: str, prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    before = (await client.get("/metrics")).text
    source = unique_source()
    events = [make_event(source, 1), make_event(source, 1), make_event(source, 2, specversion="2")]
    response = await client.post(
        "/ingest", content=orjson.dumps(events), headers={"content-type": "application/json"}
    )
    assert response.status_code == 207
    after = await client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for prefix, delta in [
        ('sluice_events_received_total{source="http"}', 3),
        ('sluice_events_stored_total{source="http"}', 1),
        ('sluice_events_duplicate_total{source="http"}', 1),
        ('sluice_events_rejected_total{code="envelope.bad_specversion",source="http"}', 1),
    ]:
        assert value(text, prefix) - value(before, prefix) == delta, prefix
    for name in (
        "sluice_batch_size_events_bucket",
        "sluice_flush_duration_seconds_bucket",
        "sluice_buffer_events",
    ):
        assert name in text
    assert source not in text  # labels never carry request data


def test_unreachable_database_fails_under_ci_instead_of_skipping() -> None:
    """Runs one database-backed test in a child pytest pointed at a closed port."""
    result = run_pytest_under_ci(
        "tests/integration/test_operations.py::test_health_reports_components",
        {
            "SLUICE_TEST_ADMIN_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
        },
    )
    assert result.returncode != 0
    assert "skipped" not in result.stdout
    assert "unreachable" in result.stdout
