"""The container image, built from the repo's Dockerfile and run for real with podman.

No Docker engine and no registry exist here: `deploy/podman-base.sh` tags a stand-in made
from Debian's packages with the Dockerfile's base name (once; podman keeps it outside the
clone), so the Dockerfile builds unchanged with `--pull=never`. The container then runs
against this machine's PostgreSQL (host network) in a database of the test's own, with a
read-only root filesystem and only the metrics directory and /tmp writable, as the chart
runs it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.support import PROJECT_ROOT, free_port, make_event
from tests.tooling import require_tool

IMAGE = "localhost/sluice:ci"
METRICS_DIR = "/var/lib/sluice/metrics"


async def _run(*argv: str, timeout_s: float = 600) -> tuple[int, str]:
    """Run a command; its exit status and its output (stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def _base_image() -> str:
    """The Dockerfile's FROM, from its ARG defaults: what the stand-in must be tagged."""
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    return f"{args['PYTHON_IMAGE']}:{args['PYTHON_VERSION']}-slim"


@pytest.fixture(scope="module")
async def image(request: pytest.FixtureRequest) -> str:
    podman = require_tool("podman")
    status, output = await _run(str(PROJECT_ROOT / "deploy" / "podman-base.sh"), _base_image())
    assert status == 0, output
    started = time.monotonic()
    status, output = await _run(
        podman, "build", "--pull=never", "--format=docker", "--tag", IMAGE, "."
    )
    assert status == 0, output[-4000:]
    status, size = await _run(podman, "image", "inspect", IMAGE, "--format", "{{.Size}}")
    assert status == 0, size
    # The figure the issue asks for, written past pytest's capture into `make test`'s output.
    seconds = time.monotonic() - started
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and terminal is not None:
        with capture.global_and_fixture_disabled():
            terminal.write_line(
                f"\nimage {IMAGE}: {int(size) / 1e6:.0f} MB, built in {seconds:.1f} s"
            )
    return IMAGE


def _container_args(database_url: str, *env: str, serving: bool = False) -> list[str]:
    """`podman run` options as the chart runs the pod: host network here (the machine's
    PostgreSQL), root filesystem read-only, /tmp a tmpfs (podman's --read-only); for the
    API, its multiprocess metrics directory a tmpfs owned by the image's user (an emptyDir
    with Kubernetes' fsGroup)."""
    options = ["--network=host", "--read-only"]
    if serving:
        options.append(f"--tmpfs={METRICS_DIR}:U")
        env = (*env, f"PROMETHEUS_MULTIPROC_DIR={METRICS_DIR}")
    for assignment in (f"DATABASE_URL={database_url}", *env):
        options += ["--env", assignment]
    return options


async def _image_field(podman: str, field: str) -> str:
    status, value = await _run(podman, "image", "inspect", IMAGE, "--format", field)
    assert status == 0, value
    return value.strip()


async def test_image_runs_as_a_numeric_non_root_user_with_a_healthcheck(image: str) -> None:
    podman = require_tool("podman")
    user = await _image_field(podman, "{{.Config.User}}")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    assert await _image_field(podman, "{{.Config.StopSignal}}") == "SIGTERM"
    assert "/health/live" in await _image_field(podman, "{{json .Config.Healthcheck.Test}}")
    assert await _image_field(podman, "{{json .Config.Entrypoint}}") == '["python","-m","app"]'


@pytest.fixture
async def container_name(image: str) -> AsyncIterator[str]:
    name = f"sluice-test-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        await _run(require_tool("podman"), "rm", "--force", "--time", "0", name)


async def _wait_ready(base_url: str, podman: str, name: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            _, running = await _run(podman, "inspect", name, "--format", "{{.State.Running}}")
            if running.strip() != "true":
                _, logs = await _run(podman, "logs", name)
                pytest.fail(f"container exited before ready:\n{logs[-4000:]}")
            try:
                if (await client.get(f"{base_url}/health/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    _, logs = await _run(podman, "logs", name)
    pytest.fail(f"not ready in {timeout_s} s:\n{logs[-4000:]}")


async def test_migrate_serve_store_and_drain_on_sigterm(
    image: str, fresh_database: str, container_name: str
) -> None:
    podman = require_tool("podman")
    one_off = [podman, "run", "--rm", "--no-healthcheck", *_container_args(fresh_database)]
    status, output = await _run(*one_off, image, "migrate")
    assert status == 0, output

    port = free_port()
    # A two-second batch delay: events accepted just before SIGTERM are still buffered when
    # it arrives, so only the drain can store them.
    env = (f"SLUICE_PORT={port}", "SLUICE_BATCH_MAX_DELAY_MS=2000")
    run = [podman, "run", "--detach", "--name", container_name]
    status, output = await _run(*run, *_container_args(fresh_database, *env, serving=True), image)
    assert status == 0, output
    base_url = f"http://127.0.0.1:{port}"
    await _wait_ready(base_url, podman, container_name)

    source = f"/image-test/{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        stored = await client.post("/ingest", json=make_event(source, "committed"))
        assert stored.status_code == 200, stored.text
        assert stored.json()["results"][0]["status"] == "stored"
        buffered = [make_event(source, f"buffered-{n}") for n in range(20)]
        accepted = await client.post("/ingest?ack=enqueued", json=buffered)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["accepted"] == 20
    status, output = await _run(podman, "healthcheck", "run", container_name)
    assert status == 0, output

    status, output = await _run(podman, "kill", "--signal", "TERM", container_name)
    assert status == 0, output
    status, exit_code = await _run(podman, "wait", container_name, timeout_s=60)
    assert (status, exit_code.strip()) == (0, "0"), exit_code
    _, logs = await _run(podman, "logs", container_name)
    assert "Application shutdown complete" in logs, logs[-4000:]

    connection = await asyncpg.connect(fresh_database)
    try:
        count = await connection.fetchval("SELECT count(*) FROM events WHERE source = $1", source)
    finally:
        await connection.close()
    assert count == 21, "every event acknowledged before SIGTERM is stored after the drain"


async def test_maintain_runs_from_the_same_image(image: str, fresh_database: str) -> None:
    """The CronJob's command: one round of upkeep, reported as one JSON line."""
    podman = require_tool("podman")
    one_off = [podman, "run", "--rm", "--no-healthcheck", *_container_args(fresh_database)]
    status, output = await _run(*one_off, image, "migrate")
    assert status == 0, output
    status, output = await _run(*one_off, image, "maintain")
    assert status == 0, output
    assert json.loads(output.splitlines()[-1])["ran"] is True, output
