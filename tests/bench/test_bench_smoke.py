"""The benchmark works at all: the peers answer and store, and one tiny `python -m bench`
run prints a verdict on every row of issue 18's table (real PostgreSQL, real processes;
about 45 s). The figures of so short a run mean nothing; that they exist does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import orjson
import pytest

from bench import database, wrk
from bench.events import batch_body
from bench.load import CONTENT_TYPE
from bench.peers import competent, naive
from bench.server import running_peer
from tests.support import PROJECT_ROOT

ISSUE_ROWS = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "✓"}
VERDICTS = {"PASS", "FAIL", "SKIP", "INFO"}


@pytest.mark.parametrize("peer", [competent, naive], ids=["competent", "naive"])
def test_a_peer_answers_per_event_and_stores_once(admin_url: str, peer: ModuleType) -> None:
    name = peer.__name__.rsplit(".", 1)[1]
    with database.scratch_database(admin_url, migrate=False, label=name) as url:
        database.run(peer.create_schema(url))
        with running_peer(name, url, workers=1) as service:

            def post(first: int, count: int) -> dict[str, object]:
                response = httpx.post(
                    f"{service.base_url}/ingest",
                    content=batch_body("/bench/smoke", first, count),
                    headers={"content-type": CONTENT_TYPE},
                )
                assert response.status_code == 200, response.text
                answer: dict[str, object] = orjson.loads(response.content)
                return answer

            first, again = post(0, 3), post(2, 2)  # event 2 is sent twice
        stored = database.count_events(url, table="peer_events", source_prefix="/bench/")
    assert (first["stored"], first["duplicate"]) == (3, 0)
    assert (again["stored"], again["duplicate"]) == (1, 1)
    assert again["results"] == [
        {"index": 0, "status": "duplicate", "id": "2", "source": "/bench/smoke"},
        {"index": 1, "status": "stored", "id": "3", "source": "/bench/smoke"},
    ]
    assert stored == 4


@pytest.mark.skipif(not wrk.available(), reason="wrk is not installed (make bench installs it)")
def test_a_tiny_run_prints_a_verdict_on_every_row(tmp_path: Path) -> None:
    tiny = [
        *("--sections", "copy,sluice,single,burst,latency,overload,peers"),
        *("--duration", "1.5", "--warmup", "0.5", "--naive-duration", "1"),
        *("--single-duration", "1", "--burst-duration", "1", "--latency-duration", "1"),
        *("--overload-duration", "1", "--overload-connections", "100"),
        *("--copy-rows", "5000", "--tracing-duration", "0", "--results", str(tmp_path)),
    ]
    result = subprocess.run(  # noqa: S603 - our own interpreter running our own bench
        [sys.executable, "-m", "bench", *tiny],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: some target missed
    document = orjson.loads((tmp_path / "latest.json").read_bytes())
    rows = document["rows"]
    assert {row["number"] for row in rows} >= ISSUE_ROWS
    assert {row["verdict"] for row in rows} <= VERDICTS
    measured = {row["number"] for row in rows if row["verdict"] in {"PASS", "FAIL"}}
    # Everything this run asked for got a verdict: not the consumer, not the sweep.
    assert measured >= {"1", "2", "4", "6", "7", "8", "✓"}, rows
    verified = next(row for row in rows if row["number"] == "✓")
    assert verified["verdict"] == "PASS", verified
    for row in rows:
        assert f"| {row['number']} | {row['figure']} |" in result.stdout
