"""The VM role, run for real against this machine (`connection: local`).

A scratch prefix stands in for /opt/sluice and supervisord (PyPI `supervisor`, in the
ansible tool venv) for systemd, which does not run here: the role's
`sluice_service_manager: supervisord` path restarts the same programs the systemd units
define. The service runs in production mode against a database of this test's own on the
machine's PostgreSQL, its secrets handed over as `*_FILE`s.

1. Release 0.1.0 (the repository's wheel) deploys: migrated, switched, smoke-checked; it
   answers.
2. Release 0.1.1 is deliberately broken (it starts and is ready, but answers every
   `/ingest` with 500); it deploys while a client keeps sending events. Its smoke check
   fails at `stored`, the role switches back to 0.1.0 and restarts it, and the play fails
   saying so. Every event the client saw acknowledged is in the database; 0.1.0 answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.delivery.tools import ANSIBLE_BIN, ANSIBLE_DIR, CACHE, ansible_env, require
from tests.support import PROJECT_ROOT, free_port, make_event

WHEELHOUSE = CACHE / "wheelhouse"
SOURCE = "/delivery/vm-role"


BUILD_VENV = CACHE / "build-venv"


def _quiet_pip(python: Path | str, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", *args, "-q", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
    )


def _wheelhouse() -> Path:
    """Wheels of every dependency, built once per dependency list, outside the clone: each
    release's virtualenv installs from it offline in seconds (`--no-index`)."""
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    key = hashlib.sha256(pyproject.split("[project.optional-dependencies]")[0].encode())
    stamp = WHEELHOUSE / f".built-{key.hexdigest()[:16]}"
    if not stamp.exists():
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        _quiet_pip(sys.executable, "wheel", "-w", str(WHEELHOUSE), str(PROJECT_ROOT))
        for built in WHEELHOUSE.glob("sluice-*.whl"):
            built.unlink()
        stamp.touch()
    return WHEELHOUSE


def _wheel(source: Path, out: Path) -> Path:
    """`pip wheel --no-deps` of `source`, in a cached build venv (the build requirements
    installed once, instead of an isolated build environment per wheel)."""
    python = BUILD_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BUILD_VENV)], check=True)
        _quiet_pip(python, "install", "setuptools>=69", "wheel")
    _quiet_pip(python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source))
    (wheel,) = out.glob("sluice-*.whl")
    return wheel


# Appended to the broken release's app/main.py: it starts and is ready, but every event is
# answered 500, so its smoke check fails at `stored`.
_BREAKAGE = """

from starlette.responses import Response  # noqa: E402

_working_factory = create_app_from_environment


def create_app_from_environment() -> FastAPI:
    app = _working_factory()

    @app.middleware("http")
    async def _deliberately_broken(request, call_next):  # type: ignore[no-untyped-def]
        if request.url.path == "/ingest":
            return Response("deliberately broken release", status_code=500)
        return await call_next(request)

    return app
"""


def _broken_tree(into: Path) -> Path:
    """A copy of the project as release 0.1.1 that serves, is ready, and stores nothing."""
    for name in ("app", "migrations"):
        shutil.copytree(PROJECT_ROOT / name, into / name, ignore=shutil.ignore_patterns("__py*"))
    for name in ("alembic.ini", "gunicorn.conf.py", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, into / name)
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert 'version = "0.1.0"' in pyproject
    (into / "pyproject.toml").write_text(
        pyproject.replace('version = "0.1.0"', 'version = "0.1.1"')
    )
    main = into / "app" / "main.py"
    assert "def create_app_from_environment() -> FastAPI:" in main.read_text()
    main.write_text(main.read_text() + _BREAKAGE)
    return into


