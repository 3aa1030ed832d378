"""Acceptance 4: every panel of both Grafana dashboards, evaluated on a real Prometheus.

A Prometheus server of the test's own (Debian's `prometheus`, its own data directory, a
free port) scrapes a served Sluice and a consumer process every second. The test sends
traffic that exercises every panel (stored, duplicate, rejected and quarantined events,
a lenient contract repair, an erased subject's suppressed event, a 4xx answer), waits for
two scrapes after it, and evaluates each panel's PromQL through the HTTP API with the
template variables substituted: each must parse and return data. The panels' series are
then drawn with matplotlib (`docs/images/dashboard-*.png` when
`SLUICE_UPDATE_DASHBOARD_PICTURES=1`), so docs/observability.md shows what an operator sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.broker_support import DEFAULT_AMQP_URL, scratch_vhost
from tests.observability.agents import tool
from tests.support import PROJECT_ROOT, free_port, make_event, served, unique_source

DASHBOARDS = PROJECT_ROOT / "charts" / "sluice" / "files" / "dashboards"
PICTURES = PROJECT_ROOT / "docs" / "images"
TOKEN = "dashboard-admin-token"
SUBSTITUTIONS = {"$__rate_interval": "15s", '"$job"': '"sluice|sluice-consumer"'}


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL with the template variables substituted) for every target."""
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in SUBSTITUTIONS.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


@contextlib.contextmanager
def prometheus(targets: dict[str, str]) -> Iterator[str]:
    binary = tool("prometheus")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "prometheus.yml"
        jobs = [
            {"job_name": job, "scrape_interval": "1s", "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ]
        config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}))
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(  # noqa: S603 - the real server, our configuration
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory}/data",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                _wait(lambda: httpx.get(f"{url}/-/ready").status_code == 200, 30)
                yield url
            finally:
                process.terminate()
                process.wait(timeout=30)


def _wait(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if predicate():
                return
        time.sleep(0.3)
    raise TimeoutError("condition not met in time")


def _query(url: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr})
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, (expr, body)
    assert body["status"] == "success", (expr, body)
    return body["data"]


def _traffic(base_url: str) -> None:
    source = unique_source("dashboards")
    admin = {"authorization": f"Bearer {TOKEN}"}
    erased = "erased.dashboard@example.net"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        erasure = client.post(
            "/admin/subjects:erase", json={"subjects": [erased], "requester": "dpo"}, headers=admin
        )
        assert erasure.status_code == 200, erasure.text
        good = {"order": 1, "amount": 2, "currency": "EUR", "lines": [{"sku": "SKU-1", "qty": 1}]}
        for round_ in range(5):
            batch = [make_event(source, f"{round_}-{i}", data=good) for i in range(20)]
            batch.append(make_event(source, "dup", data=good))  # a duplicate after round 0
            batch.append(make_event(source, f"bad-{round_}", specversion="0.3"))  # rejected
            batch.append(make_event(source, f"lenient-{round_}", data={**good, "extra": 1}))
            batch.append(make_event(source, f"x-{round_}", type="com.example.unknown"))
            batch.append(make_event(source, f"gone-{round_}", subject=erased))  # suppressed
            response = client.post("/ingest", json=batch)
            assert response.status_code == 207, response.text
            assert (
                client.post(
                    "/ingest", content=b"{", headers={"content-type": "application/json"}
                ).status_code
                == 400
            )
            client.get("/health/ready")
            time.sleep(1.0)


@pytest.fixture
def consumer_url() -> Iterator[str]:
    with scratch_vhost(os.environ.get("SLUICE_TEST_AMQP_URL", DEFAULT_AMQP_URL)) as url:
        yield url


def test_every_panel_returns_data_on_a_real_prometheus(
    database_url: str, consumer_url: str, tmp_path: Path
) -> None:
    contracts = tmp_path / "contracts"
    (contracts / "com.example.order.created").mkdir(parents=True)
    schema = PROJECT_ROOT / "bench" / "contracts" / "com.example.order.created" / "1.json"
    (contracts / "com.example.order.created" / "1.json").write_text(schema.read_text())
    (contracts / "contracts.yaml").write_text(
        "types:\n  com.example.order.created: {mode: lenient}\n"
    )
    env = {
        "DATABASE_URL": database_url,
        "SLUICE_ADMIN_TOKEN": TOKEN,
        "SLUICE_CONTRACTS_DIR": str(contracts),
        "SLUICE_CONTRACTS_UNKNOWN_TYPE": "quarantine",
        "SLUICE_QUALITY_FLUSH_INTERVAL_S": "1",
        "AMQP_URL": consumer_url,
    }
    with (
        served(env) as (web, _),
        served(env, command="consume") as (consumer, _),
        prometheus(
            {
                "sluice": web.removeprefix("http://"),
                "sluice-consumer": consumer.removeprefix("http://"),
            }
        ) as url,
    ):
        _wait(lambda: len(_query(url, "up == 1")["result"]) == 2, 60)  # both scraped
        started = time.time()
        _traffic(web)
        assert httpx.get(f"{consumer}/health/ready").status_code == 200  # as a kubelet would
        time.sleep(2.5)  # two scrapes after the last request
        results: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        for path in sorted(DASHBOARDS.glob("*.json")):
            dashboard = json.loads(path.read_text())
            for title, expr in panel_queries(dashboard):
                data = _query(url, expr)
                assert data["result"], f"{path.name}: {title!r} returned no data: {expr}"
                series = httpx.get(
                    f"{url}/api/v1/query_range",
                    params={"query": expr, "start": started, "end": time.time(), "step": 1},
                ).json()["data"]["result"]
                results.setdefault(path.stem, []).append((title, expr, series))
    assert set(results) == {"service", "data-quality"}
    for name, panels in results.items():
        picture = _draw(name, panels, tmp_path / f"dashboard-{name}.png")
        assert picture.stat().st_size > 10_000
        if os.environ.get("SLUICE_UPDATE_DASHBOARD_PICTURES") == "1":
            PICTURES.mkdir(exist_ok=True)
            (PICTURES / picture.name).write_bytes(picture.read_bytes())


def _draw(name: str, panels: list[tuple[str, str, list[dict[str, Any]]]], path: Path) -> Path:
    import matplotlib  # noqa: PLC0415 - only this test draws

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    titles = list(dict.fromkeys(title for title, _, _ in panels))
    columns = 2
    rows = (len(titles) + 1) // columns
    figure, axes = pyplot.subplots(rows, columns, figsize=(13, 2.6 * rows), squeeze=False)
    for index, title in enumerate(titles):
        ax = axes[index // columns][index % columns]
        ax.set_title(title, fontsize=9)
        for panel_title, _, series in panels:
            if panel_title != title:
                continue
            for serie in series:
                start = float(serie["values"][0][0])
                xs = [float(t) - start for t, _ in serie["values"]]
                ys = [float(v) for _, v in serie["values"]]
                label = serie["metric"].get("__name__", "") + ",".join(
                    f"{v}" for k, v in serie["metric"].items() if k not in {"job", "instance"}
                )
                ax.plot(xs, ys, label=label[:40] or "value")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    for index in range(len(titles), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.suptitle(f"Sluice — {name} (seconds since the test's traffic began)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    pyplot.close(figure)
    return path
