"""gunicorn for production: `python -m app serve --workers N` runs it with this file.

Uvicorn workers run the ASGI app; each worker has its own batching loop and pool. The
Prometheus client's multiprocess mode makes `/metrics` add up every worker; the master
keeps its directory right across runs and worker restarts (`observability/multiprocess.py`).
Tracing is set up in each worker after the fork, never in the master.

With more than one worker each worker listens on a socket of its own, bound after the
fork with `SO_REUSEPORT` (gunicorn's `reuse_port`: the master then binds none), so the
kernel spreads connections over the workers as they arrive, whether or not a worker is
awake to accept them. With one shared socket, connections opened at once by one client
all went to whichever worker happened to be awake (docs/benchmarks.md, *Worker balance*).
"""

import errno
import os
import socket
import sys
import tempfile

# Must precede the first import of prometheus_client: it picks its storage at import time,
# and the workers inherit the master's modules when they fork.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sluice-metrics-")
)

from app.config import Settings  # noqa: E402
from app.observability import multiprocess, tracing  # noqa: E402
from app.observability.logging import logging_config  # noqa: E402

_settings = Settings()

bind = f"{_settings.host}:{_settings.port}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# One worker keeps the master's socket: while it restarts, connections wait in that
# socket's queue instead of being refused.
reuse_port = workers > 1
worker_class = "uvicorn_worker.UvicornWorker"
# A worker drains on SIGTERM (app/drain.py's delay, then its buffer): give it both and a margin.
graceful_timeout = int(_settings.drain_delay_s + _settings.batch.ack_timeout_s) + 10
timeout = 60
keepalive = 5
logconfig_dict = logging_config(_settings.log_level)


def on_starting(server: object) -> None:
    if reuse_port:
        _refuse_a_taken_port(server)
    # Stale files from an earlier run would be summed into the new one's counters.
    multiprocess.reset(_metrics_dir)


def _refuse_a_taken_port(server: object) -> None:
    """`SO_REUSEPORT` lets every socket of this user that sets it share the port: a second
    Sluice started on a port in use would silently split its connections with the first.
    A plain bind (what gunicorn does without `reuse_port`) fails on any port in use."""
    family, kind, _, _, address = socket.getaddrinfo(
        _settings.host, _settings.port, type=socket.SOCK_STREAM
    )[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            server.log.error("Connection in use: %s", bind)  # type: ignore[attr-defined]
            sys.exit(1)


def post_fork(server: object, worker: object) -> None:
    # The SDK's export thread and its queue do not survive a fork: each worker builds
    # its own provider (the master never does).
    tracing.configure_from_environment()


def worker_exit(server: object, worker: object) -> None:
    tracing.shutdown()  # export the spans still queued before the worker goes


def child_exit(server: object, worker: object) -> None:
    multiprocess.retire(_metrics_dir, worker.pid)  # type: ignore[attr-defined]