@dataclass
class Supervisor:
    """supervisord of this test's own: a Unix socket and an include directory in `root`."""

    root: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def include_dir(self) -> Path:
        return self.root / "conf.d"

    def start(self) -> None:
        self.include_dir.mkdir(parents=True)
        socket = self.root / "supervisor.sock"
        self.conf.write_text(
            f"[unix_http_server]\nfile={socket}\n\n"
            f"[supervisord]\nnodaemon=true\nlogfile={self.root}/supervisord.log\n"
            f"pidfile={self.root}/supervisord.pid\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{socket}\n\n"
            f"[include]\nfiles={self.include_dir}/*.conf\n"
        )
        self.process = subprocess.Popen(
            [str(ANSIBLE_BIN / "supervisord"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not socket.exists():
            assert time.monotonic() < deadline, "supervisord did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        subprocess.run(
            [str(ANSIBLE_BIN / "supervisorctl"), "-c", str(self.conf), "stop", "all"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    require(ANSIBLE_BIN / "supervisord", "supervisor")
    running = Supervisor(tmp_path / "supervisor")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Sender:
    """Sends one new event at a time, each until it is acknowledged: a client that retries,
    as producers must. `acknowledged` is what the service promised to keep."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.stop.is_set() and len(self.acknowledged) < 5000:
                event_id = f"flow-{uuid.uuid4()}"
                while not self.stop.is_set():
                    if self._send(client, event_id):
                        self.acknowledged.append(event_id)
                        break
                    self.refused += 1
                    time.sleep(0.1)
                time.sleep(0.2)

    @staticmethod
    def _send(client: httpx.Client, event_id: str) -> bool:
        try:
            response = client.post("/ingest", json=make_event(SOURCE, event_id))
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json()["results"][0]["status"] in {
            "stored",
            "duplicate",
        }


def _playbook(inventory: Path, variables: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(ANSIBLE_BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(ANSIBLE_DIR / "site.yml"),
            "-e",
            json.dumps(variables),
        ],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _stored_ids(database_url: str) -> set[str]:
    async def query() -> set[str]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch("SELECT id FROM events WHERE source = $1", SOURCE)
        finally:
            await connection.close()
        return {row["id"] for row in rows}

    return asyncio.run(query())


def _status_of(url: str, event_id: str) -> str:
    response = httpx.post(f"{url}/ingest", json=make_event(SOURCE, event_id), timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["results"][0]["status"])


def test_deploy_then_automatic_rollback_of_a_broken_release(
    tmp_path: Path, supervisor: Supervisor, fresh_database: str
) -> None:
    started = time.monotonic()
    wheelhouse = _wheelhouse()
    good = _wheel(PROJECT_ROOT, tmp_path / "dist-good")
    broken = _wheel(_broken_tree(tmp_path / "broken-src"), tmp_path / "dist-broken")
    prefix = tmp_path / "opt-sluice"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "sluice_vm": {
                            "hosts": {
                                "localhost": {
                                    "ansible_connection": "local",
                                    "ansible_python_interpreter": str(ANSIBLE_BIN / "python"),
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    common: dict[str, object] = {
        "sluice_prefix": str(prefix),
        "sluice_manage_user": False,
        "sluice_service_manager": "supervisord",
        "sluice_supervisor_conf": str(supervisor.conf),
        "sluice_supervisor_include_dir": str(supervisor.include_dir),
        "sluice_supervisorctl": str(ANSIBLE_BIN / "supervisorctl"),
        "sluice_python": sys.executable,
        "sluice_pip_args": ["--no-index", "--find-links", str(wheelhouse), "--no-compile"],
        "sluice_port": port,
        "sluice_workers": 1,
        "sluice_env": "production",
        # Ingest open on purpose (production refuses it otherwise, docs/security.md): the
        # smoke check posts without a key. The deploy itself is what this test proves.
        "sluice_settings": {
            "SLUICE_PUBSUB_ENABLED": "false",
            "SLUICE_LOG_LEVEL": "WARNING",
            "SLUICE_AUTH_INGEST": "open",
        },
        "sluice_secrets": {
            "DATABASE_URL": fresh_database,
            "SLUICE_PRIVACY_PSEUDONYM_KEY": uuid.uuid4().hex,
            "SLUICE_ADMIN_TOKEN": uuid.uuid4().hex,
        },
    }

    built = time.monotonic()
    first = _playbook(inventory, {**common, "sluice_version": "0.1.0", "sluice_wheel": str(good)})
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    current = prefix / "current"
    assert current.resolve() == prefix / "releases" / "0.1.0"
    secret_file = prefix / "releases" / "0.1.0" / "etc" / "secrets" / "SLUICE_PRIVACY_PSEUDONYM_KEY"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o400"
    assert "PSEUDONYM_KEY_FILE=" in (current / "etc" / "sluice.env").read_text()
    assert _status_of(url, "before-the-broken-release") == "stored"

    deployed = time.monotonic()
    sender = Sender(url)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    try:
        second = _playbook(
            inventory,
            {
                **common,
                "sluice_version": "0.1.1",
                "sluice_wheel": str(broken),
            },
        )
        time.sleep(1)  # a few more events on the rolled-back release
    finally:
        sender.stop.set()
        thread.join(timeout=30)

    rolled_back = time.monotonic()
    output = second.stdout + second.stderr
    assert second.returncode != 0, "the broken release's deploy must fail"
    assert "was rolled back to 0.1.0" in output, output[-4000:]
    assert "smoke check failed at stored: /ingest answered 500" in output, output[-4000:]
    assert current.resolve() == prefix / "releases" / "0.1.0"
    assert (prefix / "releases" / "0.1.1" / "FAILED").exists()
    # The previous release answers again, and nothing acknowledged was lost.
    assert httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
    assert _status_of(url, "before-the-broken-release") == "duplicate"
    assert _status_of(url, "after-the-rollback") == "stored"
    stored = _stored_ids(fresh_database)
    assert sender.acknowledged, "the client never got an answer"
    assert set(sender.acknowledged) <= stored
    assert {"before-the-broken-release", "after-the-rollback"} <= stored
    print(
        f"vm role: sent {len(sender.acknowledged)} acknowledged, {sender.refused} refused "
        f"while restarting, lost {len(set(sender.acknowledged) - stored)}; wheels "
        f"{built - started:.0f} s, good deploy {deployed - built:.0f} s, broken deploy and "
        f"rollback {rolled_back - deployed:.0f} s"
    )
