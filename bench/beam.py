"""The Beam backfill's figure: `--beam-events` archived events backfilled by the
DirectRunner (`python -m sluice_beam backfill`, in the Beam virtualenv that
`make tools-beam` builds) into the bench's scratch database.

The clock runs over the whole job, from starting the interpreter to its exit: Beam's
start-up (~5-15 s here) is part of what a backfill costs, and at 100,000 events it is a
large share of it. The run then counts the rows: every archived event must be stored.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.database import count_events
from tests.support import PROJECT_ROOT

BEAM_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice" / "beam-venv"


@dataclass(frozen=True, slots=True)
class BeamRun:
    events: int
    stored: int
    seconds: float
    workers: int

    @property
    def rows_per_s(self) -> float:
        return self.stored / self.seconds


def _write_archive(directory: Path, events: int, files: int) -> None:
    source = f"/bench/beam/{uuid.uuid4().hex[:8]}"
    per_file = -(-events // files)
    for index in range(files):
        with (directory / f"archive-{index}.jsonl").open("wb") as out:
            for n in range(index * per_file, min(events, (index + 1) * per_file)):
                subject = f"customer-{n % 1000}@example.com"
                event = {
                    "specversion": "1.0",
                    "id": str(n),
                    "source": source,
                    "type": "com.example.order.created",
                    "subject": subject,
                    "datacontenttype": "application/json",
                    "data": {"order": f"o-{n}", "amount": n % 97, "email": subject},
                }
                out.write(orjson.dumps(event) + b"\n")


def measure_beam(url: str, *, events: int, workers: int) -> BeamRun:
    """Backfill `events` events with `workers` DirectRunner processes; raises if the job
    fails. Rows already in `events` (the HTTP phase's) are not counted."""
    python = BEAM_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no Beam virtualenv at {BEAM_VENV}: run make tools-beam")
    before = count_events(url)
    with tempfile.TemporaryDirectory(prefix="sluice-bench-beam-") as directory:
        _write_archive(Path(directory), events, files=max(4, workers))
        command = [
            str(python), "-m", "sluice_beam", "backfill",
            f"--input={directory}/*.jsonl",
            f"--backfill_name=bench-{uuid.uuid4().hex[:8]}",
            f"--direct_num_workers={workers}",
            "--direct_running_mode=multi_processing",
        ]  # fmt: skip
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "beam")]),
            "SLUICE_LOG_LEVEL": "WARNING",
        }
        started = time.monotonic()
        done = subprocess.run(  # noqa: S603 - the Beam virtualenv running our own pipeline
            command, env=env, capture_output=True, text=True, check=False, timeout=1800
        )
        seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"the Beam backfill failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return BeamRun(events, count_events(url) - before, seconds, workers)
