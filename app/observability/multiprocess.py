"""The Prometheus client's multiprocess files, kept right across worker restarts.

Under gunicorn each worker writes its samples to memory-mapped files named after its pid
in `PROMETHEUS_MULTIPROC_DIR`, and `/metrics` sums every file it finds. Left alone, that
has three known faults, handled here and in `gunicorn.conf.py`:

- files of a previous run would be summed into the new one: the master empties the
  directory when it starts (`reset`);
- a dead worker's `live*` gauges (buffer depth, unacked deliveries) would still be
  reported: `retire` removes them (the client's `mark_process_dead`);
- a dead worker's counters and histograms must still count (totals never go down), but
  one file per dead worker, kept forever, makes the directory and every scrape grow with
  each restart: `retire` adds them into one archive file per metric type and deletes the
  dead worker's files, so the directory holds the live workers' files and the archives.

Only the master calls these (from gunicorn's hooks), one at a time, so the archive has a
single writer; workers only read it, as they read each other's files.
"""

from __future__ import annotations

import glob
import os
import shutil

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

#: The file name `MultiProcessCollector` reads as type `counter`/`histogram`, of no pid.
ARCHIVE_ID = "archive"
_SUMMED_TYPES = ("counter", "histogram", "summary")


def reset(directory: str) -> None:
    """An empty directory for a new run."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def retire(directory: str, pid: int) -> None:
    """Worker `pid` has exited: drop its live gauges; fold its sums into the archives."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    for kind in _SUMMED_TYPES:
        dead = os.path.join(directory, f"{kind}_{pid}.db")
        if os.path.exists(dead):
            _add_into(os.path.join(directory, f"{kind}_{ARCHIVE_ID}.db"), dead)
            os.remove(dead)
    # Gauges that are not `live*` (e.g. `max` of a timestamp) keep their meaning after
    # the worker's death; fold them the same way when there is one archive per mode.
    for dead in glob.glob(os.path.join(directory, f"gauge_*_{pid}.db")):
        mode = os.path.basename(dead).split("_")[1]
        if mode in {"max", "min"}:
            _keep_extreme(os.path.join(directory, f"gauge_{mode}_{ARCHIVE_ID}.db"), dead, mode)
            os.remove(dead)


def _add_into(archive: str, dead: str) -> None:
    target = MmapedDict(archive)
    try:
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(dead):
            current, _ = target.read_value(key)
            target.write_value(key, current + value, timestamp)
    finally:
        target.close()


def _keep_extreme(archive: str, dead: str, mode: str) -> None:
    pick = max if mode == "max" else min
    target = MmapedDict(archive)
    try:
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(dead):
            existing = key in target._positions
            current, _ = target.read_value(key)
            target.write_value(key, pick(current, value) if existing else value, timestamp)
    finally:
        target.close()
