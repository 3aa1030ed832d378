"""A Sluice command as a child process in a process group of its own, so a test can
SIGKILL the whole group (gunicorn's master and workers at once) or SIGTERM it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import IO

from tests.support import PROJECT_ROOT, free_port, read_log, wait_until_healthy


class Service:
    def __init__(self, env: dict[str, str], *args: str, command: str = "serve") -> None:
        self.env = env
        self.args = args
        self.command = command
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, probe: str = "live", timeout_s: float = 60) -> None:
        argv = [sys.executable, "-m", "app", self.command, "--port", str(self.port), *self.args]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            cwd=PROJECT_ROOT,
            env={**os.environ, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: gunicorn's workers included
        )
        wait_until_healthy(self.base_url, self.process, timeout_s, self.log, probe=probe)

    def signal_group(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def crash(self) -> None:
        """SIGKILL of the whole process group: no drain, no flush, no goodbye."""
        self.signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def output(self) -> str:
        return read_log(self.log)

    def close(self) -> None:
        """SIGKILL whatever is left of the group (a test that failed midway)."""
        if self.process is not None:
            self.signal_group(signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.log.close()


@contextlib.contextmanager
def service(env: dict[str, str], *args: str, command: str = "serve") -> Iterator[Service]:
    """A `Service`, not yet started; killed with its whole group on the way out."""
    started = Service(env, *args, command=command)
    try:
        yield started
    finally:
        started.close()
