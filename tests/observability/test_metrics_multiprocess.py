"""Acceptance 1 and 2 (metrics): two gunicorn workers, 1,000 events, a worker killed.

`/metrics` must show exactly what was received whichever worker served each request;
after a worker is killed and replaced the totals stay right, the dead worker's live
gauges are gone, and the multiprocess directory holds files for the live workers and the
archives only (no file per dead worker, none per request). `promtool check metrics`
passes on the real exposition.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.observability.agents import tool
from tests.support import make_event, served, unique_source

BUFFER_MAX_EVENTS = 20_000


def _send(base_url: str, source: str, start: int, requests: int = 20, size: int = 50) -> None:
    def post(n: int) -> None:
        body = [make_event(source, f"{start + n}-{i}") for i in range(size)]
        # A new connection per request: the kernel spreads them over both workers.
        with httpx.Client(base_url=base_url, timeout=30) as client:
            response = client.post("/ingest", json=body)
            assert response.status_code == 200, response.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, range(requests)))


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} missing"
    return float(match.group(1))


def _eventually(base_url: str, sample: str, expected: float) -> float:
    deadline = time.monotonic() + 30
    while True:
        value = _value(httpx.get(f"{base_url}/metrics").text, sample)
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def _workers(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def _wait_for_workers(master: int, count: int, old: set[int]) -> set[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _workers(master)
        if len(workers) == count and not workers & old:
            return workers
        time.sleep(0.2)
    raise TimeoutError("gunicorn did not replace the killed worker")


def test_sums_over_workers_survive_a_killed_worker(database_url: str) -> None:
    promtool = tool("promtool")
    source = unique_source("multiprocess")
    received = 'sluice_events_received_total{source="http"}'
    with tempfile.TemporaryDirectory() as directory:
        stale = Path(directory) / "counter_424242.db"
        stale.write_bytes(b"\0" * 16)  # a previous run's file: the master must drop it
        env = {"DATABASE_URL": database_url, "PROMETHEUS_MULTIPROC_DIR": directory}
        with served(env, "--workers", "2") as (base_url, master):
            _wait_for_workers(master.pid, 2, set())
            assert not stale.exists()
            _send(base_url, source, 0)
            first = httpx.get(f"{base_url}/metrics").text
            assert _value(first, received) == 1000
            checked = subprocess.run(  # noqa: S603 - the real promtool on the real output
                [promtool, "check", "metrics"],
                check=False,
                input=first,
                text=True,
                capture_output=True,
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr

            before = _workers(master.pid)
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            after = _wait_for_workers(master.pid, 2, {victim})
            # The replacement's start-up publishes its buffer capacity; the dead worker's is
            # gone (a third worker's worth would remain otherwise).
            capacity = _eventually(base_url, "sluice_buffer_capacity_events", 2 * BUFFER_MAX_EVENTS)
            assert capacity == 2 * BUFFER_MAX_EVENTS
            _send(base_url, source, 1000, requests=4, size=1)  # the new worker writes its files
            files = sorted(os.listdir(directory))
            assert not [f for f in files if f"_{victim}.db" in f], files

            metrics = httpx.get(f"{base_url}/metrics").text
            assert _value(metrics, received) == 1004  # the dead worker's counts still count

            _send(base_url, source, 2000)
            later = httpx.get(f"{base_url}/metrics").text
            assert _value(later, received) == 2004
            assert sorted(os.listdir(directory)) == files  # no growth per request
            matches = [re.search(r"_(\d+)\.db$", f) for f in files]
            pids = {int(m.group(1)) for m in matches if m}
            assert pids <= after | {master.pid}, (pids, after)
