"""gunicorn for production: `python -m app serve --workers N` runs it with this file.

Uvicorn workers run the ASGI app; each worker has its own batching loop and pool. The
Prometheus client's multiprocess mode makes `/metrics` add up every worker.
"""

import os
import shutil
import tempfile

# Must precede the first import of prometheus_client: it picks its storage at import time,
# and the workers inherit the master's modules when they fork.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sluice-metrics-")
)

from prometheus_client import multiprocess  # noqa: E402

from app.config import Settings  # noqa: E402
from app.observability.logging import logging_config  # noqa: E402

_settings = Settings()

bind = f"{_settings.host}:{_settings.port}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
# A worker drains on SIGTERM (app/drain.py's delay, then its buffer): give it both and a margin.
graceful_timeout = int(_settings.drain_delay_s + _settings.batch.ack_timeout_s) + 10
timeout = 60
keepalive = 5
logconfig_dict = logging_config(_settings.log_level)


def on_starting(server: object) -> None:
    # Stale files from an earlier run would be summed into the new one's counters.
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server: object, worker: object) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
